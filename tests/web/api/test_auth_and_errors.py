"""The API's doorway: credentials, scope, XSRF, sizes, content types and malformed bodies.

Every refusal is JSON in the one error shape, never a redirect, never a traceback.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from fogmachine.db.models import ApiToken
from fogmachine.web.api.base import MAX_API_BODY
from tests.support.apiclient import cookie_header


@pytest.fixture
def api_database_url(database_url: str) -> str:
    """These routes write: every test here runs on SQLite, MariaDB and PostgreSQL (issue 11, item 1)."""
    return database_url


def _shape(reply) -> dict:
    body = reply.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert reply.headers["Content-Type"].startswith("application/json")
    return body["error"]


def _count_tokens(session) -> int:
    return session.scalar(select(func.count()).select_from(ApiToken))


async def test_no_credentials_is_401_json_for_reads_and_writes_never_a_redirect(api):
    for method, path, body in (("GET", "/api/v1/hosts", None), ("GET", "/api/v1/users/me", None),
                               ("POST", "/api/v1/tokens", {"name": "x"}),
                               ("POST", "/api/v1/hosts/h1/disable", None)):
        r = await api.call(method, path, as_=None, body=body)
        assert r.code == 401, (method, path, r.body)
        assert _shape(r)["code"] == "unauthenticated"
        assert "Location" not in r.headers


async def test_post_without_credentials_and_without_xsrf_is_401_not_403(api):
    r = await api.call("POST", "/api/v1/tokens", as_=None, raw=b"")
    assert r.code == 401
    assert _shape(r)["code"] == "unauthenticated"


async def test_unknown_malformed_revoked_tokens_are_401(api):
    for token in ("fm_nope_nope", "not-a-token", "fm_" + "x" * 300, ""):
        r = await api.call("GET", "/api/v1/hosts", as_=None, headers={"Authorization": f"Bearer {token}"})
        assert r.code == 401, token
        _shape(r)


async def test_read_scope_token_may_read_but_not_write(api):
    r = await api.call("GET", "/api/v1/hosts", as_="alice-read")
    assert r.code == 200
    before = api.run(_count_tokens)
    r = await api.call("POST", "/api/v1/tokens", as_="alice-read", body={"name": "more"})
    assert r.code == 403
    assert "read scope" in _shape(r)["message"]
    assert api.run(_count_tokens) == before


async def test_session_cookie_reads_without_xsrf_but_writes_need_it(api):
    cookies = await api.login("alice")
    session_only = {"Cookie": f"fm_session={cookies['fm_session']}"}
    r = await api.call("GET", "/api/v1/users/me", as_=None, headers=session_only)
    assert r.code == 200 and r.json["username"] == "alice"
    before = api.run(_count_tokens)
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "from-browser"}, headers=session_only)
    assert r.code == 403
    assert "_xsrf" in _shape(r)["message"]
    assert api.run(_count_tokens) == before
    with_xsrf = {"Cookie": cookie_header(cookies), "X-XSRFToken": cookies["_xsrf"]}
    r = await api.call("POST", "/api/v1/tokens", as_=None, body={"name": "from-browser"}, headers=with_xsrf)
    assert r.code == 201, r.body
    assert api.run(_count_tokens) == before + 1


async def test_forged_session_cookie_is_401(api):
    r = await api.call("GET", "/api/v1/users/me", as_=None, headers={"Cookie": "fm_session=2|1:0|10:1|2:1|abc"})
    assert r.code == 401


async def test_bearer_token_needs_no_xsrf(api):
    r = await api.call("POST", "/api/v1/tokens", body={"name": "ci"})
    assert r.code == 201


async def test_oversized_body_is_json_413_and_nothing_is_made(api):
    before = api.run(_count_tokens)
    big = json.dumps({"name": "x" * (MAX_API_BODY + 10)}).encode()
    r = await api.call("POST", "/api/v1/tokens", raw=big, headers={"Content-Type": "application/json"})
    assert r.code == 413
    err = _shape(r)
    assert err["code"] == "too_large" and err["details"]["max_bytes"] == MAX_API_BODY
    assert api.run(_count_tokens) == before


async def test_wrong_content_type_is_415(api):
    r = await api.call("POST", "/api/v1/tokens", raw=b"name=x",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.code == 415
    assert _shape(r)["code"] == "unsupported_media_type"
    r = await api.call("POST", "/api/v1/tokens", raw=b'{"name": "x"}', headers={"Content-Type": "text/plain"})
    assert r.code == 415
    r = await api.call("POST", "/api/v1/tokens", raw=b'{"name": "x"}',
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.code == 201


@pytest.mark.parametrize(("raw", "field", "words"), [
    (b'{"name": ', "body", "not valid JSON"),
    (b"\r\n", "body", "not valid JSON"),
    (b"[1, 2]", "body", "must be a JSON object"),
    (b'"name"', "body", "must be a JSON object"),
    (b'{"name": NaN}', "body", "not valid JSON"),
    (b"\xff\xfe", "body", "not UTF-8"),
    (b'{"nmae": "x"}', "nmae", "unknown field"),
    (b'{}', "name", "name is required"),
    (b'{"name": 5}', "name", "must be a string"),
    (b'{"name": null}', "name", "must not be null"),
    (b'{"name": ""}', "name", "at least 1"),
    (b'{"name": "x", "scope": "admin"}', "scope", "one of read, write"),
    (b'{"name": "x", "expires_in_days": "9"}', "expires_in_days", "must be an integer"),
    (b'{"name": "x", "expires_in_days": true}', "expires_in_days", "must be an integer"),
    (b'{"name": "x", "expires_in_days": 1.5}', "expires_in_days", "must be an integer"),
    (b'{"name": "x", "expires_in_days": 0}', "expires_in_days", "between 1 and 365"),
    (b'{"name": "x", "expires_in_days": 99999999999999999999}', "expires_in_days", "between 1 and 365"),
    (b'{"name": "a\\u0000b"}', "name", "NUL"),
    (b'{"name": "a\\ud800b"}', "name", "lone surrogate"),
])
async def test_malformed_bodies_are_400_naming_the_field(api, raw, field, words):
    before = api.run(_count_tokens)
    r = await api.call("POST", "/api/v1/tokens", raw=raw, headers={"Content-Type": "application/json"})
    assert r.code == 400, r.body
    err = _shape(r)
    assert err["code"] == "invalid"
    assert err["details"]["field"] == field
    assert words in err["message"]
    assert api.run(_count_tokens) == before


async def test_deeply_nested_json_is_400_not_500(api):
    raw = b"[" * 100_000 + b"]" * 100_000
    r = await api.call("POST", "/api/v1/tokens", raw=raw[:MAX_API_BODY - 2] + b"]]",
                       headers={"Content-Type": "application/json"})
    assert r.code == 400
    _shape(r)


@pytest.mark.parametrize(("query", "field"), [
    ("?limit=0", "limit"), ("?limit=5000", "limit"), ("?limit=ten", "limit"), ("?offset=-1", "offset"),
    ("?limit=1&limit=2", "limit"), ("?colour=red", "colour"), ("?include_inactive=maybe", "include_inactive"),
])
async def test_bad_query_parameters_are_400_naming_them(api, query, field):
    r = await api.call("GET", "/api/v1/tokens" + query)
    assert r.code == 400
    assert _shape(r)["details"]["field"] == field


async def test_undeclared_method_is_405_with_allow(api):
    r = await api.call("DELETE", "/api/v1/hosts")
    assert r.code == 405
    assert _shape(r)["code"] == "method_not_allowed"
    assert r.headers["Allow"] == "GET"
    r = await api.call("PUT", "/api/v1/tokens", as_=None, raw=b"")
    assert r.code == 405
    assert r.headers["Allow"] == "GET, POST"


async def test_unknown_api_path_is_json_404(api):
    r = await api.call("GET", "/api/v1/guests/1/fly")
    assert r.code == 404
    assert _shape(r)["code"] == "not_found"
    r = await api.call("GET", "/api/v1/tokens/99999999999")
    assert r.code == 404
    _shape(r)
    # More digits than int() converts (4,300): still no such token, not a 500.
    r = await api.call("GET", "/api/v1/tokens/" + "9" * 5000)
    assert r.code == 404
    _shape(r)


async def test_unknown_query_parameters_are_refused_on_every_operation(api):
    for path in ("/api/v1/hosts?verbose=1", "/api/v1/users/me?x=", "/api/v1/version?debug=true"):
        r = await api.call("GET", path)
        assert r.code == 400, path
        assert _shape(r)["details"]["field"] in ("verbose", "x", "debug")
