"""Power actions on a guest, and deleting it: the one service pages, API and tasks share.

Each action checks who may act (a guest the actor may not see is not found),
refuses what Fogmachine must not touch (domains it did not create, retired
guests), reads the domain's state fresh from its host and refuses what makes
no sense in it with a sentence a user understands ("guest web1 is already
running") instead of whatever libvirt would say. Then it acts through the
host's connection, which records the domain's new state in the database
before it returns (``HostConnection.act``: the state read, the refusal and the
operation in one go, three or four round trips to the host), so the returned
row already shows it; and audits the outcome, failed or not.

A graceful shutdown only asks the guest: the request returns as soon as it is
sent, and a background check after ``shutdown_timeout`` records (audit event
with result ``ignored``, and the guest's ``step_reason``) when the guest is
still running, so the user knows to destroy it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fogmachine.context import Context
from fogmachine.db.models import IN_PROGRESS_STEPS, Guest, GuestState, Step
from fogmachine.errors import (
    Conflict,
    FogmachineError,
    HostUnreachable,
    NotFound,
    PartlyDone,
    PermissionDenied,
    ValidationError,
)
from fogmachine.services import audit, expiry, notices, teardown
from fogmachine.services.actor import Actor
from fogmachine.services.environments import waiting
from fogmachine.services.guests import get_guest

log = logging.getLogger(__name__)

ACTIONS = ("start", "stop", "restart", "pause", "unpause", "destroy", "refresh")
IGNORED_SHUTDOWN = "ignored the shutdown request"
_RUNNING = (GuestState.RUNNING, GuestState.BLOCKED)


@dataclass(frozen=True)
class _Target:
    """The guest's facts copied out of its row, so no ORM object crosses threads."""

    id: int
    name: str
    domain_name: str | None  # None: no domain (a failed checkout's was never made, or was removed)
    host: str | None
    owner_id: int | None
    managed: bool
    step: str
    state: str
    holdings: teardown.Holdings
    waiting_for: str = ""  # a later tier's guest (step waiting): "tier db of environment lab1"


def _load(session: Session, actor: Actor, guest_id: int) -> _Target:
    guest = get_guest(session, actor, guest_id)
    host = guest.host.name if guest.host is not None else None
    return _Target(guest.id, guest.name, guest.domain_name, host, guest.owner_id, guest.managed, guest.step,
                   guest.state, teardown.Holdings.of(guest),
                   waiting.waiting_for(guest) if guest.step == Step.WAITING else "")


def _loaded(session: Session, guest_id: int) -> Guest:
    guest = session.scalar(
        select(Guest).options(joinedload(Guest.owner), joinedload(Guest.host)).where(Guest.id == guest_id))
    if guest is None:
        raise NotFound(f"no guest with id {guest_id}")
    return guest


def _record(session: Session, actor: Actor, target: _Target, action: str, result: str, message: str) -> None:
    audit.record(session, actor, f"guest.{action}", object_type="guest", object_id=target.id,
                 object_name=target.name, result=result, message=message)


def _finish(session: Session, actor: Actor, target: _Target, action: str, message: str) -> Guest:
    _record(session, actor, target, action, "ok", message)
    guest = _loaded(session, target.id)
    if action in ("start", "destroy", "stop", "restart") and IGNORED_SHUTDOWN in guest.step_reason:
        guest.step_reason = ""  # that warning was about an earlier boot
    return guest


