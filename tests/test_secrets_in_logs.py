"""No secret a run used appears anywhere in that run's log, at DEBUG, with the real Cobbler.

A realistic session against the real server (in-process, logging through
fogmachine.logs.setup into a buffer): a login with a password through the form,
an API token made with HTTP Basic and used as a bearer, a checkout through the
real Cobbler, a phone-home with a wrong token, one with the right token, a
getuser, the Cobbler session token retired behind Fogmachine's back (Cobbler's
``logout``, as when it expires) so that the delete's ``remove_system`` fails with
Cobbler's "invalid token: ..." fault and Fogmachine logs in again, a page request
carrying every cookie, a request whose handler crashes with a token in its URL,
and a logout. Fogmachine talks to Cobbler through a recording TCP forwarder, so
the test knows the Cobbler session tokens it was handed without reading any of
Fogmachine's internals. Then the WHOLE log is searched for every secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import tornado.web

from fogmachine.config import Config
from fogmachine.web.base import BaseHandler
from tests.support import cobbler as cb
from tests.support.apiclient import PASSWORD, cookie_header, make_api
from tests.support.logcapture import server_log
from tests.support.tcpproxy import TcpProxy

__all__ = ["make_api"]
pytestmark = pytest.mark.cobbler
PREFIX = "fmtest-logs-"


def cobbler_tokens(transcript: list[bytes]) -> set[str]:
    """Every token Cobbler's login answered with, read off the wire."""
    wire = b"".join(transcript).decode("utf-8", "replace")
    found = set()
    for answer in re.findall(r"<methodResponse>.*?</methodResponse>", wire, re.DOTALL):
        try:
            (value,), _ = xmlrpc.client.loads(answer)
        except Exception:  # a fault or another answer
            continue
        if isinstance(value, str) and len(value) >= 16 and " " not in value:
            found.add(value)
    logins = len(re.findall(r"<methodName>login</methodName>", wire))
    assert logins and len(found) >= 1, "no Cobbler login seen through the forwarder"
    return found


class Crash(BaseHandler):
    """A handler that fails the way a bug would, with the request's query string in hand."""

    def get(self) -> None:
        raise RuntimeError("a bug while handling the request")


async def wait_step(api: Any, guest_id: int, steps: tuple[str, ...]) -> dict[str, Any]:
    for _ in range(600):
        r = await api.call("GET", f"/api/v1/guests/{guest_id}", as_="admin")
        if r.code == 200 and r.json["step"] in steps:
            return r.json
        await asyncio.sleep(0.1)
    raise AssertionError(f"guest {guest_id} never reached {steps}: {r.body!r}")


