"""API tokens: made once, stored hashed, listed without secrets, revoked for good; nobody sees another's."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from fogmachine.db.models import ApiToken, AuditEvent
from fogmachine.services.tokens import hash_token


@pytest.fixture
def api_database_url(database_url: str) -> str:
    """These routes write: every test here runs on SQLite, MariaDB and PostgreSQL (issue 11, item 1)."""
    return database_url


def _row(session, token_id):
    return session.get(ApiToken, token_id)


def _actions(session):
    return [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


async def test_create_shows_the_token_once_and_stores_only_its_hash(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "nightly-ci", "scope": "write",
                                                       "expires_in_days": 7})
    assert r.code == 201
    made = r.json
    assert r.headers["Location"] == f"/api/v1/tokens/{made['id']}"
    secret = made["token"]
    assert secret.startswith(made["prefix"]) and made["prefix"].startswith("fm_")
    assert made["scope"] == "write" and made["state"] == "active" and made["owner"] == "alice"
    row = api.run(_row, made["id"])
    assert row.token_hash == hash_token(secret) and secret not in (row.token_hash, row.prefix)
    # The new token works, and nothing shows it again.
    r = await api.call("GET", "/api/v1/users/me", as_=None, headers={"Authorization": f"Bearer {secret}"})
    assert r.code == 200 and r.json["username"] == "alice"
    listed = await api.call("GET", "/api/v1/tokens")
    one = await api.call("GET", f"/api/v1/tokens/{made['id']}")
    assert secret not in listed.body.decode() and secret not in one.body.decode()
    assert "token" not in one.json
    assert "token.create" in api.run(_actions)


async def test_defaults_read_scope_and_90_days(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "reader"})
    assert r.code == 201
    assert r.json["scope"] == "read"
    secret = r.json["token"]
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "escalate", "scope": "write"},
                       headers={"Authorization": f"Bearer {secret}"})
    assert r.code == 403


async def test_duplicate_active_name_is_409(api):
    assert (await api.call("POST", "/api/v1/tokens", body={"name": "dup"})).code == 201
    r = await api.call("POST", "/api/v1/tokens", body={"name": "dup"})
    assert r.code == 409
    assert r.error["details"]["field"] == "name"


async def test_whitespace_name_is_400(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "   "})
    assert r.code == 400 and r.error["details"]["field"] == "name"
    r = await api.call("POST", "/api/v1/tokens", body={"name": "tab\there"})
    assert r.code == 400 and r.error["details"]["field"] == "name"


async def test_list_is_own_only_admin_sees_all_and_filters(api):
    r = await api.call("GET", "/api/v1/tokens")
    names = {t["name"] for t in r.json["tokens"]}
    assert names == {"test-alice", "test-alice-read"}
    assert r.json["total"] == 2
    r = await api.call("GET", "/api/v1/tokens", as_="admin")
    assert {t["owner"] for t in r.json["tokens"]} == {"alice", "bob", "admin"}
    r = await api.call("GET", "/api/v1/tokens?user=bob", as_="admin")
    assert {t["name"] for t in r.json["tokens"]} == {"test-bob"}
    r = await api.call("GET", "/api/v1/tokens?user=bob")
    assert r.code == 403
    r = await api.call("GET", "/api/v1/tokens?user=alice&limit=1&offset=1")
    assert r.json["total"] == 2 and len(r.json["tokens"]) == 1


async def test_revoke_stops_the_token_at_once_even_when_it_was_just_used(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "short-lived", "scope": "write"})
    token_id, secret = r.json["id"], r.json["token"]
    auth = {"Authorization": f"Bearer {secret}"}
    assert (await api.call("GET", "/api/v1/hosts", as_=None, headers=auth)).code == 200  # now cached
    r = await api.call("POST", f"/api/v1/tokens/{token_id}/revoke")
    assert r.code == 200 and r.json["state"] == "revoked"
    assert (await api.call("GET", "/api/v1/hosts", as_=None, headers=auth)).code == 401
    r = await api.call("POST", f"/api/v1/tokens/{token_id}/revoke")
    assert r.code == 409
    r = await api.call("GET", "/api/v1/tokens")
    assert token_id not in [t["id"] for t in r.json["tokens"]]
    r = await api.call("GET", "/api/v1/tokens?include_inactive=true")
    assert {t["id"]: t["state"] for t in r.json["tokens"]}[token_id] == "revoked"
    assert "token.revoke" in api.run(_actions)


async def test_a_token_can_revoke_itself(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "self", "scope": "write"})
    auth = {"Authorization": f"Bearer {r.json['token']}"}
    r = await api.call("POST", f"/api/v1/tokens/{r.json['id']}/revoke", as_=None, headers=auth)
    assert r.code == 200
    assert (await api.call("GET", "/api/v1/hosts", as_=None, headers=auth)).code == 401


async def test_other_users_tokens_are_not_found_and_stay_untouched(api):
    r = await api.call("GET", "/api/v1/tokens", as_="bob")
    bobs = r.json["tokens"][0]["id"]
    assert (await api.call("GET", f"/api/v1/tokens/{bobs}")).code == 404
    r = await api.call("POST", f"/api/v1/tokens/{bobs}/revoke")
    assert r.code == 404
    assert api.run(_row, bobs).revoked is False
    assert (await api.call("GET", "/api/v1/hosts", as_="bob")).code == 200
    # An administrator may revoke anyone's.
    r = await api.call("POST", f"/api/v1/tokens/{bobs}/revoke", as_="admin")
    assert r.code == 200 and r.json["owner"] == "bob"
    assert (await api.call("GET", "/api/v1/hosts", as_="bob")).code == 401


async def test_disabling_a_user_stops_their_cached_token_at_once(api):
    assert (await api.call("GET", "/api/v1/hosts", as_="bob")).code == 200
    r = await api.call("PATCH", f"/api/v1/users/{api.users['bob'].id}", as_="admin", body={"is_active": False})
    assert r.code == 200 and r.json["is_active"] is False
    assert (await api.call("GET", "/api/v1/hosts", as_="bob")).code == 401


async def test_expired_token_is_401(api):
    import datetime as dt

    from fogmachine.db.models import utcnow

    def expire(session, token_id):
        session.get(ApiToken, token_id).expires_at = utcnow() - dt.timedelta(seconds=1)

    r = await api.call("POST", "/api/v1/tokens", body={"name": "old"})
    api.run(expire, r.json["id"])
    r2 = await api.call("GET", "/api/v1/hosts", as_=None, headers={"Authorization": f"Bearer {r.json['token']}"})
    assert r2.code == 401
    r = await api.call("GET", f"/api/v1/tokens/{r.json['id']}")
    assert r.json["state"] == "expired"


async def test_first_token_with_username_and_password(api):
    import base64

    from tests.support.apiclient import PASSWORD

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "laptop", "scope": "write"},
                       headers=basic("alice", PASSWORD))
    assert r.code == 201 and r.json["owner"] == "alice"
    secret = r.json["token"]
    assert (await api.call("GET", "/api/v1/users/me", as_=None,
                           headers={"Authorization": f"Bearer {secret}"})).json["username"] == "alice"
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "x"}, headers=basic("alice", "wrong"))
    assert r.code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    for bad in ["Basic !!!"] + ["Basic " + base64.b64encode(raw).decode() for raw in
                                (b"no-colon", b"al\x00ice:pw", b"\xff:pw")]:
        r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "x"}, headers={"Authorization": bad})
        assert r.code == 401
    # Only there: everywhere else a password is refused, even the right one.
    r = await api.call("GET", "/api/v1/hosts", as_=None, headers=basic("alice", PASSWORD))
    assert r.code == 401 and "Bearer" in r.error["message"]
    # Throttled like the login form.
    for _ in range(5):
        await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "x"}, headers=basic("bob", "nope"))
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "x"}, headers=basic("bob", PASSWORD))
    assert r.code == 429 and int(r.headers["Retry-After"]) > 0