def _allowed(actor: Actor, target: _Target, action: str, force: bool = False) -> None:
    """Who may do what (one of ACTIONS, or delete) to this guest, before anything is asked of a host.

    One rule for both, so a power action and a delete cannot disagree about
    whose guest it is, or about unmanaged and retired guests. A delete needs
    no domain and no host (it removes what is there); a guest still being
    provisioned is deleted only with ``force``.
    """
    deleting = action == "delete"
    if not actor.may_act_on(target.owner_id):
        raise PermissionDenied(f"you may not {'delete' if deleting else 'act on'} guest {target.name}")
    if action == "refresh":
        return
    if not target.managed:
        raise Conflict(f"guest {target.name} was not created by Fogmachine; it is shown, never touched")
    if target.step == Step.RETIRED:
        raise Conflict(f"guest {target.name} is retired" + ("; its record is kept as history" if deleting else ""))
    if target.step == Step.WAITING and not deleting:
        # No domain yet, nothing to act on; deleting it removes only its row (it holds nothing else).
        raise Conflict(f"guest {target.name} is waiting for {target.waiting_for} to be ready; its own provisioning "
                       "has not begun")
    if deleting:
        if target.step in IN_PROGRESS_STEPS and not force:
            raise Conflict(f"guest {target.name} is still being provisioned; delete it once it is ready or failed "
                           "(an administrator may delete it anyway, with force)")
        return
    if target.host is None:
        raise Conflict(f"guest {target.name} is not on any host")
    if target.domain_name is None:
        raise Conflict(f"guest {target.name} has no domain" + (" (its checkout failed)" if target.step == Step.FAILED
                                                              else ""))
    if target.state == GuestState.UNDEFINED and target.step in IN_PROGRESS_STEPS:
        raise Conflict(f"guest {target.name} is still being provisioned")


def state_conflict(name: str, state: str, action: str) -> str | None:
    """Why ``action`` makes no sense for a guest in libvirt ``state``; None when it does."""
    if action == "start":
        if state in _RUNNING or state == GuestState.SHUTDOWN:
            return f"guest {name} is already running"
        if state == GuestState.PAUSED:
            return f"guest {name} is paused; unpause it instead"
        if state == GuestState.SUSPENDED:
            return f"guest {name} is suspended by its own power management"
        return None
    if action == "destroy":
        return f"guest {name} is not running" if state == GuestState.SHUTOFF else None
    if action == "unpause":
        if state == GuestState.PAUSED:
            return None
        return f"guest {name} is not paused" if state in _RUNNING else f"guest {name} is not running"
    # stop, restart, pause: a running guest only
    if state in _RUNNING:
        return None
    if state == GuestState.PAUSED:
        return {"pause": f"guest {name} is already paused",
                "stop": f"guest {name} is paused; unpause it to shut it down, or destroy it",
                "restart": f"guest {name} is paused; unpause it first"}[action]
    if state == GuestState.SHUTDOWN and action == "stop":
        return f"guest {name} is already shutting down"
    return f"guest {name} is not running"


def _connection(ctx: Context, target: _Target):  # type: ignore[no-untyped-def]
    if ctx.hosts is None:
        raise HostUnreachable("the hypervisor layer is not running in this process")
    assert target.host is not None
    try:
        conn = ctx.hosts.get(target.host)
    except NotFound:
        raise HostUnreachable(f"host {target.host} is no longer watched (it left virthosts.conf)") from None
    if not conn.connected:
        reason = f": {conn.reason}" if conn.reason else ""
        raise HostUnreachable(f"host {target.host} is down{reason}", details={"host": target.host})
    return conn


_OPS: dict[str, tuple[str, str]] = {
    # action: (what HostConnection.act calls it, what the audit log says)
    "start": ("start", "started"),
    "stop": ("shutdown", "shutdown requested"),
    "restart": ("reboot", "reboot requested"),
    "pause": ("pause", "paused"),
    "unpause": ("unpause", "unpaused"),
    "destroy": ("destroy", "powered off"),
}


