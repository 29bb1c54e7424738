"""Users through the API: administrators manage accounts, everyone sees and edits only themselves."""

from __future__ import annotations

import pytest

from fogmachine.db.models import User
from tests.support.apiclient import PASSWORD


@pytest.fixture
def api_database_url(database_url: str) -> str:
    """These routes write: every test here runs on SQLite, MariaDB and PostgreSQL (issue 11, item 1)."""
    return database_url


def _user(session, user_id):
    return session.get(User, user_id)


async def test_me_for_anyone_never_the_password_hash(api):
    r = await api.call("GET", "/api/v1/users/me", as_="alice-read")
    assert r.code == 200
    me = r.json
    assert me["username"] == "alice" and me["is_admin"] is False and me["email"] == "alice@example.org"
    assert "password" not in r.body.decode() and "argon2" not in r.body.decode()


async def test_edit_own_profile_and_bad_ssh_key(api):
    r = await api.call("PATCH", "/api/v1/users/me", body={"email": "a@new.example", "notify_ready": False})
    assert r.code == 200
    assert r.json["email"] == "a@new.example" and r.json["notify_ready"] is False
    r = await api.call("PATCH", "/api/v1/users/me", body={"ssh_key": "not a key"})
    assert r.code == 400 and r.error["details"]["field"] == "ssh_key"
    r = await api.call("PATCH", "/api/v1/users/me", body={"is_admin": True})
    assert r.code == 400 and r.error["details"]["field"] == "is_admin"
    assert api.run(_user, api.users["alice"].id).is_admin is False


async def test_change_password_needs_the_current_one(api):
    r = await api.call("POST", "/api/v1/users/me/password",
                       body={"current_password": "wrong", "new_password": "a-new-password"})
    assert r.code == 400 and r.error["details"]["field"] == "current_password"
    r = await api.call("POST", "/api/v1/users/me/password",
                       body={"current_password": PASSWORD, "new_password": "short"})
    assert r.code == 400 and r.error["details"]["field"] == "new_password"
    r = await api.call("POST", "/api/v1/users/me/password",
                       body={"current_password": PASSWORD, "new_password": "a-new-password"})
    assert r.code == 204 and r.body == b""


async def test_admin_lists_creates_promotes_and_disables(api):
    r = await api.call("GET", "/api/v1/users", as_="admin")
    assert r.code == 200
    assert [u["username"] for u in r.json["users"]] == ["admin", "alice", "bob"]
    assert r.json["total"] == 3
    r = await api.call("GET", "/api/v1/users?limit=1&offset=2", as_="admin")
    assert [u["username"] for u in r.json["users"]] == ["bob"]
    r = await api.call("POST", "/api/v1/users", as_="admin",
                       body={"username": "carol", "password": "carol-password", "email": "c@example.org"})
    assert r.code == 201
    carol = r.json
    assert r.headers["Location"] == f"/api/v1/users/{carol['id']}"
    assert carol["is_admin"] is False
    r = await api.call("PATCH", f"/api/v1/users/{carol['id']}", as_="admin", body={"is_admin": True})
    assert r.code == 200 and r.json["is_admin"] is True
    r = await api.call("PATCH", f"/api/v1/users/{carol['id']}", as_="admin",
                       body={"is_admin": False, "is_active": False})
    assert r.json["is_admin"] is False and r.json["is_active"] is False
    r = await api.call("GET", f"/api/v1/users/{carol['id']}", as_="admin")
    assert r.json["username"] == "carol"


async def test_create_user_errors(api):
    r = await api.call("POST", "/api/v1/users", as_="admin",
                       body={"username": "alice", "password": "long-enough-indeed"})
    assert r.code == 409 and r.error["details"]["field"] == "username"
    r = await api.call("POST", "/api/v1/users", as_="admin",
                       body={"username": "Bad Name", "password": "long-enough-indeed"})
    assert r.code == 400 and r.error["details"]["field"] == "username"
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": "dave", "password": "short"})
    assert r.code == 400 and r.error["details"]["field"] == "password"
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": "dave"})
    assert r.code == 400 and r.error["details"]["field"] == "password"


async def test_admin_cannot_lock_themselves_out(api):
    me = api.users["admin"].id
    r = await api.call("PATCH", f"/api/v1/users/{me}", as_="admin", body={"is_admin": False})
    assert r.code == 403
    r = await api.call("PATCH", f"/api/v1/users/{me}", as_="admin", body={"is_active": False})
    assert r.code == 403
    row = api.run(_user, me)
    assert row.is_admin and row.is_active


async def test_users_cannot_manage_or_read_other_users(api):
    bob = api.users["bob"].id
    assert (await api.call("GET", "/api/v1/users")).code == 403
    assert (await api.call("GET", f"/api/v1/users/{bob}")).code == 404
    r = await api.call("PATCH", f"/api/v1/users/{bob}", body={"is_active": False})
    assert r.code == 403
    r = await api.call("PATCH", f"/api/v1/users/{api.users['alice'].id}", body={"is_admin": True})
    assert r.code == 403
    r = await api.call("POST", "/api/v1/users", body={"username": "mallory", "password": "long-enough-indeed"})
    assert r.code == 403
    assert api.run(_user, bob).is_active is True
    assert api.run(_user, api.users["alice"].id).is_admin is False
    r = await api.call("GET", f"/api/v1/users/{api.users['alice'].id}")
    assert r.code == 200 and r.json["username"] == "alice"
    assert (await api.call("GET", "/api/v1/users/424242", as_="admin")).code == 404
