"""The OpenAPI 3.1 document, generated from the route table and the handlers' declarations.

Paths come from the Tornado route patterns (named groups become path
parameters), operations from each handler's ``api`` declarations, request and
response schemas from the same ``schema.Obj`` specs that validate requests. A
handler method without a declaration is a programming error caught when the
document is built, and tests/web/api/test_openapi.py checks the document
against the live router in both directions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fogmachine import __version__
from fogmachine.web.api.base import BODY_METHODS, EMPTY, ApiHandler, Op
from fogmachine.web.api.schema import PATH_ID, Field, Obj

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
REASONS = {
    400: "The request is malformed; details.field names the culprit",
    401: "No credentials, or an unknown, revoked or expired token",
    403: "Not allowed: another user's object, a read-only token, or administrators only",
    404: "No such object, or not one of yours",
    405: "Method not allowed",
    409: "The object's state does not allow this (e.g. the guest is already running)",
    413: "The request body is too large",
    415: "The request body must be application/json (or another media type the operation lists)",
    429: "Too many requests; try again later",
    502: "A hypervisor host or Cobbler failed or could not be reached",
    503: "The database is unreachable",
    504: "A hypervisor host or Cobbler did not answer in time",
}
ERROR = Obj("Error", (
    Field("error", "object", ref=Obj("ErrorBody", (
        Field("code", "string", "machine-readable, e.g. not_found, invalid, conflict", example="invalid"),
        Field("message", "string", "for people"),
        Field("details", "object", "e.g. field: the request field at fault"),
    ), closed=False)),
), description="Every error has this shape.", closed=False)
DESCRIPTION = """Fogmachine's JSON API: check virtual machines out of a pool of libvirt hosts.

Authenticate with `Authorization: Bearer TOKEN` (create one with `POST /api/v1/tokens`,
which also takes your username and password as HTTP Basic: `curl -u alice ...`), or with
the dashboard's session cookie; requests that change
something with the cookie must also send the `X-XSRFToken` header (the `_xsrf` cookie's
value). A token with the `read` scope may only use GET.

