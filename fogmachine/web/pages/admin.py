"""The administrators' page: every host and guest with its owner, users (searched, filtered, sorted and
paged as ``userlist`` reads the URL), maintenance.

Every handler here calls a service that refuses non-administrators itself
(``Actor.require_admin``); the page never relies on hiding a button.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import Host, Step, User
from fogmachine.errors import FogmachineError
from fogmachine.services import accounts, useradmin
from fogmachine.services import hosts as host_service
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter, guest_to_dict, list_guests
from fogmachine.web.pages import userlist
from fogmachine.web.pages.common import DashboardHandler, login_required

PAGE_SIZE = 200
NEW_USER_FORM = "new-user"
MAX_PAGE = 100_000
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


def _admin_page(session: Session, config: Config, actor: Actor, page: int, retired: bool = False,
                userview: userlist.UserListView | None = None) -> dict[str, Any]:
    """Everything the page shows; ``retired`` lists the retired guests (history) instead of the live ones."""
    userview = userview or userlist.parse({})
    users, total_users = useradmin.find_users(session, actor, userview.filter)  # refuses non-administrators
    hosts = host_service.list_hosts(session)
    flt = GuestFilter(step=Step.RETIRED if retired else None, include_unmanaged=not retired,
                      offset=page * PAGE_SIZE, limit=PAGE_SIZE)
    guests, total = list_guests(session, actor, flt)
    return {
        "users": users,
        "total_users": total_users,
        "userview": userview,
        "user_pages": max(1, -(-total_users // userlist.PAGE_SIZE)),
        "hosts": host_service.host_dicts(session, hosts, config.cpu_overcommit),
        "guests": [guest_to_dict(g) for g in guests],
        "total_guests": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "retired": retired,
    }


class AdminHandler(DashboardHandler):
    @login_required
    async def get(self) -> None:
        try:
            page = max(0, int(self.get_query_argument("page", "1")) - 1)
        except ValueError:
            page = 0
        page = min(page, MAX_PAGE)  # a huge page number would overflow the database's integers (a 500)
        retired = self.get_query_argument("guests", "") == "retired"
        userview = userlist.parse(self.request.query_arguments)
        data = await self.ctx.db.run(_admin_page, self.ctx.config, self.actor, page, retired, userview)
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
                self.render("admin.html", **await self.ctx.db.run(_admin_page, self.ctx.config, self.actor, 0))

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
