"""What every dashboard page shares: flash messages, the login gate, the outcome of a form.

Flash messages ride in a signed cookie for exactly one redirect (post, then
redirect, then get), so a reload never repeats an action and the message
cannot be forged by another site. Pages answer a client's mistake on a form
with the form again and the message beside it; an action button's failure
comes back as a flash on the page it was pressed on.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import tornado.web

from fogmachine.errors import FogmachineError
from fogmachine.web.base import PageHandler
from fogmachine.web.pages import view

log = logging.getLogger(__name__)
FLASH_COOKIE = "fm_flash"
# A form that failed, for the page the browser is sent back to (see ``form_failed``).
FORM_COOKIE = "fm_form"
MAX_FORM_VALUE = 200
MAX_FLASHES = 5
XSRF_MESSAGE = ("This form expired or was sent from another site, so it was refused. "
                "Reload the page and try again.")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a local path may be a redirect target after logging in (no open redirect).

    Browsers drop tabs and newlines inside URLs, so ``/<TAB>/evil.example.org``
    would become ``//evil.example.org``: any whitespace or control character is refused too.
    """
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target)):
        return default
    return target


def login_required(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Send someone who is not logged in to the login page, back here afterwards.

    Unlike ``tornado.web.authenticated`` a POST is redirected too (a session that
    ended while a page was open), with a flash saying why.
    """

    @functools.wraps(method)
    async def wrapper(self: DashboardHandler, *args: Any, **kwargs: Any) -> None:
        if self.current_user is None:
            if self.request.method in ("GET", "HEAD"):
                target = self.request.uri or "/"
            else:
                referer = urlsplit(self.request.headers.get("Referer", ""))
                same_site = referer.netloc == self.request.host
                target = referer.path + (f"?{referer.query}" if referer.query else "") if same_site else "/"
                self.flash("error", "Your session has ended; log in again.")
            self.redirect("/login?" + urlencode({"next": safe_next(target)}), status=303)
            return
        await method(self, *args, **kwargs)

    return wrapper


class DashboardHandler(PageHandler):
    """A page in the dashboard's layout."""

    _flashes_out: list[dict[str, str]] | None = None
    _failed_form: dict[str, Any] | None = None
    _failed_form_shown = False

    def set_default_headers(self) -> None:
        # Pages show people's guests: never cache them, never frame them.
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        # Only this server's own scripts run: an injected <script> would not, even if escaping ever failed.
        # Inline style attributes are allowed for the capacity bars' widths.
        self.set_header("Content-Security-Policy", CSP)

    # --- flash messages ---

    def flash(self, kind: str, text: str, *, guest: int | None = None) -> None:
        """Queue a message for the next page this browser sees (kind: ok or error). A message about one
        guest names it (``guest``), so the page's live updates can take it down once it is out of date."""
        pending = self._flashes_out if self._flashes_out is not None else []
        message = {"kind": kind, "text": text[:500]}
        if guest is not None:
            message["guest"] = str(guest)
        pending = [*pending, message][-MAX_FLASHES:]
        self._flashes_out = pending
        self.set_signed_cookie(FLASH_COOKIE, json.dumps(pending), expires_days=None, httponly=True,
                               samesite="Lax", secure=self.request.protocol == "https")

    def take_flashes(self) -> list[dict[str, str]]:
        """The messages waiting for this page; they are shown once."""
        raw = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1)
        found: list[dict[str, str]] = []
        if raw:
            try:
                loaded = json.loads(raw)
                found = [f for f in loaded if isinstance(f, dict) and {"kind", "text"} <= f.keys()]
            except ValueError:
                found = []
            self.clear_cookie(FLASH_COOKIE)
        if self._flashes_out:
            found += self._flashes_out
            self._flashes_out = None
            self.clear_cookie(FLASH_COOKIE)
        return found

    # --- a failed form, after its redirect ---

    def form_failed(self, form: str, error: FogmachineError, values: dict[str, str], back: str) -> None:
        """A form's field was refused: redirect back (303) and show it there again, under that field.

        Post, redirect, get for a failure too: the page that shows the error is an ordinary GET, so
        Back and reload after the correction never ask to send the form again. What was typed and
        what is wrong ride in a signed cookie for that one page, like a flash message.
        """
        field = error.details.get("field") if error.details else None
        state = {"form": form, "field": field or "", "message": error.message[:500],
                 "values": {k: v[:MAX_FORM_VALUE] for k, v in values.items()}}
        self.set_signed_cookie(FORM_COOKIE, json.dumps(state), expires_days=None, httponly=True,
                               samesite="Lax", secure=self.request.protocol == "https")
        self.redirect(back, status=303)

    def take_failed_form(self) -> None:
        """Read (and end) the failed form waiting for this page; the layout calls it once per page."""
        raw = self.get_signed_cookie(FORM_COOKIE, max_age_days=1)
        if raw is None:
            return
        self.clear_cookie(FORM_COOKIE)
        try:
            state = json.loads(raw)
        except ValueError:
            return
        if isinstance(state, dict) and isinstance(state.get("form"), str) and isinstance(state.get("values"), dict):
            self._failed_form = state

    def failed_form(self, form: str) -> dict[str, Any] | None:
        """The failed form ``form`` (its field, message and typed values) if this page shows it again."""
        state = self._failed_form
        if state is None or state["form"] != form:
            return None
        self._failed_form_shown = True
        return state

    def unshown_failure(self) -> str:
        """The failed form's message when this page did not show that form (the guest is on another page
        of the list, or gone from it): said anyway, at the end of the page, rather than lost."""
        if self._failed_form is None or self._failed_form_shown:
            return ""
        return str(self._failed_form.get("message", ""))

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(view.NAMESPACE)
        namespace["config"] = self.ctx.config
        namespace["failed_form"] = self.failed_form
        # host_card.html's heading level: under a page's h2 (the overview's "Capacity"); hosts.html sets 2.
        namespace["card_level"] = 3
        # host_card.html links to the hosts page's list of that host's guests where this is set (hosts.html).
        namespace["card_guests_link"] = False
        return namespace

    # --- outcomes ---

    def done(self, message: str, back: str, *, guest: int | None = None) -> None:
        """An action succeeded: say so on the page it came from."""
        self.flash("ok", message, guest=guest)
        self.redirect(back, status=303)

    def failed(self, error: FogmachineError, back: str) -> None:
        self.flash("error", error.message)
        self.redirect(back, status=303)

    async def attempt(self, action: Awaitable[Any], success: str | Callable[[Any], str], back: str) -> None:
        """Run an action from a button; its failure becomes a flash on ``back``.

        A request the actor may not make at all (401, 403, 404) is not a flash:
        it answers with its status and the error page, so nothing suggests that
        the object exists or that trying again could help.
        """
        try:
            result = await action
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            if exc.status >= 500:
                log.warning("%s %s: %s", self.request.method, self.request.path, exc.message)
            self.failed(exc, back)
            return
        self.done(success(result) if callable(success) else success, back)

    def back(self, default: str) -> str:
        """Where to return after an action: the form's ``back`` field if local, else ``default``."""
        return safe_next(self.get_body_argument("back", None), default)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if (status_code == 403 and isinstance(exc, tornado.web.HTTPError) and exc.log_message
                and "xsrf" in exc.log_message.lower()):
            self.render("error.html", status_code=403, message=XSRF_MESSAGE)
            return
        super().write_error(status_code, **kwargs)

    def form_error(self, template: str, error: FogmachineError, **values: Any) -> None:
        """Show a form again with what was typed and what is wrong with it."""
        self.set_status(error.status if error.status < 500 else 502)
        field = error.details.get("field") if error.details else None
        self.render(template, error=error.message, error_field=field, **values)
