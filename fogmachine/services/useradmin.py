"""The administrators' user functions: the list of users, granting and revoking administrator rights,
disabling and re-enabling accounts.

Apart from ``accounts`` (what every user does with their own account) because
every function here first requires an administrator, and one rule binds them:
nobody turns their own flag off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, Step, User
from fogmachine.errors import NotFound, PermissionDenied
from fogmachine.services import audit, sessions
from fogmachine.services.actor import Actor


@dataclass(frozen=True)
class UserSummary:
    id: int
    username: str
    email: str
    is_admin: bool
    is_active: bool
    created_at: Any
    last_login_at: Any
    live_guests: int


def list_users(session: Session, actor: Actor) -> list[UserSummary]:
    actor.require_admin()
    counts = dict(session.execute(
        select(Guest.owner_id, func.count()).where(Guest.step != Step.RETIRED, Guest.managed.is_(True))
        .group_by(Guest.owner_id)).all())
    users = session.scalars(select(User).order_by(User.username))
    return [UserSummary(u.id, u.username, u.email, u.is_admin, u.is_active, u.created_at, u.last_login_at,
                        counts.get(u.id, 0)) for u in users]


def _switch(session: Session, actor: Actor, user_id: int, flag: Literal["is_admin", "is_active"], on: bool,
            refusal: str) -> User:
    """Turn one of a user's flags on or off, as an administrator: the rules set_admin and set_active share.

    Nobody turns their own off (``refusal`` says so): that is how the last
    administrator would lock everyone out, themselves first.
    """
    actor.require_write()
    actor.require_admin()
    user = session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    if not on and user.id == actor.user_id:
        raise PermissionDenied(refusal)
    setattr(user, flag, on)
    return user


def set_admin(session: Session, actor: Actor, user_id: int, is_admin: bool) -> User:
    """Grant or revoke administrator rights."""
    user = _switch(session, actor, user_id, "is_admin", is_admin,
                   "you cannot revoke your own administrator rights; ask another administrator")
    audit.record(session, actor, "user.admin" if is_admin else "user.unadmin", object_type="user",
                 object_id=user.id, object_name=user.username)
    return user


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> User:
    """Disable or re-enable an account. A disabled user cannot log in and their
    session cookie and API tokens stop working at once; their guests stay."""
    user = _switch(session, actor, user_id, "is_active", active, "you cannot disable your own account")
    ended = 0 if active else sessions.end_for_user(session, user.id, "account disabled")
    audit.record(session, actor, "user.enable" if active else "user.disable", object_type="user",
                 object_id=user.id, object_name=user.username, message=f"{ended} session(s) ended" if ended else "")
    return user