async def perform(ctx: Context, actor: Actor, guest_id: int, action: str) -> Guest:
    """Do ``action`` (one of ACTIONS) to the guest and return its row, already resynced."""
    if action not in ACTIONS:
        raise ValidationError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", field="action")
    if action != "refresh":
        actor.require_write()
    target = await ctx.db.run(_load, actor, guest_id)
    domain_id = -1
    try:
        _allowed(actor, target, action)
        if target.host is None:  # refresh of a guest without a host: nothing to ask
            return await ctx.db.run(_finish, actor, target, action, "no host", lock=True)
        conn = _connection(ctx, target)
        if action == "refresh":
            await conn.resync()
            message = "resynced from its host"
        else:
            op, message = _OPS[action]
            assert target.domain_name is not None  # _allowed
            try:
                domain_id = await conn.act(target.domain_name, op, label=target.name,
                                           refuse=lambda state: state_conflict(target.name, state, action))
            except NotFound:
                raise Conflict(f"guest {target.name} has no domain on host {target.host} any more") from None
    except FogmachineError as exc:
        await _audit_failure(ctx, actor, target, action, exc)
        raise
    guest = await ctx.db.run(_finish, actor, target, action, message, lock=True)
    if action == "stop" and ctx.hosts is not None:
        ctx.hosts.spawn(_watch_shutdown(ctx, actor, target, domain_id, ctx.config.shutdown_timeout),
                        name=f"shutdown-watch-{target.name}")
    return guest


async def _audit_failure(ctx: Context, actor: Actor, target: _Target, action: str, exc: FogmachineError) -> None:
    try:
        await ctx.db.run(_record, actor, target, action, "failed", exc.message, lock=True)
    except FogmachineError:
        log.warning("could not audit the failed %s of guest %s: %s", action, target.name, exc.message)


def _mark_ignored(session: Session, actor: Actor, target: _Target, message: str) -> None:
    _record(session, actor, target, "stop", "ignored", message)
    guest = session.get(Guest, target.id)
    if guest is not None and guest.step == Step.READY:
        guest.step_reason = message


async def _watch_shutdown(ctx: Context, actor: Actor, target: _Target, domain_id: int, timeout: float) -> None:
    """After ``timeout``, note whether the guest ignored the shutdown (same boot, still running)."""
    await asyncio.sleep(timeout)
    try:
        conn = _connection(ctx, target)
        current = await conn.domain(target.domain_name, label=target.name)
    except FogmachineError:
        return  # gone, or its host is down: nothing meaningful to say
    if current.domain_id == domain_id and current.state in (*_RUNNING, GuestState.SHUTDOWN):
        message = f"guest {target.name} {IGNORED_SHUTDOWN} for {timeout:g} s; destroy powers it off"
        log.info("%s", message)
        await ctx.db.run(_mark_ignored, actor, target, message, lock=True)


async def delete(ctx: Context, actor: Actor, guest_id: int, *, force: bool = False) -> None:
    """Power off, undefine, remove its volume and Cobbler system, then retire the row.

    The row stays as history (step ``retired``, reason "deleted by NAME"), like a guest whose
    reservation ended: its id, and the audit log under it, always mean this one guest, and its
    owner still sees it under History. Its name is free at once.

    While the guest's host is down nothing is touched (HostUnreachable) if the guest may still run
    there; a part already gone counts as done, so a delete interrupted half-way can be repeated.
    A failed checkout runs nowhere: it needs its host only for what its row still names there.

    Once started, a delete always retires the row. A part that could not be removed (Cobbler
    down, the host lost half-way, a failed guest's leftover on a host that is down) stays named on
    the retired row, and reconciliation removes it when it can: the guest holds no capacity, its
    name is free, and the answer is a ``PartlyDone`` error saying what is gone and what is left.

    ``force`` (administrators only) is for a host that is down for long, or gone: the same,
    without waiting for the host, and without an error for what is left.

    ``force`` also deletes a guest still being provisioned (stuck, or its process
    died). The race with a provisioner still running (here or in another process)
    is settled by the row, first: it is marked failed ("deleted by ... while being
    provisioned") before anything is torn down, so the provisioner's next step
    finds it so (every step that makes a part is followed by a locked write to
    the row) and removes what it made since; what was made before is removed here
    by name. The provisioner is not cancelled from here: it may run in another process.
    """
    actor.require_write()
    if force:
        actor.require_admin()
    target = await ctx.db.run(_load, actor, guest_id)
    try:
        _allowed(actor, target, "delete", force)
        if force and target.step in IN_PROGRESS_STEPS:
            await ctx.db.run(_stop_provisioning, actor, target, lock=True)
        if not force and _may_run_on_its_host(target):
            _connection(ctx, target)
        async with ctx.guest_work.hold(guest_id):  # after a finish of its install in flight (guestwork.py)
            left, failures = await teardown.release_each(ctx, target.holdings)
            await ctx.db.run(_retire, actor, target, left, failures, lock=True)
    except FogmachineError as exc:
        await _audit_failure(ctx, actor, target, "delete", exc)
        raise
    if failures and not force:
        raise _partly_deleted(target, left, failures)


