"""Logging in, logging out and registering."""

from __future__ import annotations

from fogmachine.errors import FogmachineError, TooManyRequests, ValidationError
from fogmachine.services import accounts
from fogmachine.web.pages.common import DashboardHandler, safe_next


class LoginHandler(DashboardHandler):
    def get(self) -> None:
        target = safe_next(self.get_query_argument("next", None))
        if self.current_user is not None:
            self.redirect(target)
            return
        self.render("login.html", username="", next=target, error=None, error_field=None)

    async def post(self) -> None:
        username = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        target = safe_next(self.get_body_argument("next", None))
        try:
            user = await accounts.authenticate(self.ctx, username, password, self.request.remote_ip or "")
        except FogmachineError as exc:
            if isinstance(exc, TooManyRequests):
                self.set_header("Retry-After", str(exc.details.get("retry_after", 60)))
            self.form_error("login.html", exc, username=username, next=target)
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
        self.render("register.html", username="", email="", error=None, error_field=None)

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
            if isinstance(exc, TooManyRequests):
                self.set_header("Retry-After", str(exc.details.get("retry_after", 60)))
            self.form_error("register.html", exc, username=username, email=email)
            return
        await self.start_session(user)
        self.flash("ok", f"Welcome, {user.username}: your account is ready.")
        self.redirect("/", status=303)


default_handlers = [
    (r"/login", LoginHandler),
    (r"/logout", LogoutHandler),
    (r"/register", RegisterHandler),
]
