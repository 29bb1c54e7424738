"""Handler base classes: where a request finds the context and how errors look.

Handlers stay thin: parse, check permission, call a service, render or
serialize. Every ``FogmachineError`` a service raises becomes its HTTP status
here, in one place: a JSON body under ``/api`` and the error page elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any

import tornado.log
import tornado.web
import tornado.websocket

from fogmachine.db.models import User
from fogmachine.errors import AuthenticationRequired, FogmachineError
from fogmachine.logs import redact_uri
from fogmachine.services import sessions, tokens
from fogmachine.services.actor import Actor

if TYPE_CHECKING:
    from fogmachine.context import Context
    from fogmachine.web.api.guestlist import GuestListCache
    from fogmachine.web.live.feed import LiveFeed

log = logging.getLogger(__name__)
SESSION_COOKIE = "fm_session"
# Every answer, whatever its type: never framed (clickjacking), never content-sniffed. Pages and the
# API docs send a full Content-Security-Policy of their own that repeats frame-ancestors.
BASELINE_CSP = "frame-ancestors 'none'"


def set_baseline_headers(handler: tornado.web.RequestHandler) -> None:
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Content-Security-Policy", BASELINE_CSP)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def to_json(payload: Any) -> str:
    """JSON as the API and the live sockets send it: compact, and a datetime or Decimal as its str.

    One encoder, so a prebuilt body (the guest list's cache) is byte for byte what ``write_json`` sends.
    """
    return json.dumps(payload, separators=(",", ":"), default=str)


class InFlight:
    """How many requests are being handled now, so that shutdown lets them finish
    before it stops the adapters and the database they are using."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class StaticHandler(tornado.web.StaticFileHandler):
    """The static files, with the same baseline headers (a script is never sniffed into something else)."""

    def set_default_headers(self) -> None:
        set_baseline_headers(self)


class BaseHandler(tornado.web.RequestHandler):
    """Finds the context and the browser's user from the session cookie (a server-side session).

    Bearer tokens are the API's business (``web.api.base.ApiHandler``, with its
    token cache); pages and callbacks never take them, so there is one way in each.
    """

    current_user: User | None
    session_id: int | None = None
    # What a request without credentials is told with its 401.
    login_hint = "log in or send an API token"

    @property
    def ctx(self) -> Context:
        ctx: Context = self.application.settings["fm_context"]
        return ctx

    @property
    def live(self) -> LiveFeed | None:
        """The process's live feed (``make_app(live=...)``); None in an application built without one."""
        feed: LiveFeed | None = self.application.settings.get("fm_live")
        return feed

    @property
    def guest_lists(self) -> GuestListCache:
        """The process's cache of ``GET /api/v1/guests`` answers (``make_app(guest_lists=...)``)."""
        cache: GuestListCache | None = self.application.settings.get("fm_guest_lists")
        if cache is None:
            raise RuntimeError("this application was built without a guest-list cache")
        return cache

    def set_default_headers(self) -> None:
        set_baseline_headers(self)

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        """Every cookie (session, ``_xsrf``, flash) is Secure when the request came over https.

        ``request.protocol`` is the truth here: the socket's own, or ``X-Forwarded-Proto`` from one of
        ``trusted_proxies`` (fogmachine.web.proxies), never what any other client claims.
        """
        if self.request.protocol == "https":
            kwargs["secure"] = True
        super().set_cookie(name, value, *args, **kwargs)

    async def _execute(self, transforms: Any, *args: bytes, **kwargs: bytes) -> None:
        # Tornado's one entry point per request: counted here so shutdown can wait for it.
        # A WebSocket stays in it for its whole life; the live feed closes those itself.
        inflight: InFlight | None = self.application.settings.get("fm_inflight")
        if inflight is None or isinstance(self, tornado.websocket.WebSocketHandler):
            return await super()._execute(transforms, *args, **kwargs)
        inflight.enter()
        try:
            return await super()._execute(transforms, *args, **kwargs)
        finally:
            inflight.leave()

    def session_token(self) -> str | None:
        """The session id the browser sent, if the cookie's signature holds (a forged or
        truncated value costs no database read)."""
        cookie = self.get_signed_cookie(SESSION_COOKIE, max_age_days=self.ctx.config.session_max_days)
        if not cookie:
            return None
        try:
            return cookie.decode("ascii")
        except UnicodeDecodeError:
            return None

    async def prepare(self) -> None:
        self.current_user = None
        self.session_id = None
        token = self.session_token()
        if token:
            found = await self.ctx.db.run(sessions.lookup, token, sessions.Lifetimes.of(self.ctx.config))
            if found is not None:
                self.current_user, self.session_id = found

    async def start_session(self, user: User) -> None:
        """Log the browser in: a new server-side session, its id in the cookie."""
        _, token = await self.ctx.db.run(sessions.start, user.id, self.request.remote_ip or "",
                                         self.request.headers.get("User-Agent", ""))
        secure = self.request.protocol == "https"
        self.set_signed_cookie(SESSION_COOKIE, token, expires_days=self.ctx.config.session_max_days, httponly=True,
                               samesite="Lax", secure=secure)
        self.current_user = user

    async def end_session(self) -> None:
        """Log the browser out: its session ends server-side, so a copied cookie is worthless too."""
        if self.current_user is not None and self.session_id is not None:
            await self.ctx.db.run(sessions.end_current, self.actor)
        self.clear_cookie(SESSION_COOKIE)

    def who(self) -> tokens.CachedIdentity | None:
        """Who sent this request: the session cookie's user. The API adds bearer tokens and Basic."""
        user = self.current_user
        return None if user is None else tokens.CachedIdentity(user.id, user.username, user.is_admin, "write", None)

    @property
    def actor(self) -> Actor:
        """Whoever ``who`` found, as services see them; raises 401 (``login_hint``) when nobody.

        One property for pages and API, so both doors hand services the same Actor.
        """
        who = self.who()
        if who is None:
            raise AuthenticationRequired(self.login_hint)
        return Actor(user_id=who.user_id, username=who.username, is_admin=who.is_admin,
                     remote_addr=self.request.remote_ip or "", scope=who.scope, session_id=self.session_id)

    def _request_summary(self) -> str:
        # Tornado's own puts the full URI in warnings and tracebacks: a phone-home's token with it.
        return f"{self.request.method} {redact_uri(self.request.uri or '')} ({self.request.remote_ip})"

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        """Tornado's, minus ``repr(request)``: that printed the raw URI, query string and all."""
        if isinstance(value, tornado.web.HTTPError):
            if value.log_message:
                tornado.log.gen_log.warning("%d %s: " + value.log_message, value.status_code,
                                            self._request_summary(), *value.args)
            return
        tornado.log.app_log.error("Uncaught exception %s", self._request_summary(),
                                  exc_info=(typ, value, tb))  # type: ignore[arg-type]

    def _fm_error(self, kwargs: dict[str, Any]) -> FogmachineError | None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], FogmachineError):
            return exc_info[1]
        return None

    def _handle_request_exception(self, e: BaseException) -> None:
        # A FogmachineError is an answer, not a crash: no traceback in the log.
        if isinstance(e, FogmachineError) and e.status < 500:
            if self._finished:
                return
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        if isinstance(e, FogmachineError):
            log.warning("%s %s: %s", self.request.method, self.request.path, e.message)
            if not self._finished:
                self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


