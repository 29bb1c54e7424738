"""Logging in, logging out and registering.

Registration fails like every other form: a redirect back to ``/register``,
which shows the message under the field at fault with what was typed, never the
passwords (``forms``). A failed login is answered in place instead, with its own
status: 401 for a wrong name or password, 429 with ``Retry-After`` when
throttled. Those statuses are what a reverse proxy's access log and tools that
read it (fail2ban, alerting on a burst of 401s) can tell a failed login from a
successful one by; a redirect would make every login a 303. The login form has
nothing worth carrying but the name, and its page puts ``/login`` in the
browser's history in place of the POST (``forms``), so Back still never asks to
send it again.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fogmachine.errors import FogmachineError, TooManyRequests, ValidationError
from fogmachine.services import accounts
from fogmachine.web.pages.common import DashboardHandler, safe_next


class LoginHandler(DashboardHandler):
    def get(self) -> None:
        target = safe_next(self.get_query_argument("next", None))
        if self.current_user is not None:
            self.redirect(target)
            return
        self._page(target)

    def _page(self, target: str) -> None:
        self.render("login.html", next=target)

    async def post(self) -> None:
        username = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        target = safe_next(self.get_body_argument("next", None))
        try:
            user = await accounts.authenticate(self.ctx, username, password, self.request.remote_ip or "")
        except FogmachineError as exc:
            if isinstance(exc, TooManyRequests):
                self.set_header("Retry-After", str(exc.details.get("retry_after", 60)))

            async def page() -> None:
                self._page(target)

            back = "/login" + ("?" + urlencode({"next": target}) if target != "/" else "")
            await self.form_failed("login", exc, {"username": username}, back, page=page, in_place=True)
            return
        await self.start_session(user)
        self.flash("ok", f"Welcome, {user.username}.")
        self.redirect(target, status=303)


class LogoutHandler(DashboardHandler):
    async def post(self) -> None:
        await self.end_session()
        self.flash("ok", "You are logged out.")
        self.redirect("/login", status=303)


class RegisterHandler(DashboardHandler):
    def get(self) -> None:
        if self.current_user is not None:
            self.redirect("/")
            return
        self._page()

    def _page(self) -> None:
        self.render("register.html")

    async def post(self) -> None:
        username = self.get_body_argument("username", "").strip().lower()
        email = self.get_body_argument("email", "").strip()
        password = self.get_body_argument("password", "")
        confirm = self.get_body_argument("confirm_password", "")
        try:
            if password != confirm:
                raise ValidationError("the two passwords differ", field="confirm_password")
            user = await accounts.register(self.ctx, None, accounts.NewUser(username, password, email),
                                           self.request.remote_ip or "")
        except FogmachineError as exc:
            if exc.status in (401, 403):  # registration closed: the error page says so, with its 403
                raise

            async def page() -> None:
                self._page()

            # too many registrations from this address (429) has no field: the top of the form says it
            await self.form_failed("register", exc, {"username": username, "email": email}, "/register",
                                   page=page)
            return
        await self.start_session(user)
        self.flash("ok", f"Welcome, {user.username}: your account is ready.")
        self.redirect("/", status=303)


default_handlers = [
    (r"/login", LoginHandler),
    (r"/logout", LogoutHandler),
    (r"/register", RegisterHandler),
]
