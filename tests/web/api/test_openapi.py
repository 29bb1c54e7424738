"""The OpenAPI document against the live router, in both directions, and the docs page."""

from __future__ import annotations

import json
import re

import pytest
import tornado.httputil
import tornado.web

from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.openapi import HTTP_METHODS, RouteError, build_document, implemented_methods, path_template
from fogmachine.web.base import NotFoundHandler

# A value for each path parameter name, to turn a documented path into a real URL.
SAMPLES = {"host_name": "h1", "ref": "52:54:00:aa:bb:cc", "template_name": "db-web"}


def _sample(name: str, schema: dict) -> str:
    if schema.get("type") == "integer":
        return "7"
    assert name in SAMPLES, f"add a sample value for path parameter {name} to this test"
    assert re.fullmatch(schema["pattern"].strip("^$"), SAMPLES[name])
    return SAMPLES[name]


def _app(srv) -> tornado.web.Application:
    app = srv.server.http.request_callback
    while not isinstance(app, tornado.web.Application):  # inside the ForwardedHeaders and BodyLimit wrappers
        app = app.app
    return app


def _route(app: tornado.web.Application, method: str, path: str):
    """The handler class the application routes ``method path`` to, and its path kwargs."""
    start = tornado.httputil.RequestStartLine(method.upper(), path, "HTTP/1.1")
    request = tornado.httputil.HTTPServerRequest(start_line=start,
                                                 headers=tornado.httputil.HTTPHeaders({"Host": "localhost"}))
    for rule in app.wildcard_router.rules:
        match = rule.matcher.match(request)
        if match is not None:
            return rule.target, match
    return None, None


async def _document(srv) -> dict:
    r = await srv.fetch("/api/v1/openapi.json")
    assert r.code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    return json.loads(r.body)


async def test_every_api_route_and_method_is_documented(make_config, start_server):
    srv = await start_server(make_config())
    doc = await _document(srv)
    app = _app(srv)
    seen = 0
    for rule in app.wildcard_router.rules:
        target = rule.target
        pattern = rule.matcher.regex.pattern
        is_api = pattern.startswith("/api/") or (isinstance(target, type) and issubclass(target, ApiHandler))
        if not is_api:
            continue
        assert isinstance(target, type) and issubclass(target, ApiHandler), f"{pattern} is not an ApiHandler"
        path, _ = path_template(pattern)
        assert path in doc["paths"], f"route {path} is missing from the document"
        methods = implemented_methods(target)
        assert methods, pattern
        assert methods == set(doc["paths"][path]), f"{path}: {methods} vs {set(doc['paths'][path])}"
        seen += 1
    assert seen == len(doc["paths"])


async def test_every_documented_operation_reaches_a_handler_that_answers_it(make_config, start_server):
    srv = await start_server(make_config())
    doc = await _document(srv)
    app = _app(srv)
    for path, item in doc["paths"].items():
        params = {p["name"]: p for p in next(iter(item.values())).get("parameters", []) if p["in"] == "path"}
        url = re.sub(r"\{(\w+)\}", lambda m, p=params: _sample(m.group(1), p[m.group(1)]["schema"]), path)
        for method in item:
            target, _ = _route(app, method, url)
            assert target is not None and target is not NotFoundHandler, f"{method} {url} reaches no handler"
            assert method in implemented_methods(target), f"{target.__name__} does not answer {method} {url}"
    # And over HTTP: an undocumented method on a documented path is a 405 naming the documented ones.
    for path, item in doc["paths"].items():
        if "{" in path:
            continue
        other = next(m for m in HTTP_METHODS if m not in item)
        r = await srv.fetch(path, method=other.upper(), body=b"" if other in ("post", "put", "patch") else None,
                            allow_nonstandard_methods=True)
        assert r.code == 405, (other, path, r.code)
        assert set(r.headers["Allow"].lower().split(", ")) == set(item)


def test_document_is_openapi_3_1_with_components_for_every_reference():
    from fogmachine.web import api

    doc = build_document(api.documented_routes())
    assert doc["openapi"] == "3.1.0"
    text = json.dumps(doc)
    for ref in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in doc["paths"].values():
        for op in item.values():
            assert "401" in op["responses"] or op.get("security") == []


def test_request_schemas_come_from_the_validators():
    """The document's request schema IS the validator's spec: one source of truth."""
    from fogmachine.web import api
    from fogmachine.web.api.tokens import TOKEN_CREATE

    doc = build_document(api.documented_routes())
    published = doc["components"]["schemas"]["TokenCreate"]
    assert published == TOKEN_CREATE.json_schema({})
    assert published["additionalProperties"] is False
    assert published["required"] == ["name"]


class _Undeclared(ApiHandler):
    api = {"get": Op("x", "t")}

    def get(self) -> None: ...

    def post(self) -> None: ...


class _Phantom(ApiHandler):
    api = {"get": Op("x", "t"), "delete": Op("y", "t")}

    def get(self) -> None: ...


def test_a_handler_method_without_a_declaration_or_a_declaration_without_a_method_is_refused():
    with pytest.raises(RouteError, match="without an Op"):
        build_document([(r"/api/v1/x", _Undeclared)])
    with pytest.raises(RouteError, match="has no method"):
        build_document([(r"/api/v1/x", _Phantom)])
    with pytest.raises(RouteError, match="only named groups"):
        build_document([(r"/api/v1/(x|y)", _Phantom)])


def test_path_templates():
    assert path_template(r"/api/v1/openapi\.json") == ("/api/v1/openapi.json", [])
    assert path_template(r"/a/(?P<guest_id>[0-9]+)/b$") == ("/a/{guest_id}/b", [("guest_id", "[0-9]+")])
    assert path_template(r"/h/(?P<n>[a-z](?:[a-z]{0,3}))") == ("/h/{n}", [("n", "[a-z](?:[a-z]{0,3})")])


async def test_docs_page_renders_the_document_with_vendored_assets_only(make_config, start_server):
    srv = await start_server(make_config())
    r = await srv.fetch("/api/v1/docs")
    assert r.code == 200 and r.headers["Content-Type"].startswith("text/html")
    page = r.body.decode()
    assert "/api/v1/openapi.json" in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            got = await srv.fetch(asset)
            assert got.code == 200, asset
            assert b"https://unpkg.com" not in got.body and b"cdn.jsdelivr" not in got.body
    assert any("swagger-ui-bundle.js" in a for a in assets)
