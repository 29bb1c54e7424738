"""What every dashboard page shares: flash messages, the login gate, the outcome of a form.

Flash messages ride in a signed cookie for exactly one redirect (post, then
redirect, then get), so a reload never repeats an action and the message
cannot be forged by another site. A form a person filled in fails the same
way: a redirect to the page it is on, which shows it again with the message
under the field at fault (``forms``); an action button's failure comes back
as a flash on the page it was pressed on.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import tornado.web

from fogmachine.errors import FogmachineError
from fogmachine.web.base import PageHandler
from fogmachine.web.pages import forms, view

log = logging.getLogger(__name__)
FLASH_COOKIE = "fm_flash"
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
    _failed_form: forms.FailedForm | None = None
    _failed_form_taken = False
    _failed_form_shown = False
    # Where a form shown again in place (not redirected) lives: the page's script puts it in the history.
    form_url = ""

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

    # --- a failed form: post, redirect, get (see fogmachine.web.pages.forms) ---

    async def form_failed(self, form: str, error: FogmachineError, values: Mapping[str, str], back: str, *,
                          page: Callable[[], Awaitable[None]] | None = None, in_place: bool = False) -> None:
        """A form was refused: send the browser back to ``back`` (303), whose page shows the form again with
        the message under its field and what was typed (never a password: ``forms.FailedForm.of``).

        ``page`` draws the form's page in answer to this request instead, with the error's status, when the
        typed text would not fit the cookie (so nothing typed is lost), or always with ``in_place`` (the
        login form, which keeps its 401 and 429). Either way the page's script then puts ``back`` in the
        browser's history in place of the POST, so Back and reload do not send the form again. A form with
        no ``page`` keeps what fits (``forms.MAX_VALUE`` characters a value).
        """
        if error.status >= 500:
            log.warning("%s %s: %s", self.request.method, self.request.path, error.message)
        # Never to a fragment (#users): Chromium's scroll to it, after the page's script ran, takes the focus
        # from the field at fault; the focus scrolls to that field anyway.
        back = back.partition("#")[0] or "/"
        failed = forms.FailedForm.of(form, error, values)
        if not in_place:
            tries = (failed,) if page is not None else (failed, failed.cut(), failed.without_values())
            for attempt in tries:
                signed = self.create_signed_value(forms.FORM_COOKIE, attempt.encode())
                if len(signed) <= forms.MAX_COOKIE:
                    self.set_cookie(forms.FORM_COOKIE, signed, expires_days=None, httponly=True, samesite="Lax",
                                    secure=self.request.protocol == "https")
                    self.redirect(back, status=303)
                    return
        if page is None:
            raise RuntimeError(f"the failed form {form} fits no cookie and has no page to be shown on")
        self.show_failed(failed, error)
        self.form_url = back
        await page()

    def show_failed(self, failed: forms.FailedForm, error: FogmachineError) -> None:
        """Draw ``failed`` on the page that answers this request, with the error's status: a form shown again
        in place (``form_failed``), or a form sent by GET (the audit log's filter), which has no POST to undo."""
        self._failed_form, self._failed_form_taken = failed, True
        self.set_status(error.status if error.status < 500 else 502)

    def take_failed_form(self) -> forms.FailedForm | None:
        """The failed form waiting for this page (read once, and the cookie ended); the layout calls it
        before drawing a page, and a handler that needs the typed values first may call it earlier."""
        if not self._failed_form_taken:
            self._failed_form_taken = True
            raw = self.get_signed_cookie(forms.FORM_COOKIE, max_age_days=forms.MAX_AGE_DAYS)
            if self.get_cookie(forms.FORM_COOKIE) is not None:
                self.clear_cookie(forms.FORM_COOKIE)
            self._failed_form = forms.FailedForm.decode(raw) if raw else None
        return self._failed_form

    def form_view(self, form: str, fields: Iterable[str] = ()) -> forms.FormView:
        """The form ``form`` as this page draws it: as usual, or as it failed (templates: ``form_view``).

        Only a whole page takes the failed form (the layout does, first): a row drawn alone for the live
        updates (``guest_row.html``) must not end the cookie the page it goes into was meant to read."""
        failed = self._failed_form
        if failed is not None and failed.form == form:
            self._failed_form_shown = True
        return forms.FormView(form, fields, failed)

    def failed_values(self, form: str) -> dict[str, str]:
        """What was typed into ``form`` when it failed, for a handler that computes from it (the checkout's
        placement preview); empty when it did not fail."""
        failed = self.take_failed_form()
        return dict(failed.values) if failed is not None and failed.form == form else {}

    def unshown_failure(self) -> str:
        """The failed form's message when this page did not show that form (the guest is on another page
        of the list, or gone from it): said anyway, at the end of the page, rather than lost."""
        if self._failed_form is None or self._failed_form_shown:
            return ""
        return self._failed_form.message

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(view.NAMESPACE)
        namespace["config"] = self.ctx.config
        namespace["form_view"] = self.form_view
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
