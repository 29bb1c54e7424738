"""The dashboard through real HTTP: a cookie-keeping client, users, and guests on test-driver hosts."""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from fogmachine.db.models import Guest, Step
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout
from fogmachine.services.passwords import hash_password
from fogmachine.services.users import create_user

PASSWORD = "correct horse battery"
TEST_CATALOG = """\
[tiny]
description = a test-driver guest
virt_type = test
ram_mb = 256
vcpus = 1
disk_gb = 0
boot = kernel
kernel = /var/tmp/fogmachine-test/none/vmlinuz
cmdline = console=ttyS0 fm.hostname={name}
phonehome = no

[huge]
description = bigger than any host
virt_type = test
ram_mb = 999999
vcpus = 1
boot = kernel
kernel = /var/tmp/fogmachine-test/none/vmlinuz
"""
FLASH_RE = re.compile(r'<p class="flash flash-(ok|error)"[^>]*>(.*?)</p>', re.S)
FORM_COOKIE = "fm_form"


@dataclass
class Reply:
    code: int
    headers: Any
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    @property
    def flashes(self) -> list[tuple[str, str]]:
        """The page's flash messages (a form's own message at its top is no flash: ``form_error``)."""
        return [(kind, unescape(text.strip())) for kind, text in FLASH_RE.findall(self.text)]

    def field(self, name: str) -> str:
        """The tag of the form field ``name`` (the first one on the page)."""
        found = re.search(rf'<(?:input|textarea|select)\b[^>]*\bname="{re.escape(name)}"[^>]*>', self.text)
        assert found, f"no field {name}"
        return found.group(0)

    def field_value(self, name: str) -> str:
        tag = self.field(name)
        if tag.startswith("<textarea"):
            rest = self.text[self.text.index(tag) + len(tag):]
            return unescape(rest[:rest.index("</textarea>")])
        found = re.search(r'\bvalue="([^"]*)"', tag)
        return unescape(found.group(1)) if found else ""

    def field_error(self, form: str, name: str) -> str | None:
        """The message under field ``name`` of form ``form``, or None."""
        found = re.search(rf'<span class="field-error" id="{re.escape(form)}-{re.escape(name)}-error">(.*?)</span>',
                          self.text, re.S)
        return unescape(found.group(1)) if found else None

    def form_error(self, form: str) -> str | None:
        """The message at the top of form ``form`` (no field at fault), or None."""
        found = re.search(rf'<p class="flash flash-error form-error" role="alert" id="{re.escape(form)}-error"'
                          r' tabindex="-1">(.*?)</p>', self.text, re.S)
        return unescape(found.group(1)) if found else None

    def marked(self, form: str, name: str) -> bool:
        """Field ``name`` is the one at fault: aria-invalid, described by its message, focused."""
        tag = self.field(name)
        return ('aria-invalid="true"' in tag and f'aria-describedby="{form}-{name}-error"' in tag
                and "autofocus" in tag)


