"""Users: administrators list, create, promote and disable them; everyone reads and edits themselves.

All rules (who may see whom, no revoking one's own administrator rights, the
password policy, hashing off the IOLoop) live in ``services.accounts``; the
dashboard's pages call the same functions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.db.models import User
from fogmachine.services import accounts, useradmin
from fogmachine.services.actor import Actor
from fogmachine.services.users import MAX_EMAIL
from fogmachine.timestamps import iso_utc
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query, page_of, page_params

TAG = "users"
# No pattern here: the service normalizes first (NFKC + casefold, so "Alice" is alice and a
# look-alike of a taken name answers 409 saying which), then full-matches [a-z][a-z0-9._-]{1,31}.
USERNAME = Field("username", "string", "2 to 32 characters once normalized (NFKC, lower case): letters a-z, "
                 "digits, '.', '_' or '-', starting with a letter", min_length=1, max_length=64, example="alice")

_COMMON = (
    Field("id", "integer", minimum=1),
    Field("username", "string"),
    Field("email", "string"),
    Field("is_admin", "boolean"),
    Field("is_active", "boolean", "false: the account is disabled; its tokens and sessions do not work"),
    Field("created_at", "datetime"),
    Field("last_login_at", "datetime", nullable=True),
)
USER = Obj("User", (
    *_COMMON,
    Field("ssh_key", "string", "OpenSSH public keys, one a line"),
    Field("description", "string"),
    Field("notify_expiry", "boolean", "e-mail before a reservation expires"),
    Field("notify_ready", "boolean", "e-mail when a guest is ready"),
), closed=False)
USER_SUMMARY = Obj("UserSummary", (*_COMMON, Field("live_guests", "integer", minimum=0)), closed=False)
USER_LIST = page_of("UserList", "users", USER_SUMMARY)

USER_CREATE = Obj("UserCreate", (
    USERNAME,
    Field("password", "string", "at least 8 characters, hard to guess (zxcvbn score), not the username or e-mail",
          min_length=1, max_length=1024),
    Field("email", "string", required=False, max_length=MAX_EMAIL, default=""),
    Field("is_admin", "boolean", required=False, default=False),
))
USER_ADMIN_UPDATE = Obj("UserAdminUpdate", (
    Field("is_admin", "boolean", "grant or revoke administrator rights (never one's own)", required=False),
    Field("is_active", "boolean", "false disables the account (never one's own)", required=False),
), description="Send one or both fields; a field left out stays as it is.")
PROFILE_UPDATE = Obj("ProfileUpdate", (
    Field("email", "string", required=False, max_length=MAX_EMAIL),
    Field("ssh_key", "string", "OpenSSH public keys, one a line", required=False,
          max_length=accounts.MAX_SSH_KEYS_CHARS),
    Field("description", "string", required=False, max_length=accounts.MAX_DESCRIPTION_CHARS),
    Field("notify_expiry", "boolean", required=False),
    Field("notify_ready", "boolean", required=False),
), description="Send the fields to change; a field left out stays as it is.")
PASSWORD_CHANGE = Obj("PasswordChange", (
    Field("current_password", "string", max_length=1024),
    Field("new_password", "string", "the password policy, as for a new user", max_length=1024),
))


def user_to_dict(user: User) -> dict[str, Any]:
    """A user as they or an administrator see them (never the password hash)."""
    return {
        "id": user.id, "username": user.username, "email": user.email, "is_admin": user.is_admin,
        "is_active": user.is_active, "created_at": iso_utc(user.created_at),
        "last_login_at": iso_utc(user.last_login_at),
        "ssh_key": user.ssh_key, "description": user.description, "notify_expiry": user.notify_expiry,
        "notify_ready": user.notify_ready,
    }


def summary_to_dict(user: useradmin.UserSummary) -> dict[str, Any]:
    return {
        "id": user.id, "username": user.username, "email": user.email, "is_admin": user.is_admin,
        "is_active": user.is_active, "created_at": iso_utc(user.created_at),
        "last_login_at": iso_utc(user.last_login_at),
        "live_guests": user.live_guests,
    }


def _list(session: Session, actor: Actor) -> list[dict[str, Any]]:
    return [summary_to_dict(u) for u in useradmin.list_users(session, actor)]


def _get(session: Session, actor: Actor, user_id: int) -> dict[str, Any]:
    return user_to_dict(accounts.get_user(session, actor, user_id))


def _admin_update(session: Session, actor: Actor, user_id: int, change: dict[str, Any]) -> dict[str, Any]:
    user = accounts.get_user(session, actor, user_id)
    if change["is_admin"] is not None:
        user = useradmin.set_admin(session, actor, user_id, change["is_admin"])
    if change["is_active"] is not None:
        user = useradmin.set_active(session, actor, user_id, change["is_active"])
    return user_to_dict(user)


def _update_profile(session: Session, actor: Actor, change: accounts.ProfileUpdate) -> dict[str, Any]:
    return user_to_dict(accounts.update_profile(session, actor, actor.user_id, change))  # type: ignore[arg-type]


class UsersHandler(ApiHandler):
    api = {
        "get": Op("List users", TAG, "Every account with its number of live guests, by username.",
                  query=Query(page_params()), response=USER_LIST, admin=True),
        "post": Op("Create a user", TAG, "Administrators may create administrators.", body=USER_CREATE,
                   status=201, response=USER, admin=True, location=True, errors=(409,)),
    }

    async def get(self) -> None:
        users = await self.ctx.db.run(_list, self.actor)
        offset, limit = self.params["offset"], self.params["limit"]
        self.write_json({"users": users[offset:offset + limit], "total": len(users), "offset": offset,
                         "limit": limit})

    async def post(self) -> None:
        new = accounts.NewUser(self.data["username"], self.data["password"], self.data["email"],
                               self.data["is_admin"])
        user = await accounts.register(self.ctx, self.actor, new, self.request.remote_ip or "")
        self.created(f"/api/v1/users/{user.id}", user_to_dict(user))


class UserHandler(ApiHandler):
    api = {
        "get": Op("Show a user", TAG, "Your own account, or anyone's for an administrator.", response=USER),
        "patch": Op("Grant or revoke administrator rights; disable or enable an account", TAG,
                    body=USER_ADMIN_UPDATE, response=USER, admin=True),
    }

    async def get(self, user_id: str) -> None:
        self.write_json(await self.ctx.db.run(_get, self.actor, self.path_id(user_id, "user")))

    async def patch(self, user_id: str) -> None:
        self.write_json(await self.ctx.db.run(_admin_update, self.actor, self.path_id(user_id, "user"), self.data))


class MeHandler(ApiHandler):
    api = {
        "get": Op("Show your own account", TAG, response=USER),
        "patch": Op("Edit your profile", TAG, body=PROFILE_UPDATE, response=USER),
    }

    async def get(self) -> None:
        self.write_json(await self.ctx.db.run(_get, self.actor, self.actor.user_id))

    async def patch(self) -> None:
        change = accounts.ProfileUpdate(**self.data)
        self.write_json(await self.ctx.db.run(_update_profile, self.actor, change))


class PasswordHandler(ApiHandler):
    api = {"post": Op("Change your password", TAG, "The current password is needed, whoever asks; 5 wrong ones "
                      "from one address within 15 minutes answer 429 there. Your other login sessions end.",
                      body=PASSWORD_CHANGE, status=204, errors=(429,))}

    async def post(self) -> None:
        await accounts.change_password(self.ctx, self.actor, self.data["current_password"],
                                       self.data["new_password"])
        self.no_content()


default_handlers = [
    (r"/api/v1/users", UsersHandler),
    (r"/api/v1/users/me", MeHandler),
    (r"/api/v1/users/me/password", PasswordHandler),
    (r"/api/v1/users/(?P<user_id>[0-9]+)", UserHandler),
]