# Keeps a quiet socket open through proxies that drop idle connections (nginx: proxy_read_timeout 60 s),
# and notices dead peers.
PING_INTERVAL_S = 30.0


class SessionSocket(tornado.websocket.WebSocketHandler, BaseHandler):
    """A WebSocket for a logged-in browser (the live feed, the consoles): pinged every ``PING_INTERVAL_S``,
    and refused with a plain 401 before the upgrade when the session cookie names nobody."""

    @property
    def ping_interval(self) -> float | None:
        return PING_INTERVAL_S

    def refused_without_session(self) -> bool:
        """Answer 401 and say True when nobody is logged in (call first in ``get``)."""
        if self.current_user is not None:
            return False
        self.set_status(401)
        self.finish("log in first")
        return True


class JsonHandler(BaseHandler):
    """Answers and errors in JSON, in the one shape the API documents."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(to_json(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = self._fm_error(kwargs)
        if error is not None:
            body = error_body(error.code, error.message, error.details)
        else:
            exc = kwargs.get("exc_info", (None, None))[1]
            reason = self._reason
            if isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
                reason = exc.log_message % exc.args if exc.args else exc.log_message
            code = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 409: "conflict", 413: "too_large",
                    415: "unsupported_media_type", 429: "too_many_requests"}.get(status_code, "error")
            if status_code >= 500:
                code, reason = "internal_error", "internal error; the server log has the details"
            body = error_body(code, reason)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body))


class PageHandler(BaseHandler):
    """Renders templates in the one base layout; errors render the error page."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = self._fm_error(kwargs)
        message = error.message if error is not None else self._reason
        if status_code >= 500 and error is None:
            message = "Something went wrong on our side; the server log has the details."
        template = "404.html" if status_code == 404 else "error.html"
        self.render(template, status_code=status_code, message=message)


class NotFoundHandler(BaseHandler):
    """The default handler: a JSON 404 under /api and /guest (scripts, guests), the 404 page elsewhere."""

    async def prepare(self) -> None:
        if self.request.path.startswith(("/api/", "/guest/")):  # scripts and guests, not browsers
            self.set_status(404)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(error_body("not_found", f"no such endpoint: {self.request.path}")))
        else:
            try:
                await super().prepare()  # the page's layout shows who is logged in
            except FogmachineError:
                self.current_user = None
            self.set_status(404)
            self.render("404.html", status_code=404, message=f"No page at {self.request.path}.")

    def check_xsrf_cookie(self) -> None:
        pass