@dataclass
class PageClient:
    """One browser: its cookies (session, _xsrf, flash) follow it from request to request."""

    srv: Any
    cookies: dict[str, str] = field(default_factory=dict)

    def _remember(self, headers: Any) -> None:
        for line in headers.get_list("Set-Cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "expires=Thu, 01 Jan 1970" in line or "Max-Age=0" in line:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value

    def _cookie_header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        r = await self.srv.fetch(path, headers={**self._cookie_header(), **(headers or {})})
        self._remember(r.headers)
        return Reply(r.code, r.headers, r.body.decode())

    async def post(self, path: str, fields: dict[str, Any] | None = None, *, xsrf: str | None = "cookie",
                   headers: dict[str, str] | None = None) -> Reply:
        """POST a form; ``xsrf`` 'cookie' sends the right token, None none, any other string that string."""
        if "_xsrf" not in self.cookies:
            await self.get("/login")  # any page with a form sets the _xsrf cookie
        data = dict(fields or {})
        if xsrf == "cookie":
            data["_xsrf"] = self.cookies["_xsrf"]
        elif xsrf is not None:
            data["_xsrf"] = xsrf
        r = await self.srv.fetch(path, method="POST", body=urlencode(data), headers={
            **self._cookie_header(), "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
        self._remember(r.headers)
        return Reply(r.code, r.headers, r.body.decode())

    async def follow(self, reply: Reply) -> Reply:
        assert reply.code in (302, 303), (reply.code, reply.text[:500])
        return await self.get(reply.location)

    def carried(self) -> str:
        """What the failed-form cookie carries, decoded (it is signed, not encrypted: anyone can read it)."""
        raw = self.cookies[FORM_COOKIE].strip('"')
        encoded = raw.split("|")[4].split(":", 1)[1]
        return base64.b64decode(encoded).decode()

    async def refused(self, path: str, fields: dict[str, Any], back: str) -> Reply:
        """POST a form that is refused: 303 to ``back`` with the failure in the cookie, whose page (an
        ordinary GET) shows it; the cookie is used up by that page."""
        r = await self.post(path, fields)
        assert r.code == 303 and r.location == back, (r.code, r.location, r.text[:800])
        carried = self.carried()
        for name, value in fields.items():  # no password travels, whatever its field is called
            if "password" in name and value:
                assert value not in carried, (name, carried)
        page = await self.follow(r)
        assert page.code == 200 and FORM_COOKIE not in self.cookies
        assert "data-form-url" not in page.text  # an ordinary page: nothing to put in the history
        return page

    async def login(self, username: str, password: str = PASSWORD) -> Reply:
        r = await self.post("/login", {"username": username, "password": password})
        assert r.code == 303, r.text[:2000]
        return r


@dataclass
class Site:
    srv: Any
    users: dict[str, int]

    @property
    def ctx(self) -> Any:
        return self.srv.ctx

    def client(self) -> PageClient:
        return PageClient(self.srv)

    async def as_user(self, username: str) -> PageClient:
        client = self.client()
        await client.login(username)
        return client

    def actor(self, username: str) -> Actor:
        return Actor(user_id=self.users[username], username=username, is_admin=username == "root")

    async def guest(self, owner: str, name: str, target: str = "tiny", days: int = 3) -> int:
        """Check a guest out through the real service and wait until it is provisioned."""
        guest = await checkout(self.ctx, self.actor(owner), CheckoutRequest(name, target, days, "tests"))
        await self.wait_for(guest.id, lambda g: g.step in (Step.READY, Step.FAILED))
        return guest.id

    async def wait_for(self, guest_id: int, check: Any, timeout: float = 20.0) -> Guest:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            row = await self.ctx.db.run(lambda s: s.scalar(select(Guest).where(Guest.id == guest_id)))
            if row is not None and check(row):
                return row
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"guest {guest_id} never reached the expected state: "
                                     f"{row.step if row else 'gone'}/{row.state if row else ''}")
            await asyncio.sleep(0.05)


def write_catalog(directory: Path) -> str:
    path = directory / "test-catalog.conf"
    path.write_text(TEST_CATALOG)
    return str(path)


@pytest.fixture
async def site(make_config, start_server, tmp_path, database_url) -> Site:
    """A server on two test-driver hosts with users alice and bob and the administrator root.

    On each of the three databases: the pages' forms write (checkout, delete, extend, profile, admin).
    """
    return await open_site(make_config, start_server, tmp_path,
                           {"h1": {"cpus": 8, "memory_mb": 16384}, "h2": {"cpus": 4, "memory_mb": 8192}},
                           database_url)


async def open_site(make_config, start_server, tmp_path, hosts: dict[str, Any], database_url: str,
                    **settings: str) -> Site:
    """The ``site`` fixture's server on ``hosts`` (make_config's: test-driver kwargs or URIs), with ``settings``."""
    # The tests' client on loopback stands in for a TLS-terminating reverse proxy when it sends
    # X-Forwarded-Proto (test_auth); from anyone else the header counts for nothing (tests/web/test_proxies.py).
    config = make_config(hosts=hosts, local_catalog=write_catalog(tmp_path), trusted_proxies="127.0.0.1",
                         database_connection=database_url, **settings)
    return await with_users(await start_server(config))


async def with_users(srv: Any) -> Site:
    """``srv`` with the users every page test knows: alice and bob, and the administrator root (password
    PASSWORD, hashed once per run)."""
    users = {}
    for name in ("alice", "bob", "root"):
        user = await srv.ctx.db.run(create_user, name, PASSWORD, is_admin=name == "root",
                                    password_hash=password_hash())
        users[name] = user.id
    return Site(srv, users)


@functools.cache
def password_hash() -> str:
    """Hashed once per test run: Argon2 is slow on purpose, and registration has tests of its own."""
    return hash_password(PASSWORD)
