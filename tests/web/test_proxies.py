"""X-Forwarded-For, X-Real-Ip and X-Forwarded-Proto count only from the operator's trusted_proxies.

Through the real server: logins from a chosen loopback source address (127.0.0.0/8
is all local), with forged headers, then the address the audit log recorded and
whether the cookies came back Secure. And through Debian's nginx as a real
reverse proxy, over HTTP and HTTPS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import tornado.httpclient
from sqlalchemy import select
from tornado.httputil import HTTPHeaders

from fogmachine.config import load, parse_networks
from fogmachine.db.models import AuditEvent
from fogmachine.errors import ConfigError
from fogmachine.web.proxies import TrustedProxies
from tests.support import nginx
from tests.support.apiclient import PASSWORD, make_api

__all__ = ["make_api"]

FORGED = {"X-Forwarded-For": "203.0.113.66", "X-Real-Ip": "203.0.113.67", "X-Forwarded-Proto": "https"}


def _cookies(headers: Any) -> dict[str, str]:
    """Cookie name -> its whole Set-Cookie line."""
    return {line.split("=", 1)[0].strip(): line for line in headers.get_list("Set-Cookie")}


async def login(base_url: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None,
                username: str = "alice") -> dict[str, str]:
    """The dashboard's login form, from ``source``; returns the Set-Cookie lines of both answers."""
    client = tornado.httpclient.AsyncHTTPClient()
    options: dict[str, Any] = {"network_interface": source, "validate_cert": False, "follow_redirects": False,
                               "raise_error": False}
    first = await client.fetch(base_url + "/login", headers=dict(headers or {}), **options)
    assert first.code == 200, first.body
    set_cookies = _cookies(first.headers)
    xsrf = set_cookies["_xsrf"].split("=", 1)[1].split(";", 1)[0]
    form = urlencode({"username": username, "password": PASSWORD, "_xsrf": xsrf})
    reply = await client.fetch(base_url + "/login", method="POST", body=form, **options,
                               headers={**(headers or {}), "Cookie": f"_xsrf={xsrf}",
                                        "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.code == 303, reply.body
    return {**set_cookies, **_cookies(reply.headers)}


def login_addresses(api: Any) -> list[str]:
    return api.run(lambda s: list(s.scalars(select(AuditEvent.remote_addr).where(
        AuditEvent.action == "user.login").order_by(AuditEvent.id))))


def secure(set_cookie_line: str) -> bool:
    return "secure" in [part.strip().lower() for part in set_cookie_line.split(";")]


# -- the rule itself ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("198.51.100.1", FORGED, ("198.51.100.1", None)),  # not a proxy: its headers mean nothing
    ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}, ("198.51.100.7", None)),
    ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}, ("198.51.100.7", None)),
    ("127.0.0.1", {"X-Forwarded-For": "10.9.9.9, 10.1.2.3"}, ("10.9.9.9", None)),  # every hop trusted
    ("127.0.0.1", {"X-Forwarded-For": "<script>, 10.1.2.3"}, ("10.1.2.3", None)),  # junk: the last good hop
    ("127.0.0.1", {"X-Real-Ip": "198.51.100.8", "X-Forwarded-Proto": "https"}, ("198.51.100.8", "https")),
    ("127.0.0.1", {"X-Forwarded-Proto": "gopher"}, ("127.0.0.1", None)),
    ("::ffff:127.0.0.1", {"X-Forwarded-For": "2001:db8::5"}, ("2001:db8::5", None)),
])
def test_the_client_is_the_right_most_address_no_trusted_proxy_added(peer: str, headers: dict[str, str],
                                                                       expected: tuple[str, str | None]) -> None:
    proxies = TrustedProxies(parse_networks("127.0.0.1, 10.0.0.0/8"))
    assert proxies.client(peer, HTTPHeaders(headers)) == expected


@pytest.mark.parametrize("value", ["localhost", "10.0.0.1/8", "300.1.1.1", "127.0.0.1,,nonsense"])
def test_a_bad_trusted_proxies_value_is_refused_at_load_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, environ={}, trusted_proxies=value)
    assert "trusted_proxies" in str(caught.value)


def test_trusted_proxies_defaults_to_none() -> None:
    assert load(None, environ={}).trusted_proxies == ()


# -- through the real server ------------------------------------------------------------------------

async def test_a_client_that_is_not_a_trusted_proxy_cannot_choose_its_address_or_protocol(
        make_api: Any, database_url: str) -> None:
    api = await make_api(database_connection=database_url, trusted_proxies="127.0.0.1")
    cookies = await login(api.srv.base_url, source="127.0.0.3", headers=FORGED)
    assert login_addresses(api) == ["127.0.0.3"]
    assert not secure(cookies["fm_session"]) and not secure(cookies["_xsrf"])


async def test_without_trusted_proxies_no_one_is_believed(make_api: Any, database_url: str) -> None:
    api = await make_api(database_connection=database_url)
    cookies = await login(api.srv.base_url, source="127.0.0.1", headers=FORGED)
    assert login_addresses(api) == ["127.0.0.1"]
    assert not secure(cookies["fm_session"])


async def test_a_trusted_proxys_headers_are_honoured(make_api: Any, database_url: str) -> None:
    api = await make_api(database_connection=database_url, trusted_proxies="127.0.0.1/32")
    cookies = await login(api.srv.base_url, source="127.0.0.1",
                          headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"})
    assert login_addresses(api) == ["198.51.100.7"]
    assert secure(cookies["fm_session"])


async def test_through_nginx_as_a_real_reverse_proxy(make_api: Any, database_url: str, tmp_path: Path) -> None:
    api = await make_api(database_connection=database_url, trusted_proxies="127.0.0.1")
    with nginx.reverse_proxy(tmp_path / "nginx", api.srv.server.port) as proxy:
        # A client at 127.0.0.4 forges headers; nginx appends what it saw, Fogmachine takes that.
        plain = await login(proxy.http_url, source="127.0.0.4", headers=FORGED)
        tls = await login(proxy.https_url, source="127.0.0.5", headers={**FORGED, "X-Forwarded-Proto": "http"})
    assert login_addresses(api) == ["127.0.0.4", "127.0.0.5"]
    # What the client sent as X-Forwarded-Proto never counts; nginx's $scheme does.
    assert not secure(plain["fm_session"])
    assert secure(tls["fm_session"]) and secure(tls["_xsrf"])
    assert not secure(plain["_xsrf"])
