"""Throttling through the real server, from several client addresses (issue 11, section 3).

The clients connect from different loopback source addresses (127.0.0.2, ...),
so the server sees real, distinct peer addresses (no forwarded headers).
Before the fix five bad passwords from any address locked any account, the
administrator's included, for 15 minutes; a wrong current password on the
password change was never throttled; registration was not limited at all.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from fogmachine.db.models import AuditEvent
from fogmachine.services import loginthrottle
from tests.support.apiclient import PASSWORD, _cookies

NEW_PASSWORD = "ochre lantern quietly"


@pytest.fixture
async def api_db(make_api, database_url):
    return await make_api(database_connection=database_url)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def token_by_password(api, user: str, password: str, source: str):
    return await api.srv.fetch("/api/v1/tokens", method="POST", body=json.dumps({"name": "t"}),
                               headers={**basic(user, password), "Content-Type": "application/json"},
                               network_interface=source)


async def form_post(api, path: str, fields: dict[str, str], source: str):
    """A browser's form POST from ``source``: fetch the XSRF cookie, send it back."""
    r = await api.srv.fetch("/login", network_interface=source)
    xsrf = _cookies(r.headers)["_xsrf"]
    return await api.srv.fetch(path, method="POST", body=urlencode({**fields, "_xsrf": xsrf}),
                               headers={"Cookie": f"_xsrf={xsrf}",
                                        "Content-Type": "application/x-www-form-urlencoded"},
                               network_interface=source)


async def test_an_attacker_cannot_lock_the_administrator_out(api_db):
    api = api_db
    limit = loginthrottle.DEFAULT.per_pair
    codes = [(await token_by_password(api, "admin", "not the password", "127.0.0.2")).code for _ in range(limit + 2)]
    assert codes == [401] * limit + [429, 429]  # that pair is locked...
    for _ in range(limit):
        r = await form_post(api, "/login", {"username": "admin", "password": "still not it"}, "127.0.0.3")
        assert r.code == 401
    # ... the account is not: the owner, elsewhere, logs in (slowed down at most, never refused).
    r = await form_post(api, "/login", {"username": "admin", "password": PASSWORD}, "127.0.0.1")
    assert r.code == 303, r.body[:300]
    r = await token_by_password(api, "admin", PASSWORD, "127.0.0.1")
    assert r.code == 201
    # And the attacker's first address stays locked, right password or not.
    r = await token_by_password(api, "admin", PASSWORD, "127.0.0.2")
    assert r.code == 429 and int(r.headers["Retry-After"]) > 0


async def test_wrong_current_passwords_are_throttled_per_account_and_address(api_db):
    api = api_db

    async def change(current: str, source: str):
        return await api.srv.fetch("/api/v1/users/me/password", method="POST",
                                   body=json.dumps({"current_password": current, "new_password": NEW_PASSWORD}),
                                   headers={"Authorization": f"Bearer {api.tokens['alice']}",
                                            "Content-Type": "application/json"}, network_interface=source)

    for _ in range(loginthrottle.DEFAULT.password_per_pair):
        r = await change("a wrong guess", "127.0.0.2")
        assert r.code == 400 and b"current_password" in r.body
    r = await change(PASSWORD, "127.0.0.2")
    assert r.code == 429 and int(r.headers["Retry-After"]) > 0 and b"too many wrong current passwords" in r.body
    r = await change(PASSWORD, "127.0.0.1")
    assert r.code == 204
    failed = api.run(lambda s: s.scalar(select(func.count()).where(AuditEvent.action == "user.password",
                                                                   AuditEvent.result == "failed")))
    assert failed == loginthrottle.DEFAULT.password_per_pair


async def test_registration_is_limited_per_address(api_db):
    """Refused registrations go back to the form (303 to /register, the message carried to it); past the
    limit per address even a good one is refused there, and from another address it is not."""
    from fogmachine.db.models import User

    api = api_db
    limit = loginthrottle.DEFAULT.register_per_address
    tries = [("alice", PASSWORD), ("Bad Name", PASSWORD), ("bob", PASSWORD)] * limit

    def exists(name: str) -> bool:
        return api.run(lambda s: s.scalar(select(func.count()).where(User.username == name))) == 1

    for name, password in tries[:limit - 1]:
        r = await form_post(api, "/register", {"username": name, "password": password,
                                               "confirm_password": password}, "127.0.0.2")
        assert r.code == 303 and r.headers["Location"] == "/register", (r.code, r.headers.get("Location"))
    r = await form_post(api, "/register", {"username": "newbie", "password": PASSWORD,
                                           "confirm_password": PASSWORD}, "127.0.0.2")
    assert r.code == 303 and r.headers["Location"] != "/register" and exists("newbie")  # the tenth, a good one
    r = await form_post(api, "/register", {"username": "another", "password": PASSWORD,
                                           "confirm_password": PASSWORD}, "127.0.0.2")
    assert r.code == 303 and r.headers["Location"] == "/register" and not exists("another")
    r = await form_post(api, "/register", {"username": "another", "password": PASSWORD,
                                           "confirm_password": PASSWORD}, "127.0.0.3")
    assert r.code == 303 and r.headers["Location"] != "/register" and exists("another")
