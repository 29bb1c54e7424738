"""The administrators' user functions: the list of users, granting and revoking administrator rights,
disabling and re-enabling accounts.

Apart from ``accounts`` (what every user does with their own account) because
every function here first requires an administrator, and one rule binds them:
nobody turns their own flag off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, Step, User
from fogmachine.errors import NotFound, PermissionDenied, ValidationError
from fogmachine.services import audit, listing, sessions
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
    """Every user, by name (the API's list)."""
    return find_users(session, actor, UserFilter(limit=None))[0]


USER_SORTS = ("username", "role", "guests", "last_login", "created")
ROLES = ("admin", "user")
STATUSES = ("active", "disabled")


@dataclass(frozen=True)
class UserFilter:
    """What the admin page's user list asks for: a search, filters, an order and a page.

    ``search`` matches part of the name or e-mail, case-insensitively; ``role``
    and ``status`` are one of ``ROLES``/``STATUSES`` or empty for all; ``sort``
    one of ``USER_SORTS``. The web layer checks the values it was sent; the
    service refuses what it cannot order by.
    """

    search: str = ""
    role: str = ""
    status: str = ""
    sort: str = "username"
    descending: bool = False
    offset: int = 0
    limit: int | None = 50


def find_users(session: Session, actor: Actor, flt: UserFilter) -> tuple[list[UserSummary], int]:
    """The users the filter picks, in its order, one page of them, and how many it picks in all."""
    actor.require_admin()
    if flt.sort not in USER_SORTS:
        raise ValidationError(f"sort must be one of {', '.join(USER_SORTS)}", field="sort")
    live = (select(Guest.owner_id.label("owner_id"), func.count().label("n"))
            .where(Guest.step != Step.RETIRED, Guest.managed.is_(True)).group_by(Guest.owner_id).subquery())
    guests = func.coalesce(live.c.n, 0)
    query = select(User, guests).outerjoin(live, live.c.owner_id == User.id)
    search = flt.search.strip()
    if search:
        query = query.where(or_(listing.contains(User.username, search), listing.contains(User.email, search)))
    if flt.role:
        query = query.where(User.is_admin.is_(flt.role == "admin"))
    if flt.status:
        query = query.where(User.is_active.is_(flt.status == "active"))
    total = listing.count(session, query)
    key = {"username": User.username, "role": User.is_admin, "guests": guests,
           "last_login": User.last_login_at, "created": User.created_at}[flt.sort]
    # Never-logged-in users sort as the oldest logins on every database (NULLs differ between them).
    if flt.sort == "last_login":
        key = func.coalesce(User.last_login_at, User.created_at)
    order = [*listing.ordered(key, flt.descending), User.username.asc()]
    rows = session.execute(query.order_by(*order).offset(flt.offset).limit(flt.limit)).all()
    return [UserSummary(u.id, u.username, u.email, u.is_admin, u.is_active, u.created_at, u.last_login_at, n)
            for u, n in rows], total


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