Errors always look like `{"error": {"code": "...", "message": "...", "details": {...}}}`.
"""


class RouteError(ValueError):
    """A route pattern the document cannot express (a bug in a route table, found at build time)."""


def path_template(pattern: str) -> tuple[str, list[tuple[str, str]]]:
    """``/x/(?P<id>[0-9]+)/y`` -> (``/x/{id}/y``, [(``id``, ``[0-9]+``)])."""
    out: list[str] = []
    params: list[tuple[str, str]] = []
    i = 0
    pattern = pattern.removeprefix("^").removesuffix("$")
    while i < len(pattern):
        if pattern.startswith("(?P<", i):
            end_name = pattern.index(">", i)
            name = pattern[i + 4:end_name]
            depth, k = 1, end_name + 1
            while depth:
                if k >= len(pattern):
                    raise RouteError(f"unbalanced group in {pattern!r}")
                char = pattern[k]
                if char == "\\":
                    k += 2
                    continue
                depth += {"(": 1, ")": -1}.get(char, 0)
                k += 1
            params.append((name, pattern[end_name + 1:k - 1]))
            out.append("{" + name + "}")
            i = k
        elif pattern[i] == "\\":
            out.append(pattern[i + 1])
            i += 2
        elif pattern[i] in "()[]*+?|{}.^$":
            raise RouteError(f"route {pattern!r}: only named groups may hold regular expressions")
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out), params


def path_parameter(name: str, regex: str) -> dict[str, Any]:
    """A path parameter: a name ending in ``_id`` is a numeric id (``PATH_ID``), any other one the route's regex."""
    schema = PATH_ID.json_schema() if name.endswith("_id") else {"type": "string", "pattern": f"^(?:{regex})$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _error_response(status: int, refs: dict[str, Any]) -> dict[str, Any]:
    return {"description": REASONS.get(status, "Error"),
            "content": {"application/json": {"schema": ERROR.reference(refs)}}}


def operation(method: str, path: str, params: list[tuple[str, str]], op: Op, refs: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": operation_id(method, path), "summary": op.summary, "tags": [op.tag]}
    description = op.description
    if op.admin:
        description = (description + "\n\n" if description else "") + "Administrators only."
    if description:
        doc["description"] = description
    parameters = [path_parameter(name, regex) for name, regex in params]
    if op.query is not None:
        parameters.extend(op.query.openapi_parameters())
    if parameters:
        doc["parameters"] = parameters
    if method.upper() in BODY_METHODS:
        body = op.body or EMPTY
        schema = body.reference(refs)
        doc["requestBody"] = {"required": any(f.required for f in body.fields),
                              "content": {media: {"schema": schema}
                                          for media in ("application/json", *op.also_accepts)}}
    success: dict[str, Any] = {"description": op.summary}
    if op.status != 204 and op.response is not None:
        success["content"] = {"application/json": {"schema": op.response.reference(refs)}}
        for media, answer in op.also_answers:
            success["content"][media] = {"schema": answer.reference(refs)}
    if op.location:
        success["headers"] = {"Location": {"description": "the URL of the object", "schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    for status in op.all_errors(method.upper(), bool(params)):
        alternative = dict(op.alternatives).get(status)
        if alternative is not None:
            responses[str(status)] = {"description": REASONS.get(status, "Error"),
                                      "content": {"application/json": {"schema": alternative.reference(refs)}}}
        else:
            responses[str(status)] = _error_response(status, refs)
    doc["responses"] = responses
    if op.public:
        doc["security"] = []
    elif op.basic_auth:
        doc["security"] = [{"bearer": []}, {"session": []}, {"basic": []}]
    if op.deprecated:
        doc["deprecated"] = True
    return doc


def operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w and w not in ("api", "v1")]
    return method + "".join(w[:1].upper() + w[1:] for w in words)


def documented_routes(routes: list[tuple[Any, ...]]) -> list[tuple[str, type[ApiHandler]]]:
    """The (pattern, handler) pairs the document describes: every route served by an ApiHandler."""
    found = []
    for route in routes:
        pattern, handler = route[0], route[1]
        if isinstance(handler, type) and issubclass(handler, ApiHandler):
            found.append((pattern, handler))
    return found


def implemented_methods(handler: type[ApiHandler]) -> set[str]:
    """HTTP methods the handler class itself answers (not Tornado's 405 default)."""
    import tornado.web

    return {m for m in HTTP_METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def build_document(routes: list[tuple[Any, ...]]) -> dict[str, Any]:
    refs: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    tags: list[str] = []
    for pattern, handler in documented_routes(routes):
        path, params = path_template(pattern)
        methods = implemented_methods(handler)
        undocumented = methods - set(handler.api)
        if undocumented:
            raise RouteError(f"{handler.__name__} answers {', '.join(sorted(undocumented))} on {path} "
                             "without an Op declaration")
        missing = set(handler.api) - methods
        if missing:
            raise RouteError(f"{handler.__name__} declares {', '.join(sorted(missing))} on {path} but has no method")
        if path in paths:
            raise RouteError(f"two routes for {path}")
        item: dict[str, Any] = {}
        for method in HTTP_METHODS:
            op = handler.api.get(method)
            if op is not None:
                item[method] = operation(method, path, params, op, refs)
                if op.tag not in tags:
                    tags.append(op.tag)
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Fogmachine", "version": __version__, "description": DESCRIPTION,
                 "license": {"name": "GPL-2.0-or-later", "identifier": "GPL-2.0-or-later"}},
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(refs.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API token: Authorization: Bearer fm_..."},
                "session": {"type": "apiKey", "in": "cookie", "name": "fm_session",
                            "description": "The dashboard's session cookie; changes also need X-XSRFToken."},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "Username and password: accepted only to create a token."},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def document_json(application: Any) -> bytes:
    """The document for this application, built on first use and kept (routes do not change)."""
    cached: bytes | None = application.settings.get("fm_openapi_json")
    if cached is None:
        from fogmachine.web import api

        cached = json.dumps(build_document(api.documented_routes()), indent=1).encode()
        application.settings["fm_openapi_json"] = cached
    return cached


class OpenApiHandler(ApiHandler):
    api = {"get": Op("This document", "meta", response=Field("document", "object", "an OpenAPI 3.1 document"),
                     public=True)}

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(document_json(self.application))


# The docs page loads only this server's files (Swagger UI is vendored) and fetches only this server.
# No 'unsafe-inline' at all: Swagger UI's React sets styles through the DOM (CSSOM), which CSP allows,
# and the page's own styles are in static/api-docs.css. Swagger's icons are data: images.
# tests/browser/test_api_docs.py renders it and runs "Try it out" with no CSP violation.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "object-src 'none'")


class DocsHandler(ApiHandler):
    """Swagger UI, vendored in static/vendor/swagger-ui (nothing is loaded from the internet).

    Never framed (X-Frame-Options and the CSP's frame-ancestors), and its "Try it out" does not add
    the XSRF header (static/api-docs.js): with only the session cookie it reads, and a write needs an
    API token given to "Authorize", so a page that tricks a user into clicking cannot act as them.
    """

    api = {"get": Op("The API's documentation, rendered for people (HTML)", "meta", public=True)}

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", DOCS_CSP)
        self.set_header("Referrer-Policy", "same-origin")

    def get(self) -> None:
        self.render("api_docs.html")


default_handlers = [
    (r"/api/v1/openapi\.json", OpenApiHandler),
    (r"/api/v1/docs", DocsHandler),
]
