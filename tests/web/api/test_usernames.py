"""Usernames through the real server: full-match validation and one normal form (issue 11, section 3).

Before the fix ``nl1\\n`` was accepted (``$`` matches before a final newline) and
fullwidth ``alice`` or ``Alice`` were either accepted as new users beside
``alice`` or refused with the pattern alone; now they are refused, on every database,
with a message that says which existing user they collide with.
"""

from __future__ import annotations

import base64

import pytest

from tests.support.apiclient import PASSWORD

NEW_PASSWORD = "ochre lantern quietly"


@pytest.fixture
async def api_db(make_api, database_url):
    return await make_api(database_connection=database_url)


@pytest.mark.parametrize("name", ["nl1\n", "nl1\r", "nl1\r\n", "nl\x00x", "\u0430dmin", "adm\u0131n", "a", "x" * 33,
                                  " nl1", "nl1 ", "nl\u200b1", "1abc"])
async def test_malformed_names_are_refused_with_a_field_message(api, name):
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": name, "password": NEW_PASSWORD})
    assert r.code == 400, (name, r.body)
    assert r.error["details"]["field"] == "username" and "username must" in r.error["message"]


async def test_look_alikes_of_a_taken_name_are_refused_and_names_stored_normalized(api_db):
    api = api_db
    for name in ("alice", "Alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45", "\uff21lice"):
        r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": name, "password": NEW_PASSWORD})
        assert r.code == 409, (name, r.body)
        assert r.error["details"]["field"] == "username" and "alice" in r.error["message"]
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": "Carol", "password": NEW_PASSWORD})
    assert r.code == 201 and r.json["username"] == "carol"
    # The Kelvin sign folds to k: a second "kim" written with it is the same name.
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": "kim", "password": NEW_PASSWORD})
    assert r.code == 201
    r = await api.call("POST", "/api/v1/users", as_="admin", body={"username": "\u212aim", "password": NEW_PASSWORD})
    assert r.code == 409 and "kim" in r.error["message"]
    # Logging in folds the same way: CAROL is carol.
    basic = base64.b64encode(f"CAROL:{NEW_PASSWORD}".encode()).decode()
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "t"},
                       headers={"Authorization": f"Basic {basic}"})
    assert r.code == 201 and r.json["owner"] == "carol"


async def test_registration_page_refuses_a_look_alike(make_config, start_server, tmp_path, database_url):
    from tests.web.pages.conftest import PageClient, write_catalog

    srv = await start_server(make_config(local_catalog=write_catalog(tmp_path), database_connection=database_url))
    c = PageClient(srv)
    r = await c.post("/register", {"username": "dora", "email": "", "password": PASSWORD,
                                   "confirm_password": PASSWORD})
    assert r.code == 303
    other = PageClient(srv)
    page = await other.refused("/register", {"username": "\uff24\uff4f\uff52\uff41", "email": "", "password": PASSWORD,
                                             "confirm_password": PASSWORD}, "/register")
    assert "same as the existing user dora" in (page.field_error("register", "username") or ""), page.text[:3000]


async def test_email_with_a_trailing_newline_or_control_character_is_refused(api):
    for email in ("a@example.org\nBcc: x@example.org", "a@example.org\r\nX: y", "a\x00@example.org",
                  "a@exa\x1bmple.org", "a@example.org\x7f"):
        r = await api.call("PATCH", "/api/v1/users/me", body={"email": email})
        assert r.code == 400 and r.error["details"]["field"] == "email", email
    # Surrounding whitespace of a typed address is trimmed, never stored.
    r = await api.call("PATCH", "/api/v1/users/me", body={"email": "a@example.org\n"})
    assert r.code == 200 and r.json["email"] == "a@example.org"