def _may_run_on_its_host(target: _Target) -> bool:
    """Whether deleting must wait for the host: a guest that may be running there must not be left
    running unseen. A failed checkout never runs; what it left (named on its row) is removed later."""
    held = target.holdings
    return target.step != Step.FAILED and target.host is not None and bool(held.domain_name or held.volume_path)


def _parts(held: teardown.Holdings) -> list[str]:
    return [part for part in (f"domain {held.domain_name} on {held.host}" if held.domain_name else "",
                              f"volume {held.volume_path}" if held.volume_path else "",
                              f"Cobbler system {held.cobbler_system}" if held.cobbler_system else "") if part]


def _removed(target: _Target, left: teardown.Holdings) -> list[str]:
    held = target.holdings
    return [part for part, was, still in (("domain", held.domain_name, left.domain_name),
                                          ("volume", held.volume_path, left.volume_path),
                                          ("Cobbler system", held.cobbler_system, left.cobbler_system))
            if was and not still]


def _partly_deleted(target: _Target, left: teardown.Holdings, failures: list[teardown.Failure]) -> PartlyDone:
    held = target.holdings
    gone = teardown.Holdings(held.name, held.host, held.domain_name if not left.domain_name else None,
                             held.volume_path if not left.volume_path else "",
                             held.cobbler_system if not left.cobbler_system else "")
    removed, remaining = _parts(gone), _parts(left)
    message = (f"guest {target.name} is deleted (kept as history, its name free)"
               f"{'; removed its ' + ', '.join(removed) if removed else ''}; left behind: {', '.join(remaining)} "
               f"(could not {'; '.join(map(str, failures))}); reconciliation removes it when it can")
    return PartlyDone(message, failures[0].error, details={
        "guest": target.name, "deleted": True, "removed": removed, "left": remaining,
        "errors": [str(f) for f in failures]})


def _retire(session: Session, actor: Actor, target: _Target, left: teardown.Holdings,
            failures: list[teardown.Failure]) -> None:
    """The row becomes history, naming whatever could not be removed (reconciliation removes it later)."""
    guest = expiry.locked_for_retiring(session, target.id)
    if guest is None or guest.step == Step.RETIRED:
        return  # retired meanwhile (its reservation ended): already history
    reason = expiry.left_behind(f"deleted by {actor.username}", failures)
    expiry.mark_retired(guest, reason, left)
    notices.skip_retired_mail(session, guest.id)
    removed = _removed(target, left)
    message = f"removed {', '.join(removed)}; " if removed else ""
    _record(session, actor, target, "delete", "ok", f"{message}{reason}; the record is kept as history")


def _stop_provisioning(session: Session, actor: Actor, target: _Target) -> None:
    """Tell a provisioner still at work to stop (see ``delete``): the row says failed before any teardown."""
    guest = session.scalar(select(Guest).where(Guest.id == target.id).with_for_update())
    if guest is None or guest.step not in IN_PROGRESS_STEPS:
        return  # it finished meanwhile: an ordinary forced delete
    guest.step, guest.state = Step.FAILED, GuestState.UNDEFINED
    guest.step_reason = f"deleted by {actor.username} while being provisioned"
    guest.worker = guest.phonehome_token_hash = ""
