"""The administrators' page: every host; every guest with its owner and users, each list searched,
filtered, sorted and paged as its URL says (``guestlist``, ``userlist``); maintenance.

Every handler here calls a service that refuses non-administrators itself
(``Actor.require_admin``); the page never relies on hiding a button.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import Host, User
from fogmachine.errors import FogmachineError
from fogmachine.services import accounts, useradmin
from fogmachine.services import hosts as host_service
from fogmachine.services.actor import Actor
from fogmachine.services.guests import guest_to_dict, list_guests
from fogmachine.web.pages import guestlist, userlist
from fogmachine.web.pages.common import DashboardHandler, login_required
from fogmachine.web.pages.listview import ListView

NEW_USER_FORM = "new-user"
USER_OPS = {
    "make-admin": (useradmin.set_admin, True, "{} is now an administrator."),
    "revoke-admin": (useradmin.set_admin, False, "{} is no longer an administrator."),
    "disable": (useradmin.set_active, False, "{} is disabled: they can no longer log in."),
    "enable": (useradmin.set_active, True, "{} is enabled again."),
}
HOST_OPS = {
    "enable": (True, "Host {} takes new guests again."),
    "disable": (False, "Host {} is disabled for maintenance: its guests keep running, no new ones go there."),
}


def _admin_page(session: Session, config: Config, actor: Actor, guestview: ListView | None = None,
                userview: ListView | None = None) -> dict[str, Any]:
    """Everything the page shows; the guest list's ``guests=retired`` lists the retired guests (history)
    instead of the live ones."""
    userview = userview or userlist.parse({})
    users, total_users = useradmin.find_users(session, actor, userlist.user_filter(userview))  # admins only
    guestview = guestview or guestlist.parse("admin", actor, {})
    hosts = host_service.list_hosts(session)
    guests, total = list_guests(session, actor, guestlist.guest_filter(guestview, unmanaged=True))
    return {
        "users": users,
        "total_users": total_users,
        "userview": userview,
        "user_paging": userview.paging(total_users),
        "user_heads": userlist.HEADS,
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "guests": [guest_to_dict(g) for g in guests],
        "total_guests": total,
        "retired": guestview.value("guests") == "retired",
        **guestlist.template_values("admin", guestview, total, [h.name for h in hosts]),
    }


class AdminHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        guestview = guestlist.parse("admin", self.actor, self.request.query_arguments)
        userview = userlist.parse(self.request.query_arguments)
        data = await self.ctx.db.run(_admin_page, self.ctx.config, self.actor, guestview, userview)
        if guestview.errors or userview.errors:  # the page as asked, with what was refused said where it was
            self.set_status(400)
        self.render("admin.html", **data)


class AdminCreateUserHandler(DashboardHandler):
    """"Create a user": a refusal goes back to the users' section of the page, under the field at fault with
    what was typed (never the password, ``forms``)."""

    @login_required
    async def post(self) -> None:
        new = accounts.NewUser(
            username=self.get_body_argument("username", "").strip().lower(),
            password=self.get_body_argument("password", ""),
            email=self.get_body_argument("email", "").strip(),
            is_admin=self.get_body_argument("is_admin", "") == "yes",
        )
        try:
            user = await accounts.register(self.ctx, self.actor, new, self.request.remote_ip or "")
        except FogmachineError as exc:
            if exc.status in (401, 403, 404):
                raise

            async def page() -> None:
                self.render("admin.html", **await self.ctx.db.run(_admin_page, self.ctx.config, self.actor))

            typed = {"username": new.username, "email": new.email, "is_admin": "yes" if new.is_admin else ""}
            await self.form_failed(NEW_USER_FORM, exc, typed, "/admin", page=page)
            return
        role = "administrator" if user.is_admin else "user"
        self.done(f"Created {role} {user.username}.", "/admin#users")


class AdminUserHandler(DashboardHandler):
    @login_required
    async def post(self, user_id: str, op: str) -> None:
        fn, value, message = USER_OPS[op]

        def said(user: User) -> str:
            return message.format(user.username)

        await self.attempt(self.ctx.db.run(fn, self.actor, int(user_id), value), said, "/admin#users")


class AdminHostHandler(DashboardHandler):
    @login_required
    async def post(self, host_name: str, op: str) -> None:
        enabled, message = HOST_OPS[op]

        def said(host: Host) -> str:
            return message.format(host.name)

        await self.attempt(self.ctx.db.run(host_service.set_enabled, self.actor, host_name, enabled), said,
                           self.back("/admin#hosts"))


default_handlers = [
    (r"/admin", AdminHandler),
    (r"/admin/users", AdminCreateUserHandler),
    (r"/admin/users/(\d{1,18})/(" + "|".join(USER_OPS) + ")", AdminUserHandler),
    (r"/admin/hosts/([A-Za-z0-9][A-Za-z0-9._-]{0,63})/(" + "|".join(HOST_OPS) + ")", AdminHostHandler),
]