async def test_a_whole_session_at_debug_leaves_no_secret_in_the_log(
        make_api: Callable[..., Any], make_config: Callable[..., Config], database_url: str, tmp_path: Path) -> None:
    cb.require()
    cb.seed()
    cb.remove_systems(PREFIX)
    name = PREFIX + "web"
    with TcpProxy(("127.0.0.1", 25151), record=True) as proxy, server_log("debug") as buffer:
        api = await make_api(hosts={"h1": {"cpus": 4, "memory_mb": 4096}}, database_connection=database_url,
                             cobbler_url=f"http://127.0.0.1:{proxy.port}/", cobbler_password=cb.PASSWORD,
                             public_url="http://10.0.2.2:9999", log_level="debug",
                             cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op")
        srv = api.srv
        # A test-only route on the real application, to see what a crash with a token in its URL logs.
        _application(srv).wildcard_router.add_rules([(r"/crash", Crash)])

        # 1. the dashboard: log in with the password, load a page with every cookie, log out at the end
        cookies = await api.login("alice")
        page = await srv.fetch("/guests", headers={"Cookie": cookie_header(cookies)})
        assert page.code == 200

        # 2. an API token made with HTTP Basic, then used as a bearer
        basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        r = await srv.fetch("/api/v1/tokens", method="POST", body={"name": "laptop", "scope": "write"},
                            headers={"Authorization": f"Basic {basic}"})
        assert r.code == 201, r.body
        made_token = json.loads(r.body)["token"]

        # 3. a checkout through the real Cobbler, with that token
        r = await srv.fetch("/api/v1/guests", method="POST", headers={"Authorization": f"Bearer {made_token}"},
                            body={"name": name, "target": cb.PROFILE, "days": 1, "purpose": "log test"})
        assert r.code == 202, r.body
        guest_id = json.loads(r.body)["id"]
        guest = await wait_step(api, guest_id, ("installing", "failed"))
        assert guest["step"] == "installing", guest
        system = await srv.ctx.cobbler.get_system(name)
        phonehome_token = system["autoinstall_meta"]["fogmachine_token"]
        mac = guest["mac"]

        # 4. phone-home: a wrong token, then the right one, then getuser
        wrong = "wrong-" + phonehome_token[::-1]
        r = await srv.fetch(f"/guest/{mac}/set?" + urlencode({"token": wrong, "ip": "10.0.2.15"}))
        assert r.code == 403
        r = await srv.fetch(f"/guest/{mac}/set?" + urlencode({"token": phonehome_token, "ip": "10.0.2.15",
                                                              "hostname": name}))
        assert r.code == 200, r.body
        r = await srv.fetch(f"/guest/{mac}/getuser?" + urlencode({"token": phonehome_token}))
        assert r.code == 200

        # 5. Cobbler forgets Fogmachine's session (as when it expires): the delete's remove_system meets
        #    "invalid token: <token>", and Fogmachine logs in again
        retired = cobbler_tokens(proxy.transcript)
        direct = xmlrpc.client.ServerProxy(cb.XMLRPC_URL)
        for token in retired:
            direct.logout(token)
        r = await srv.fetch(f"/api/v1/guests/{guest_id}", method="DELETE",
                            headers={"Authorization": f"Bearer {api.tokens['alice']}"})
        assert r.code == 204, r.body
        assert await srv.ctx.cobbler.get_system(name) is None

        # 6. a crash with secrets in the URL, and a page request whose query carries them
        r = await srv.fetch("/crash?" + urlencode({"token": phonehome_token, "password": PASSWORD,
                                                   "_xsrf": cookies["_xsrf"]}))
        assert r.code == 500
        r = await srv.fetch("/no-such-page?" + urlencode({"token": made_token}),
                            headers={"Cookie": cookie_header(cookies), "Authorization": f"Bearer {made_token}"})
        assert r.code == 404

        # 7. log out through the form
        r = await srv.fetch("/logout", method="POST", body=urlencode({"_xsrf": cookies["_xsrf"]}),
                            headers={"Cookie": cookie_header(cookies),
                                     "Content-Type": "application/x-www-form-urlencoded"})
        assert r.code == 303
        cookie_secret = Path(srv.ctx.config.cookie_secret_file).read_text().strip()
        every_cobbler_token = cobbler_tokens(proxy.transcript)

    log = buffer.getvalue()
    assert "invalid token" in log, "Cobbler's invalid-token fault never happened: the test proved nothing"
    assert "Uncaught exception" in log and "GET /guest/" in log and "DEBUG" in log
    session_value = cookies["fm_session"].strip('"')
    secrets = {
        "the password": PASSWORD,
        "the password, form-encoded": PASSWORD.replace(" ", "+"),
        "the Basic credentials": basic,
        "the API token made with Basic": made_token,
        **{f"the API token {key}": value for key, value in api.tokens.items()},
        "the phone-home token": phonehome_token,
        "the wrong phone-home token": wrong,
        "the session cookie": session_value,
        "the session cookie's signature": session_value.rsplit("|", 1)[-1],
        "the XSRF cookie": cookies["_xsrf"],
        "the cookie secret": cookie_secret,
        **{f"a Cobbler session token ({i})": t for i, t in enumerate(sorted(every_cobbler_token))},
    }
    leaked = {what: _context(log, value) for what, value in secrets.items() if value and value in log}
    assert not leaked, f"{sorted(leaked)} in the log:\n" + "\n".join(f"{k}: ...{v}..." for k, v in leaked.items())


def _application(srv: Any) -> tornado.web.Application:
    app = srv.server.http.request_callback
    while not isinstance(app, tornado.web.Application):
        app = app.app
    return app


def _context(log: str, value: str) -> str:
    at = log.index(value)
    return log[max(0, at - 120):at + len(value) + 40]
