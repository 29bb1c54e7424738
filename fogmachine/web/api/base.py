"""The base of every API handler: who may call, what they may send, how refusals look.

Each handler declares, per HTTP method, an ``Op``: its query parameters, its
request body, its success status and response object, and the errors it may
answer. ``prepare`` enforces the declaration before the handler body runs
(method, size, credentials, scope, content type, query, body), and the OpenAPI
document is generated from the very same declarations, so what is documented
is what is checked.

Authentication is a bearer token or the session cookie. A browser sends the
cookie on its own, so a request authenticated by the cookie must also carry
the XSRF token; a bearer token is never sent by a browser unasked, so requests
that carry one, or carry no credentials at all (they are refused with 401
anyway), skip the XSRF check. An API request is never redirected to a login
page.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

from fogmachine.errors import (
    AuthenticationRequired,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationError,
)
from fogmachine.services import accounts, tokens
from fogmachine.web.api.schema import PATH_ID, Field, Obj, Query
from fogmachine.web.base import JsonHandler

# Far below the HTTP server's own limit (which drops the connection instead of
# answering), so that an oversized body gets a JSON 413 a client can read.
MAX_API_BODY = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


EMPTY = Obj("Empty", (), description="No fields: send {} or nothing.")


@dataclass(frozen=True)
class Op:
    """What one HTTP method of one route takes and answers; enforced and documented."""

    summary: str
    tag: str
    description: str = ""
    query: Query | None = None
    body: Obj | None = None
    status: int = 200
    response: Obj | Field | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    admin: bool = False
    location: bool = False  # the answer carries a Location header
    deprecated: bool = False
    # Error statuses whose body is not the usual error shape (health's 503).
    alternatives: tuple[tuple[int, Obj], ...] = ()
    # Also accepts the user's password as HTTP Basic: only for making a first token with curl.
    basic_auth: bool = False
    # Media types the body may come in besides JSON (the handler's ``decode_body`` decodes them into what
    # the JSON would have been, and ``body`` checks that), and ones the success answer may come in, with
    # their schema: YAML template files (web/api/envtemplates.py).
    also_accepts: tuple[str, ...] = ()
    also_answers: tuple[tuple[str, Obj], ...] = ()

    def all_errors(self, method: str, path_params: bool) -> tuple[int, ...]:
        """Every error status this operation can answer, for the document."""
        codes = set(self.errors)
        codes.add(400)  # every operation refuses unknown query parameters
        if not self.public:
            codes.update((401, 403))
        if method in BODY_METHODS:
            codes.update((413, 415))
        if path_params:
            codes.add(404)
        return tuple(sorted(codes))


class ApiHandler(JsonHandler):
    """Enforces the handler's ``api`` declarations, then hands over parsed input."""

    api: ClassVar[dict[str, Op]] = {}
    params: dict[str, Any]
    data: dict[str, Any]
    identity: tokens.CachedIdentity | None = None
    login_hint = "send an API token (Authorization: Bearer fm_...) or log in"

    @property
    def op(self) -> Op | None:
        return self.api.get(self.request.method.lower()) if self.request.method else None

    def who(self) -> tokens.CachedIdentity | None:
        """Whoever ``prepare`` authenticated: bearer token, Basic credentials or session cookie."""
        return self.identity

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return None

    def check_xsrf_cookie(self) -> None:
        # Forgery needs the browser's session cookie: without a valid one there is
        # nothing to forge, and the request is refused with 401 in prepare.
        if self.bearer_token() is not None:
            return
        if not self.session_token():
            return
        super().check_xsrf_cookie()

    async def prepare(self) -> None:
        op = self.op
        if op is None:
            raise MethodNotAllowed(f"{self.request.method} is not allowed here; allowed: "
                                   f"{', '.join(sorted(m.upper() for m in self.api))}")
        self._check_size()
        if not op.public:
            await self._authenticate(op)
            actor = self.actor  # 401 without credentials
            if self.request.method not in SAFE_METHODS:
                actor.require_write()
            if op.admin:
                actor.require_admin()
        self.params = (op.query or Query()).parse(self.query_arguments())
        self.data = self._parse_body(op) if self.request.method in BODY_METHODS else {}

    async def _authenticate(self, op: Op) -> None:
        """A bearer token through the token cache, else the session cookie (BaseHandler's way).

        HTTP Basic (username and password) only where the operation allows it: the
        password is checked like a login (Argon2 off the IOLoop, throttled, audited).
        """
        self.identity = None
        header = self.request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            if not op.basic_auth:
                raise AuthenticationRequired("a username and password are accepted only by POST /api/v1/tokens; "
                                             "send Authorization: Bearer TOKEN")
            username, password = _basic_credentials(header[6:])
            user = await accounts.authenticate(self.ctx, username, password, self.request.remote_ip or "")
            self.identity = tokens.CachedIdentity(user.id, user.username, user.is_admin, "write", None)
            return
        token = self.bearer_token()
        if token is None:
            await super().prepare()
            self.identity = super().who()
            return
        self.current_user = None
        self.identity = await tokens.authenticate(self.ctx, token)
        if self.identity is None:
            raise AuthenticationRequired("the API token is unknown, revoked or expired")

    def query_arguments(self) -> dict[str, list[bytes]]:
        return self.request.query_arguments

    def _check_size(self) -> None:
        declared = self.request.headers.get("Content-Length", "")
        too_big = len(self.request.body or b"") > MAX_API_BODY
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_API_BODY:
            too_big = True
        if too_big:
            raise PayloadTooLarge(f"the request body is larger than {MAX_API_BODY} bytes",
                                  details={"max_bytes": MAX_API_BODY})

    def _parse_body(self, op: Op) -> dict[str, Any]:
        raw = self.request.body or b""
        schema = op.body or EMPTY
        if raw:
            content_type = self.request.headers.get("Content-Type", "")
            media_type = content_type.split(";", 1)[0].strip().lower()
            if media_type in op.also_accepts:
                return schema.check(self.decode_body(media_type, raw))
            if media_type != "application/json":
                expected = ", ".join(("application/json", *op.also_accepts))
                raise UnsupportedMediaType(
                    f"send the request body as {expected}, not {content_type or 'without a Content-Type'}",
                    details={"expected": expected})
        return schema.parse(raw)

    def decode_body(self, media_type: str, raw: bytes) -> Any:
        """A body in one of the operation's ``also_accepts`` media types, decoded into what its JSON would be;
        a handler that declares such types says how."""
        raise UnsupportedMediaType(f"{media_type} is declared but not decoded here", details={"expected":
                                                                                            "application/json"})

    def path_id(self, value: str, what: str) -> int:
        """A numeric id from the path; one beyond any real id is simply not found."""
        try:
            number: int = PATH_ID.check(int(value), what)
        except (ValueError, ValidationError):  # ValueError: more digits than int() takes (4,300)
            raise NotFound(f"no {what} with id {value}") from None
        return number

    def created(self, location: str, payload: Any, status: int = 201) -> None:
        self.set_header("Location", location)
        self.write_json(payload, status)

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="fogmachine"')
        if status_code == 429:
            error = self._fm_error(kwargs)
            if error is not None and "retry_after" in error.details:
                self.set_header("Retry-After", str(error.details["retry_after"]))
        if status_code == 405:
            self.set_header("Allow", ", ".join(sorted(m.upper() for m in self.api)))
        super().write_error(status_code, **kwargs)


def _basic_credentials(encoded: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise AuthenticationRequired("the Basic credentials are not base64 of username:password") from None
    username, sep, password = text.partition(":")
    if not sep or not username or "\x00" in text:  # PostgreSQL refuses NUL in any string
        raise AuthenticationRequired("the Basic credentials are not base64 of username:password")
    return username, password
