"""The profile page: e-mail, SSH keys, description, notifications, password, login sessions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.errors import FogmachineError
from fogmachine.services import accounts, sessions
from fogmachine.services.actor import Actor
from fogmachine.web.base import SESSION_COOKIE
from fogmachine.web.pages.common import DashboardHandler, login_required


def _profile(session: Session, actor: Actor, lifetimes: sessions.Lifetimes) -> dict[str, Any]:
    user = accounts.get_user(session, actor, actor.user_id)  # type: ignore[arg-type]
    return {"email": user.email, "ssh_key": user.ssh_key, "description": user.description,
            "notify_expiry": user.notify_expiry, "notify_ready": user.notify_ready,
            "created_at": user.created_at, "last_login_at": user.last_login_at,
            "sessions": sessions.list_for(session, actor, lifetimes)}


def _update(session: Session, actor: Actor, change: accounts.ProfileUpdate) -> None:
    accounts.update_profile(session, actor, actor.user_id, change)  # type: ignore[arg-type]


class ProfileHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        profile = await self.ctx.db.run(_profile, self.actor, sessions.Lifetimes.of(self.ctx.config))
        self.render("profile.html", profile=profile, error=None, error_field=None)

    @login_required
    async def post(self) -> None:
        change = accounts.ProfileUpdate(
            email=self.get_body_argument("email", ""),
            ssh_key=self.get_body_argument("ssh_key", ""),
            description=self.get_body_argument("description", ""),
            notify_expiry=self.get_body_argument("notify_expiry", "") == "yes",
            notify_ready=self.get_body_argument("notify_ready", "") == "yes",
        )
        try:
            await self.ctx.db.run(_update, self.actor, change)
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            saved = await self.ctx.db.run(_profile, self.actor, sessions.Lifetimes.of(self.ctx.config))
            typed = {**saved, "email": change.email, "ssh_key": change.ssh_key, "description": change.description,
                     "notify_expiry": change.notify_expiry, "notify_ready": change.notify_ready}
            self.form_error("profile.html", exc, profile=typed)
            return
        self.done("Profile saved.", "/profile")


class PasswordHandler(DashboardHandler):
    @login_required
    async def post(self) -> None:
        try:
            await accounts.change_password(
                self.ctx, self.actor, self.get_body_argument("current_password", ""),
                self.get_body_argument("new_password", ""), self.get_body_argument("confirm_password", ""))
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise
            profile = await self.ctx.db.run(_profile, self.actor, sessions.Lifetimes.of(self.ctx.config))
            self.form_error("profile.html", exc, profile=profile)
            return
        self.done("Password changed.", "/profile")


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
    (r"/profile/sessions/([0-9]+)/end", SessionEndHandler),
    (r"/profile/sessions/end-all", SessionEndAllHandler),
]
