"""The profile page: e-mail, SSH keys, description, notifications, password, login sessions, API tokens
(``profile_tokens``) and the colour theme (``fogmachine.web.theme``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.errors import FogmachineError
from fogmachine.services import accounts, sessions
from fogmachine.services.actor import Actor
from fogmachine.web import theme
from fogmachine.web.base import SESSION_COOKIE
from fogmachine.web.pages import profile_tokens
from fogmachine.web.pages.common import DashboardHandler, login_required


def _profile(session: Session, actor: Actor, lifetimes: sessions.Lifetimes) -> dict[str, Any]:
    user = accounts.get_user(session, actor, actor.user_id)  # type: ignore[arg-type]
    return {"email": user.email, "ssh_key": user.ssh_key, "description": user.description,
            "notify_expiry": user.notify_expiry, "notify_ready": user.notify_ready,
            "created_at": user.created_at, "last_login_at": user.last_login_at,
            "sessions": sessions.list_for(session, actor, lifetimes),
            "tokens": profile_tokens.listed(session, actor), "token_form": profile_tokens.token_form()}


def _update(session: Session, actor: Actor, change: accounts.ProfileUpdate) -> None:
    accounts.update_profile(session, actor, actor.user_id, change)  # type: ignore[arg-type]


class ProfilePage(DashboardHandler):
    """The profile page's handlers. A form that fails goes back to the page (``form_failed``), which shows
    it again with the message under the field at fault and what was typed; passwords never come back."""

    async def load(self) -> dict[str, Any]:
        return await self.ctx.db.run(_profile, self.actor, sessions.Lifetimes.of(self.ctx.config))

    def show(self, profile: dict[str, Any], new_token: dict[str, Any] | None = None) -> None:
        self.render("profile.html", profile=profile, new_token=new_token, chosen_theme=theme.chosen(self),
                    theme_labels=theme.LABELS)

    async def refused(self, form: str, error: FogmachineError, typed: dict[str, str], back: str) -> None:
        if error.status in (401, 403, 404):
            raise error

        async def page() -> None:  # what was typed would not fit the cookie (several SSH keys): shown here
            self.show(await self.load())

        await self.form_failed(form, error, typed, back, page=page)


class ProfileHandler(ProfilePage):
    @login_required
    async def get(self) -> None:
        new_token = profile_tokens.take_new(self, self.actor.user_id or 0)
        self.show(await self.load(), new_token=new_token)

    @login_required
    async def post(self) -> None:
        typed = {name: self.get_body_argument(name, "") for name in
                 ("email", "ssh_key", "description", "notify_expiry", "notify_ready")}
        change = accounts.ProfileUpdate(
            email=typed["email"], ssh_key=typed["ssh_key"], description=typed["description"],
            notify_expiry=typed["notify_expiry"] == "yes", notify_ready=typed["notify_ready"] == "yes")
        try:
            await self.ctx.db.run(_update, self.actor, change)
        except FogmachineError as exc:
            await self.refused("profile", exc, typed, "/profile")
            return
        self.done("Profile saved.", "/profile")


class PasswordHandler(ProfilePage):
    @login_required
    async def post(self) -> None:
        try:
            await accounts.change_password(
                self.ctx, self.actor, self.get_body_argument("current_password", ""),
                self.get_body_argument("new_password", ""), self.get_body_argument("confirm_password", ""))
        except FogmachineError as exc:
            await self.refused("password", exc, {}, "/profile")
            return
        self.done("Password changed.", "/profile")


class ThemeHandler(ProfilePage):
    """The colour theme: kept in this browser's ``fm_theme`` cookie (see fogmachine.web.theme)."""

    @login_required
    async def post(self) -> None:
        choice = self.get_body_argument("theme", "")
        try:
            theme.remember(self, choice)
        except FogmachineError as exc:
            await self.refused("theme", exc, {}, "/profile")
            return
        self.done(f"Theme: {theme.LABELS[choice].lower()}.", "/profile#appearance")


class TokenCreateHandler(ProfilePage):
    @login_required
    async def post(self) -> None:
        form = profile_tokens.token_form(self.get_body_argument("name", ""), self.get_body_argument("scope", ""),
                                         self.get_body_argument("expires_in_days", ""))
        try:
            new = profile_tokens.parse_new(form)
            token_id, name, secret = await self.ctx.db.run(profile_tokens.create, self.actor, new)
        except FogmachineError as exc:
            typed = {"name": form["name"], "scope": form["scope"], "expires_in_days": form["days"]}
            await self.refused("token", exc, typed, "/profile")
            return
        profile_tokens.keep_new(self, self.actor.user_id or 0, token_id, name, secret)
        self.done(f"Token {name!r} made: copy it now, it is not shown again.", "/profile#new-token")


class TokenRevokeHandler(ProfilePage):
    @login_required
    async def post(self, token_id: str) -> None:
        number = int(token_id) if len(token_id) <= 12 else 0

        def said(name: str) -> str:
            return f"Token {name!r} is revoked: it no longer works."

        await self.attempt(self.ctx.db.run(profile_tokens.revoke, self.actor, number), said, "/profile#tokens")


class SessionEndHandler(DashboardHandler):
    """"Log out" beside one session of the list; ending this one logs this browser out."""

    @login_required
    async def post(self, session_id: str) -> None:
        number = int(session_id) if len(session_id) <= 12 else 0
        await self.ctx.db.run(sessions.end_one, self.actor, number)
        if number == self.session_id:
            self.clear_cookie(SESSION_COOKIE)
            self.done("You are logged out.", "/login")
            return
        self.done("That session is logged out.", "/profile#sessions")


class SessionEndAllHandler(DashboardHandler):
    """"Log out everywhere": every session of the user, this one included."""

    @login_required
    async def post(self) -> None:
        ended = await self.ctx.db.run(sessions.end_all, self.actor)
        self.clear_cookie(SESSION_COOKIE)
        self.done(f"Logged out everywhere ({ended} session(s)).", "/login")


default_handlers = [
    (r"/profile", ProfileHandler),
    (r"/profile/password", PasswordHandler),
    (r"/profile/theme", ThemeHandler),
    (r"/profile/tokens", TokenCreateHandler),
    (r"/profile/tokens/([0-9]+)/revoke", TokenRevokeHandler),
    (r"/profile/sessions/([0-9]+)/end", SessionEndHandler),
    (r"/profile/sessions/end-all", SessionEndAllHandler),
]
