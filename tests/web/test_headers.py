"""Frame protection, no sniffing and the docs page's CSP on every answer; Secure cookies over https.

Through the real server. The request's protocol is the one fogmachine.web.proxies
decided: https only from a trusted proxy's X-Forwarded-Proto (or TLS itself).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.test_proxies import secure

FRAMED = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}


def _directives(csp: str) -> dict[str, str]:
    return {part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2] for part in csp.split(";") if part.strip()}


async def test_the_api_docs_page_cannot_be_framed_and_loads_only_this_server(make_config: Any,
                                                                            start_server: Any) -> None:
    srv = await start_server(make_config())
    r = await srv.fetch("/api/v1/docs")
    assert r.code == 200
    assert {k: r.headers.get(k) for k in FRAMED} == FRAMED
    csp = _directives(r.headers["Content-Security-Policy"])
    assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and "unsafe" not in r.headers["Content-Security-Policy"]
    assert "http" not in r.headers["Content-Security-Policy"]  # no CDN, no other origin
    assert b"<style" not in r.body and b"<script>" not in r.body  # nothing inline for the CSP to refuse
    assert b"document.cookie" not in (await srv.fetch("/static/api-docs.js")).body  # no XSRF header added


@pytest.mark.parametrize("path", ["/", "/login", "/no-such-page", "/api/v1/version", "/api/v1/openapi.json",
                                  "/api/v1/guests", "/static/app.js", "/static/api-docs.js"])
async def test_every_answer_forbids_framing_and_sniffing(make_config: Any, start_server: Any, path: str) -> None:
    srv = await start_server(make_config())
    r = await srv.fetch(path)
    assert {k: r.headers.get(k) for k in FRAMED} == FRAMED, (r.code, path)
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


async def test_the_xsrf_cookie_is_secure_exactly_when_the_request_came_over_https(make_config: Any,
                                                                                   start_server: Any) -> None:
    srv = await start_server(make_config(trusted_proxies="127.0.0.1"))
    over_https = await srv.fetch("/login", headers={"X-Forwarded-Proto": "https"})
    plain = await srv.fetch("/login")
    cookie = {r: next(line for line in r.headers.get_list("Set-Cookie") if line.startswith("_xsrf="))
              for r in (over_https, plain)}
    assert secure(cookie[over_https]) and not secure(cookie[plain])


async def test_an_untrusted_client_claiming_https_gets_no_secure_xsrf_cookie(make_config: Any,
                                                                              start_server: Any) -> None:
    srv = await start_server(make_config())
    r = await srv.fetch("/login", headers={"X-Forwarded-Proto": "https"})
    assert not secure(next(line for line in r.headers.get_list("Set-Cookie") if line.startswith("_xsrf=")))
