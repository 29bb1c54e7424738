"""Two Fogmachine server processes sharing one database: a session ended in one ends in the other.

Each process is a real ``fogmachine serve`` (tests/support/serverproc.py); both
read the same cookie secret, as servers behind one balancer do.
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fogmachine.db.session import Database
from fogmachine.services.passwords import hash_password
from fogmachine.services.users import create_user
from tests.support import serverproc, testhosts

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "correct horse battery"


@dataclass
class Browser:
    """A cookie jar of one browser, pointed at whichever server process it talks to."""

    cookies: dict[str, str] = field(default_factory=dict)
    source: str = "127.0.0.1"  # the loopback address it connects from: the server sees it as the client's

    def request(self, server: serverproc.ServerProcess, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, str]:
        data = None
        hdrs = dict(headers or {})
        if form is not None:
            if "_xsrf" in self.cookies:
                form = {**form, "_xsrf": self.cookies["_xsrf"]}
            data = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            data = body
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60, source_address=(self.source, 0))
        try:
            conn.request("POST" if data is not None else "GET", path, body=data, headers=hdrs)
            resp = conn.getresponse()
            code, raw, got = resp.status, resp.read(), resp.headers
        finally:
            conn.close()
        for line in got.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if value in ("", '""') or "Max-Age=0" in line or "01 Jan 1970" in line:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return code, raw.decode(errors="replace")

    def login(self, server: serverproc.ServerProcess, username: str, password: str = PASSWORD) -> int:
        self.request(server, "/login")
        return self.request(server, "/login", {"username": username, "password": password})[0]


@pytest.fixture
def two_servers(tmp_path, database_url):
    virthosts = testhosts.write_virthosts(tmp_path / "virthosts.conf", {"h1": "test:///default"})
    secret = tmp_path / "cookie_secret"
    servers = []
    for name in ("a", "b"):
        settings = {"data_dir": str(tmp_path / f"data-{name}"), "virthosts": str(virthosts),
                    "local_catalog": str(ROOT / "catalog.conf"), "database_connection": database_url,
                    "cookie_secret_file": str(secret), "log_level": "info"}
        servers.append(serverproc.spawn(tmp_path, name, settings))
    db = Database(database_url, threads=1)
    db.run_sync(create_user, "ann", "", email="ann@example.org", password_hash=hash_password(PASSWORD))
    db.dispose()
    yield servers
    for server in servers:
        server.stop()


async def test_logout_and_password_change_in_one_process_end_sessions_in_the_other(two_servers):
    a, b = two_servers
    run = asyncio.to_thread
    ann = Browser()
    assert await run(ann.login, a, "ann") == 303
    copied = Browser(dict(ann.cookies))
    assert (await run(copied.request, b, "/api/v1/users/me"))[0] == 200  # the same session, served by B
    code, _ = await run(copied.request, b, "/logout", {})
    assert code == 303
    assert (await run(ann.request, a, "/api/v1/users/me"))[0] == 401  # ended by B, refused by A at once
    # A password change made through B ends ann's other session held on A, and keeps B's.
    on_a, on_b = Browser(), Browser()
    assert await run(on_a.login, a, "ann") == 303 and await run(on_b.login, b, "ann") == 303
    code, text = await run(on_b.request, b, "/profile/password", {
        "current_password": PASSWORD, "new_password": "ochre lantern quietly",
        "confirm_password": "ochre lantern quietly"})
    assert code == 303, text[:500]
    assert (await run(on_a.request, a, "/api/v1/users/me"))[0] == 401
    assert (await run(on_b.request, a, "/api/v1/users/me"))[0] == 200

