"""Retiring guests whose reservation ended, and forgetting old history.

Retiring tears down everything the guest holds outside the database (see
``teardown``) and keeps its row as history: step ``retired``, visible to its
owner and admins for ``retired_keep_days``, then purged. When a part cannot be
removed (its host is down), the guest stays as it is and the next pass tries
again; nothing is marked retired that still runs somewhere.

The expiry task is exclusive (one process at a time holds its lease), and the
final update re-checks the row under a lock, so each guest is retired, and
audited, exactly once even with several Fogmachine processes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session, joinedload

from fogmachine.context import Context
from fogmachine.db.models import ApiToken, Guest, GuestState, GuestStep, Host, Step, utcnow
from fogmachine.errors import FogmachineError
from fogmachine.services import audit, teardown
from fogmachine.services.actor import Actor

log = logging.getLogger(__name__)


def _expired_ids(session: Session, now: dt.datetime) -> list[int]:
    return list(session.scalars(
        select(Guest.id).where(Guest.managed.is_(True), Guest.step != Step.RETIRED, Guest.expires_at <= now)
        .order_by(Guest.expires_at)
    ))


def _holdings(session: Session, guest_id: int) -> teardown.Holdings | None:
    guest = session.scalar(select(Guest).options(joinedload(Guest.host)).where(Guest.id == guest_id))
    if guest is None or guest.step == Step.RETIRED:
        return None
    return teardown.Holdings.of(guest)


LEFT_BEHIND = " with parts left behind"


def left_behind(reason: str, failures: list[teardown.Failure]) -> str:
    """``reason`` plus what could not be removed, for the row of a guest retired with leftovers."""
    if not failures:
        return reason
    return f"{reason}{LEFT_BEHIND} (could not {'; '.join(map(str, failures))}); reconciliation removes them when it can"


def leftovers_removed(reason: str, parts: str) -> str:
    """The reason once reconciliation removed what the guest left behind: the first reason stays
    ("deleted by ann", "reservation expired"), the outdated "could not ..." goes."""
    return f"{reason.split(LEFT_BEHIND, 1)[0]}; what it left behind ({parts}) was removed later"[:2000]


def mark_retired(guest: Guest, reason: str, left: teardown.Holdings | None = None) -> None:
    """Make the row history: step ``retired``, its name free for a new guest, the reason kept.

    ``left`` names what could not be removed (a forced delete while the host was down): it stays on
    the row for reconciliation, and while a domain may still run there its state is unknown.
    """
    guest.step, guest.retired_at = Step.RETIRED, utcnow()
    guest.live_name = None  # the name is free for a new guest
    guest.step_reason = reason[:2000]
    if left is None:
        guest.domain_name, guest.volume_path, guest.cobbler_system = None, "", ""
    else:
        guest.domain_name, guest.volume_path, guest.cobbler_system = (left.domain_name, left.volume_path,
                                                                      left.cobbler_system)
    guest.state = GuestState.UNKNOWN if guest.domain_name else GuestState.UNDEFINED


def locked_for_retiring(session: Session, guest_id: int) -> Guest | None:
    """The guest's row locked for retiring it, taken after a shared lock on its host's row.

    Hosts before guests is the order placement and the host resyncs lock them in. Retiring changes
    columns of the (host_id, domain_name) index, and for that MariaDB (InnoDB) also checks the
    foreign key to ``hosts`` with a shared lock on the host's row: taken second, after the guest's,
    it deadlocked with a resync that held the host row and waited for the guest's (measured, the
    delete answered 500).
    """
    host_id = session.scalar(select(Guest.host_id).where(Guest.id == guest_id))
    if host_id is not None:
        session.execute(select(Host.id).where(Host.id == host_id).with_for_update(read=True))
    return session.scalar(select(Guest).where(Guest.id == guest_id).with_for_update())


def _finish(session: Session, actor: Actor, guest_id: int, reason: str) -> bool:
    guest = locked_for_retiring(session, guest_id)
    if guest is None or guest.step == Step.RETIRED:
        return False
    mark_retired(guest, reason)
    audit.record(session, actor, "guest.retire", object_type="guest", object_id=guest.id, object_name=guest.name,
                 message=reason)
    return True


def _failed(session: Session, actor: Actor, guest_id: int, name: str, message: str) -> None:
    audit.record(session, actor, "guest.retire", object_type="guest", object_id=guest_id, object_name=name,
                 result="failed", message=message)


async def retire(ctx: Context, actor: Actor, guest_id: int, reason: str = "reservation expired") -> bool:
    """Retire one guest; True when this call retired it."""
    holdings = await ctx.db.run(_holdings, guest_id)
    if holdings is None:
        return False
    async with ctx.guest_work.hold(guest_id):  # after a finish of its install in flight (guestwork.py)
        try:
            await teardown.release(ctx, holdings)
        except FogmachineError as exc:
            log.warning("cannot retire guest %s yet: %s", holdings.name, exc.message)
            await ctx.db.run(_failed, actor, guest_id, holdings.name, exc.message)
            return False
        done = await ctx.db.run(_finish, actor, guest_id, reason, lock=True)
    if done:
        log.info("retired guest %s: %s", holdings.name, reason)
    return done


async def retire_expired(ctx: Context, now: dt.datetime | None = None) -> int:
    """One pass of the expiry task; returns how many guests it retired."""
    actor = Actor.system("expiry")
    retired = 0
    for guest_id in await ctx.db.run(_expired_ids, now or utcnow()):
        retired += await retire(ctx, actor, guest_id)
    return retired


def _purge(session: Session, keep_days: int, now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(days=keep_days)
    purged = (Guest.step == Step.RETIRED, Guest.retired_at < cutoff)
    # Their step history first: the foreign key's ON DELETE CASCADE would do it too, but only where the
    # database enforces foreign keys (SQLite does only when each connection asks).
    session.execute(delete(GuestStep).where(GuestStep.guest_id.in_(select(Guest.id).where(*purged))))
    result = cast("CursorResult[Any]", session.execute(  # a DELETE: its result has a rowcount
        delete(Guest).where(*purged)))
    session.execute(delete(ApiToken).where(ApiToken.expires_at < now))
    return result.rowcount or 0


async def purge_history(ctx: Context, now: dt.datetime | None = None) -> int:
    """Delete retired guests older than ``retired_keep_days`` and expired API tokens."""
    return await ctx.db.run(_purge, ctx.config.retired_keep_days, now or utcnow())
