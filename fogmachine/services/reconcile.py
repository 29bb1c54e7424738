"""Reconciliation: make the hosts, Cobbler and the database agree again.

Runs shortly after start and then periodically (one process at a time). It
repairs what crashes and outages leave behind:

* a checkout whose provisioning process died (its heartbeat lease expired) or
  that is still not ready after ``provision_timeout`` (a guest of an
  environment's: counted from when its tier started): everything it made is
  torn down (by the guest's name, since a crash can come between making a part
  and recording it) and the guest is marked failed with the reason. The dead
  process's checkouts are also looked for every 15 s on their own
  (``fix_interrupted``), so they are cleaned within a minute of a crash;
* a domain that carries Fogmachine's mark but whose guest row is gone,
  retired, or failed and cleaned up (a removal that failed when the guest
  failed is tried again here): powered off and undefined, and the volume
  checkout made for it (``NAME.qcow2`` in the host's default pool) deleted;
* a Cobbler system made by this Fogmachine (its ``autoinstall_meta`` has
  ``fogmachine_token`` and this server's ``fogmachine_server``, so instances
  sharing one Cobbler leave each other's alone) that no live guest owns: removed;
* a retired guest whose row still names parts that could not be removed
  (a delete while Cobbler or the host was down, an administrator's forced
  delete): removed once the host or Cobbler answers, the row's columns cleared
  and its reason updated;
* a guest whose domain vanished (state ``missing``): left in place for its
  owner to see, with the reason on the row and in the audit log.

A guest of an environment's later tier waiting for its turn (step
``waiting``) has no worker, domain, token or record by design: it is not an
interrupted checkout, and nothing of it is on a host to find. It is left
alone; starting its tier, or failing it, is the environment engine's.

Every repair is logged and audited under the actor ``reconcile``.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from fogmachine.context import Context
from fogmachine.db.models import IN_PROGRESS_STEPS, Guest, GuestState, GuestStep, Step, TargetKind, utcnow
from fogmachine.errors import FogmachineError
from fogmachine.services import audit, expiry, hoststate, leases, teardown
from fogmachine.services.actor import Actor
from fogmachine.virt.connection import HostConnection
from fogmachine.virt.inventory import DomainInfo

log = logging.getLogger(__name__)
ACTOR = Actor.system("reconcile")
MISSING_NOTE = "its domain vanished from its host"
INTERRUPTED = "provisioning was interrupted: the Fogmachine process doing it stopped"


@dataclass
class Report:
    failed_provisioning: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    orphan_domains: list[str] = field(default_factory=list)
    orphan_systems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.failed_provisioning, self.leftovers, self.orphan_domains, self.orphan_systems,
                    self.missing, self.errors))


@dataclass(frozen=True)
class _Stuck:
    guest_id: int
    reason: str
    holdings: teardown.Holdings


def _began(session: Session, guest: Guest) -> dt.datetime:
    """When the guest's provisioning began, which ``provision_timeout`` counts from: its checkout; for a guest
    of an environment, when its tier started (the first step it took after ``waiting``). The environment claims
    every tier's guests at once, and a later tier waits, capacity held, for the tiers before it to install:
    counted from the claim, that wait would time it out early (found by a test: a tier started after a
    20-minute install of the one before was failed at once with the default hour)."""
    if guest.environment_id is None:
        return guest.created_at
    started = session.scalar(select(func.min(GuestStep.at)).where(
        GuestStep.guest_id == guest.id, GuestStep.step.in_((Step.REGISTERING, Step.DEFINING))))
    return started if started is not None else guest.created_at


def _stuck(session: Session, timeout: float, busy_here: set[int], now: dt.datetime,
           interrupted_only: bool = False, this_process: str = "") -> list[_Stuck]:
    # This process is alive, whatever its heartbeat lease says: on a loaded machine the lease can lapse
    # while the process works (its own checkouts, claimed but not yet spawned, are not in ``busy_here``).
    alive = leases.live_processes(session) | ({this_process} if this_process else set())
    cutoff = now - dt.timedelta(seconds=timeout)
    found = []
    query = select(Guest).options(joinedload(Guest.host)).where(Guest.managed.is_(True))
    if interrupted_only:
        query = query.where(Guest.step.in_(IN_PROGRESS_STEPS), Guest.worker != "", Guest.worker.not_in(alive))
    else:
        query = query.where(Guest.step.in_([*IN_PROGRESS_STEPS, Step.INSTALLING]))
    for guest in session.scalars(query).unique():
        if guest.id in busy_here:
            continue
        if guest.step in IN_PROGRESS_STEPS and guest.worker and guest.worker not in alive:
            reason = INTERRUPTED
        elif _began(session, guest) < cutoff and not interrupted_only:
            what = "phone home" if guest.step == Step.INSTALLING else "finish provisioning"
            reason = f"did not {what} within {timeout:g} s"
        else:
            continue
        holdings = teardown.Holdings.of(guest)
        if guest.target_kind in (TargetKind.PROFILE, TargetKind.IMAGE) and not holdings.cobbler_system:
            # A crash can come between creating the Cobbler system and recording it.
            holdings = teardown.Holdings(holdings.name, holdings.host, holdings.domain_name, holdings.volume_path,
                                         guest.name)
        found.append(_Stuck(guest.id, reason, holdings))
    return found


def _mark_failed(session: Session, guest_id: int, reason: str, expected_steps: tuple[str, ...]) -> bool:
    guest = session.scalar(select(Guest).where(Guest.id == guest_id).with_for_update())
    if guest is None or guest.step not in expected_steps:
        return False  # it moved on meanwhile (finished, deleted, ...)
    guest.step, guest.step_reason, guest.state = Step.FAILED, reason, GuestState.UNDEFINED
    guest.worker = guest.phonehome_token_hash = guest.cobbler_system = guest.volume_path = ""
    guest.domain_name = None  # torn down completely: nothing of it is left on its host
    audit.record(session, ACTOR, "guest.reconcile", object_type="guest", object_id=guest.id,
                 object_name=guest.name, message=f"marked failed and cleaned up: {reason}")
    return True


def _live_guest_ids(session: Session, ids: set[int]) -> set[int]:
    """Those of ``ids`` whose managed guest exists and is not released (retired, or failed and cleaned up)."""
    if not ids:
        return set()
    guests = session.scalars(select(Guest).where(Guest.id.in_(ids), Guest.managed.is_(True)))
    return {guest.id for guest in guests if not hoststate.released(guest)}


def _owned_systems(session: Session) -> set[str]:
    rows = session.execute(select(Guest.cobbler_system, Guest.live_name).where(Guest.step != Step.RETIRED))
    return {name for pair in rows for name in pair if name}


def _audit(session: Session, action: str, object_type: str, name: str, message: str) -> None:
    audit.record(session, ACTOR, action, object_type=object_type, object_name=name, message=message)


def _note_missing(session: Session) -> list[str]:
    noted = []
    for guest in session.scalars(select(Guest).options(joinedload(Guest.host)).where(
            Guest.managed.is_(True), Guest.state == GuestState.MISSING, Guest.step != Step.RETIRED)).unique():
        if guest.step_reason.startswith(MISSING_NOTE):
            continue
        host = guest.host.name if guest.host is not None else "?"
        guest.step_reason = f"{MISSING_NOTE} ({host}); delete it or ask an admin"
        audit.record(session, ACTOR, "guest.reconcile", object_type="guest", object_id=guest.id,
                     object_name=guest.name, result="failed", message=guest.step_reason)
        noted.append(guest.name)
    return noted


async def _fix_provisioning(ctx: Context, report: Report, interrupted_only: bool = False) -> None:
    busy = set(ctx.provisioner.tasks)  # this process's own checkouts in progress
    this_process = ctx.process_id
    for stuck in await ctx.db.run(_stuck, ctx.config.provision_timeout, busy, utcnow(), interrupted_only,
                                  this_process):
        try:
            await teardown.release(ctx, stuck.holdings)
        except FogmachineError as exc:
            report.errors.append(f"guest {stuck.holdings.name}: {exc.message}")
            continue
        steps = (*IN_PROGRESS_STEPS, Step.INSTALLING)
        if await ctx.db.run(_mark_failed, stuck.guest_id, stuck.reason, steps, lock=True):
            log.warning("reconcile: guest %s %s; cleaned up and marked failed", stuck.holdings.name, stuck.reason)
            report.failed_provisioning.append(stuck.holdings.name)


def _leftovers(session: Session) -> list[tuple[int, teardown.Holdings]]:
    rows = session.scalars(select(Guest).options(joinedload(Guest.host)).where(
        Guest.managed.is_(True), Guest.step == Step.RETIRED,
        or_(Guest.domain_name.is_not(None), Guest.volume_path != "", Guest.cobbler_system != ""))).unique()
    return [(guest.id, teardown.Holdings.of(guest)) for guest in rows]


def _cleared(session: Session, guest_id: int, holdings: teardown.Holdings) -> None:
    guest = session.scalar(select(Guest).where(Guest.id == guest_id).with_for_update())
    if guest is None or guest.step != Step.RETIRED:
        return
    guest.domain_name, guest.volume_path, guest.cobbler_system = None, "", ""
    guest.state = GuestState.UNDEFINED
    parts = [f"domain {holdings.domain_name} on {holdings.host}" if holdings.domain_name else "",
             f"volume {holdings.volume_path}" if holdings.volume_path else "",
             f"Cobbler system {holdings.cobbler_system}" if holdings.cobbler_system else ""]
    done = ", ".join(p for p in parts if p)
    guest.step_reason = expiry.leftovers_removed(guest.step_reason, done)
    audit.record(session, ACTOR, "guest.reconcile", object_type="guest", object_id=guest.id,
                 object_name=guest.name, message=f"removed what was left behind: {done}")


async def _fix_leftovers(ctx: Context, report: Report) -> None:
    for guest_id, holdings in await ctx.db.run(_leftovers):
        if holdings.host is not None and holdings.domain_name and ctx.hosts is not None:
            try:
                if not ctx.hosts.get(holdings.host).connected:
                    continue  # still down: next time (not an error to report on every pass)
            except FogmachineError:
                continue  # not watched (left the file): nothing can reach it
        try:
            await teardown.release(ctx, holdings)
        except FogmachineError as exc:
            report.errors.append(f"guest {holdings.name}: {exc.message}")
            continue
        await ctx.db.run(_cleared, guest_id, holdings, lock=True)
        log.warning("reconcile: removed what retired guest %s left behind", holdings.name)
        report.leftovers.append(holdings.name)


async def _volume_made_for(conn: HostConnection, dom: DomainInfo) -> str:
    """The disk Fogmachine made for an orphan domain, or "": with no row left to name it, the volume is
    recognised by where checkout makes it (NAME.qcow2 in the host's default pool) among the domain's disks."""
    if not dom.disks:
        return ""
    pool = await conn.pool_path()
    made_here = posixpath.join(pool, f"{dom.name}.qcow2") if pool else ""
    return made_here if made_here in dom.disks else ""


async def _fix_domains(ctx: Context, report: Report) -> None:
    if ctx.hosts is None:
        return
    for conn in ctx.hosts.all():
        if not conn.connected:
            continue
        try:
            domains = await conn.list_domains()
        except FogmachineError as exc:
            report.errors.append(f"host {conn.name}: {exc.message}")
            continue
        marked = {d.guest_id: d for d in domains if d.guest_id is not None}
        live = await ctx.db.run(_live_guest_ids, set(marked))
        for guest_id, dom in marked.items():
            if guest_id in live:
                continue
            try:
                volume = await _volume_made_for(conn, dom)
                await teardown.release(ctx, teardown.Holdings(dom.name, conn.name, dom.name, volume, ""))
            except FogmachineError as exc:
                report.errors.append(f"domain {dom.name} on {conn.name}: {exc.message}")
                continue
            message = f"domain {dom.name} on {conn.name} belonged to guest {guest_id}, which is gone: removed"
            log.warning("reconcile: %s", message)
            await ctx.db.run(_audit, "domain.reconcile", "domain", dom.name, message)
            report.orphan_domains.append(f"{conn.name}/{dom.name}")
        conn.request_resync()


async def _fix_cobbler(ctx: Context, report: Report) -> None:
    catalog = ctx.catalog
    if catalog is None:
        return
    try:
        ours = await catalog.records()  # only what this Fogmachine made (catalog/cobbler_source.made_by)
    except FogmachineError as exc:
        report.errors.append(f"Cobbler: {exc.message}")
        return
    if not ours:
        return
    owned = await ctx.db.run(_owned_systems)
    for name in ours:
        if name in owned:
            continue
        try:
            await catalog.unregister(name)
        except FogmachineError as exc:
            report.errors.append(f"Cobbler system {name}: {exc.message}")
            continue
        log.warning("reconcile: Cobbler system %s belonged to no guest: removed", name)
        await ctx.db.run(_audit, "cobbler.reconcile", "cobbler_system", name, "belonged to no guest: removed")
        report.orphan_systems.append(name)


async def fix_interrupted(ctx: Context) -> Report:
    """Only the checkouts whose process died (its heartbeat expired): torn down and marked failed.

    The cheap part of reconciliation (one query when there are none), run every ``HEARTBEAT_TTL``
    seconds (tasks.py) so that a crashed process's guests stop holding capacity and can be deleted
    within a minute, not at the next full pass (``reconcile_interval``, 5 minutes by default).
    """
    report = Report()
    await _fix_provisioning(ctx, report, interrupted_only=True)
    for error in report.errors:
        log.warning("reconcile: could not repair %s", error)
    return report


async def reconcile(ctx: Context) -> Report:
    """One reconciliation pass; what it repaired is returned and logged."""
    report = Report()
    await _fix_provisioning(ctx, report)
    await _fix_leftovers(ctx, report)  # before _fix_domains: the row also names the domain's volume
    await _fix_domains(ctx, report)
    await _fix_cobbler(ctx, report)
    report.missing = await ctx.db.run(_note_missing, lock=True)
    for error in report.errors:
        log.warning("reconcile: could not repair %s", error)
    return report

