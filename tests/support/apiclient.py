"""An API client against the real server: users, their tokens, and a one-line request helper.

The fixtures `make_api`, `api` and `api_database_url` are imported by the conftest of tests/web/api and by
tests/web/test_legacy.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.orm import Session

from fogmachine.db.models import User
from fogmachine.services import tokens
from fogmachine.services.actor import Actor
from fogmachine.services.passwords import hash_password
from fogmachine.services.users import create_user

PASSWORD = "correct horse battery"


@dataclass
class Reply:
    code: int
    headers: Any
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def error(self) -> dict[str, Any]:
        return self.json["error"]


@dataclass
class Api:
    """The running server plus users alice and bob and an administrator, each with tokens."""

    srv: Any
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    async def call(self, method: str, path: str, *, as_: str | None = "alice", body: Any = None,
                   headers: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        """``as_`` names a token key (alice, alice-read, bob, admin) or None for no credentials."""
        hdrs = dict(headers or {})
        if as_ is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.tokens[as_]}")
        payload: Any = raw
        if body is not None:
            payload = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        r = await self.srv.fetch(path, method=method, body=payload, headers=hdrs)
        return Reply(r.code, r.headers, r.body)

    def run(self, fn: Any, *args: Any) -> Any:
        return self.srv.ctx.db.run_sync(fn, *args)

    async def login(self, username: str) -> dict[str, str]:
        """Log in through the dashboard's form; returns the cookies (session and _xsrf)."""
        r = await self.srv.fetch("/login")
        xsrf = _cookies(r.headers)["_xsrf"]
        form = f"username={username}&password={PASSWORD.replace(' ', '+')}&_xsrf={xsrf}"
        r = await self.srv.fetch("/login", method="POST", body=form,
                                 headers={"Cookie": f"_xsrf={xsrf}",
                                          "Content-Type": "application/x-www-form-urlencoded"})
        assert r.code in (302, 303), r.body
        cookies = _cookies(r.headers)
        assert "fm_session" in cookies
        return {"fm_session": cookies["fm_session"], "_xsrf": xsrf}


def _cookies(headers: Any) -> dict[str, str]:
    found = {}
    for line in headers.get_list("Set-Cookie"):
        name, _, rest = line.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def _seed(session: Session, password_hash: str) -> tuple[dict[str, User], dict[str, str]]:
    users = {
        "alice": create_user(session, "alice", "", email="alice@example.org", password_hash=password_hash),
        "bob": create_user(session, "bob", "", email="bob@example.org", password_hash=password_hash),
        "admin": create_user(session, "admin", "", is_admin=True, password_hash=password_hash),
    }
    made = {}
    for key, user, scope in (("alice", users["alice"], "write"), ("alice-read", users["alice"], "read"),
                             ("bob", users["bob"], "write"), ("admin", users["admin"], "write")):
        actor = Actor(user.id, user.username, user.is_admin)
        _, made[key] = tokens.create_token(session, actor, tokens.NewToken(f"test-{key}", scope, 30))
    return users, made


_HASH: list[str] = []


@pytest.fixture
def api_database_url() -> str | None:
    """The database of make_api's servers: None is SQLite in the server's data dir.

    A module whose routes write overrides it with the parametrized ``database_url``, so that each of
    its tests runs on SQLite, MariaDB and PostgreSQL (and gets the mysql/postgres markers)::

        @pytest.fixture
        def api_database_url(database_url: str) -> str:
            return database_url
    """
    return None


@pytest.fixture
def make_api(make_config, start_server, api_database_url):
    """``await make_api(**config)`` -> Api on a fresh server (test-driver hosts h1 and h2 by default), on
    ``api_database_url`` unless a ``database_connection`` setting is given."""

    async def make(hosts: dict[str, Any] | None = None, **settings: str) -> Api:
        if api_database_url is not None:
            settings.setdefault("database_connection", api_database_url)
        srv = await start_server(make_config(hosts=hosts if hosts is not None else {"h1": {}, "h2": {}},
                                             **settings))
        if not _HASH:
            _HASH.append(hash_password(PASSWORD))
        users, made = srv.ctx.db.run_sync(_seed, _HASH[0])
        return Api(srv, users, made)

    return make


@pytest.fixture
async def api(make_api) -> Api:
    return await make_api()
