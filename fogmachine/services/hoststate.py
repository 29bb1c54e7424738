"""What the hypervisors say, written into the database in one unit of work per host.

The virt layer reads a host (``HostSnapshot``: facts plus every domain) and
calls ``apply_snapshot``; a lost host goes through ``apply_down``. Both write
only what differs from the rows, so the periodic resync of an unchanged host
costs reads and no writes.

A resync reads the host's rows and decides what changes (``plan_snapshot``),
then writes each row only where it still is as read (``write_plan``: by id and
``version``): a row deleted meanwhile (a delete through the API commits
between the read and the write) or changed meanwhile (reconciliation marked it
failed with its reason) is skipped and named in the log, and the rest of the
snapshot is written. The row's own writer had the last word; the next resync
looks again.

Because the writes are conditional, the read needs no lock and no transaction
shared with the write: the server plans in a unit of its own and writes (under
SQLite's write lock) only when the plan has something to write, which an
unchanged host's has not (``HostManager._apply``). The read selects only the
columns compared, as plain values (``_Row``), not ORM objects: a forced resync
compares every host's rows, 5,000 on 100 hosts, and loading, comparing and
detaching them as ORM objects was most of its time (bench/virt_fleet_sweep.py).

How domains map to guest rows:

* a domain whose XML carries Fogmachine's mark (``<fogmachine:guest id=N>``)
  belongs to guest N; a domain with no mark belongs to the row of this host
  with its domain name, if there is one;
* a marked domain whose guest is gone, retired, or failed and cleaned up
  (``released``) gets no row and changes none: it is an orphan for
  reconciliation to remove, or a read taken just before the teardown, not
  someone else's domain;
* any other domain becomes a row with ``managed=False`` and no owner: shown to
  admins, never touched by Fogmachine, removed again when the domain goes;
* a managed guest whose domain is gone while its host answers becomes
  ``missing`` (never deleted: someone has to look at it); while the host is
  down its guests are ``unknown``; a guest still being provisioned, or
  waiting for its environment's earlier tiers (state ``undefined``), is left
  alone until its domain appears.

At about 410 lines this is one thing, the mapping of one host's snapshot onto
its rows: the plan and the conditional write share the row model and the
rules above, and neither is used without the other.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, GuestState, Host, HostState, Step, utcnow
from fogmachine.virt.inventory import DomainInfo, HostSnapshot

log = logging.getLogger(__name__)

# While a host is up its last_seen_at is refreshed when older than this, so an
# unchanged host does not write on every resync.
LAST_SEEN_SLACK = dt.timedelta(seconds=60)
# States that mean "we have no libvirt state for this guest": left as they are when the host goes down.
_NOT_LIVE = (GuestState.UNDEFINED, GuestState.UNKNOWN)

# The id of a row not inserted yet: every table's ids start at 1.
NEW = 0
_GUESTS = cast(Table, Guest.__table__)
_HOSTS = cast(Table, Host.__table__)
# The host columns a snapshot sets (besides state, state_reason and free memory), as HostFacts names them.
_FACTS = ("total_memory_mb", "cpus", "committed_memory_mb", "committed_vcpus", "guest_count",
          "hypervisor_type", "hypervisor_version")
# The guest columns a plan may change, in the order of _Row's fields that follow ``step``.
_PLANNED = ("domain_name", "host_id", "state", "uuid", "mac", "vnc_port", "ram_mb", "vcpus")
_READ = tuple(_GUESTS.c[name] for name in ("id", "version", "name", "managed", "step", *_PLANNED))
_HOST_READ = select(*(_HOSTS.c[name] for name in ("last_seen_at", "state", "state_reason", "free_memory_mb",
                                                    *_FACTS))).where(_HOSTS.c.id == bindparam("host_id"))
# In id order, so that two reads of unchanged rows compare equal (``Unchanged``), whichever plan the
# database picks; ``_ROWS_OF_HOSTS`` reads several hosts' rows at once (``plan_snapshots``).
_ROWS_OF_HOST = select(*_READ).where(_GUESTS.c.host_id == bindparam("host_id")).order_by(_GUESTS.c.id)
_HOSTS_READ = select(_HOSTS.c.id, *_HOST_READ.selected_columns).where(
    _HOSTS.c.id.in_(bindparam("host_ids", expanding=True)))
_ROWS_OF_HOSTS = select(*_READ).where(_GUESTS.c.host_id.in_(bindparam("host_ids", expanding=True))).order_by(
    _GUESTS.c.id)
_HOST_ID_AT = _READ.index(_GUESTS.c.host_id)
# What ``Unchanged`` compares: each row's id and version (every write raises the version), two columns
# instead of thirteen, so a fleet of unchanged hosts is rechecked on a light read.
_KEYS_OF_HOSTS = select(_GUESTS.c.host_id, _GUESTS.c.id, _GUESTS.c.version).where(
    _GUESTS.c.host_id.in_(bindparam("host_ids", expanding=True))).order_by(_GUESTS.c.id)
_ROWS_BY_ID = select(*_READ).where(_GUESTS.c.id.in_(bindparam("ids", expanding=True)))
_MAC_HOLDERS = select(_GUESTS.c.id, _GUESTS.c.mac).where(_GUESTS.c.mac.in_(bindparam("macs", expanding=True)))


@dataclass(slots=True, eq=False)
class _Row:
    """A guest row as a resync reads it (the columns it compares, plain values), or a new unmanaged one.

    The plan assigns to it as it decides; ``changes`` is what differs from the read. A new row has id
    ``NEW`` until it is inserted; identity, not equality, tells two rows apart (``_Macs`` holds new rows by
    object).
    """

    id: int
    version: int
    name: str
    managed: bool
    step: str
    domain_name: str | None
    host_id: int | None
    state: str
    uuid: str | None
    mac: str | None
    vnc_port: int | None
    ram_mb: int | None
    vcpus: int | None
    read: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self.read = self._planned()

    @property
    def new(self) -> bool:
        return self.id == NEW

    def _planned(self) -> tuple[Any, ...]:
        return (self.domain_name, self.host_id, self.state, self.uuid, self.mac, self.vnc_port, self.ram_mb,
                self.vcpus)

    def changes(self) -> dict[str, Any]:
        now = self._planned()
        if now == self.read:
            return {}
        return {key: value for key, value, was in zip(_PLANNED, now, self.read, strict=True) if value != was}

    def inserted(self) -> dict[str, Any]:
        """A new row's columns for the insert: what was set, the model's defaults for the rest."""
        values = {"name": self.name, "domain_name": self.domain_name, "managed": self.managed,
                  "host_id": self.host_id, "step": self.step, "state": self.state, "uuid": self.uuid,
                  "mac": self.mac, "vnc_port": self.vnc_port, "ram_mb": self.ram_mb, "vcpus": self.vcpus}
        return {key: value for key, value in values.items() if value is not None}


def released(guest: Guest | _Row) -> bool:
    """Torn down on purpose: retired, or failed with its parts removed (failure sets state ``undefined``).

    Whatever domain still carries such a guest's mark is a read from before the teardown or an orphan;
    neither may bring the row back to life.
    """
    return guest.step == Step.RETIRED or (guest.step == Step.FAILED and guest.state == GuestState.UNDEFINED)


def _set(obj: Any, attr: str, value: Any) -> int:
    """Assign only when different; 1 when it changed (so callers can count real writes)."""
    if getattr(obj, attr) != value:
        setattr(obj, attr, value)
        return 1
    return 0


def _fact_changes(host: Any, snapshot: HostSnapshot, free_slack_mb: int) -> dict[str, Any]:
    """The host columns ``snapshot`` changes in ``host`` (a row as read, or the ORM object)."""
    facts = snapshot.facts
    wanted = {"state": HostState.UP, "state_reason": "", **{attr: getattr(facts, attr) for attr in _FACTS}}
    changes = {attr: value for attr, value in wanted.items() if getattr(host, attr) != value}
    # Free memory on a real host moves by a few MiB all the time; only a real move is a change.
    moved = host.free_memory_mb - facts.free_memory_mb
    if moved and (changes or abs(moved) > free_slack_mb):
        changes["free_memory_mb"] = facts.free_memory_mb
    return changes


def _last_seen_due(last_seen_at: dt.datetime | None, seen_at: dt.datetime) -> bool:
    return last_seen_at is None or seen_at - last_seen_at > LAST_SEEN_SLACK


class _Macs:
    """Which guest holds which MAC (the column is unique): decided before assigning one."""

    def __init__(self, session: Session, domains: tuple[DomainInfo, ...], rows: list[_Row]) -> None:
        # The rows read hold their MACs (unique); only the others' holders are asked for.
        self.owner: dict[str, object] = {row.mac: row.id for row in rows if row.mac}
        wanted = {d.mac for d in domains if d.mac and d.mac not in self.owner}
        self.asked_others = bool(wanted)  # the plan then depends on rows of other hosts too
        if wanted:
            for guest_id, mac in session.execute(_MAC_HOLDERS, {"macs": sorted(wanted)}):
                if mac:
                    self.owner[mac] = guest_id

    def assign(self, guest: _Row, mac: str | None) -> int:
        if mac is None or guest.mac == mac:
            return 0
        holder = self.owner.get(mac)
        if holder is not None and holder is not guest and holder != guest.id:
            log.info("MAC %s of domain %s already belongs to guest %s; not recorded twice",
                     mac, guest.domain_name, holder)
            return 0
        if guest.mac is not None:
            self.owner.pop(guest.mac, None)
        guest.mac = mac
        self.owner[mac] = guest if guest.new else guest.id
        return 1


def _update_guest(guest: _Row, dom: DomainInfo, macs: _Macs) -> None:
    """What the domain says, set on its row: plain assignments, ``_Row.changes`` finds what differs."""
    guest.state, guest.uuid, guest.vnc_port = dom.state, dom.uuid, dom.vnc_port
    macs.assign(guest, dom.mac)
    if not guest.managed:
        guest.ram_mb, guest.vcpus = dom.current_memory_mb, dom.vcpus


@dataclass(frozen=True)
class RowWrite:
    """One guest row to change (``values``) or delete (``values`` None)."""

    guest_id: int
    version: int  # as read: the write is made only where the row still has it
    name: str
    values: dict[str, Any] | None


@dataclass(frozen=True, eq=False)
class Unchanged:
    """What a plan that changed no row was decided from: the snapshot's domains and the host's rows as read,
    each row by its id and version.

    The row writes are a function of the two alone when every domain's row and MAC holder is among the host's own
    rows (``plan_snapshot`` keeps one only then). So the next recheck of the same domains that finds the same
    rows at the same versions (every write raises a row's version: the ORM's version_id_col, and the bulk
    writes here by hand) needs no planning: it changes no row either. The keys are still read and compared
    every time, and the host row's facts decided again; only the full rows' read and the Python work of
    planning them are saved, which were most of a forced resync's cost (bench/virt_fleet_sweep.py).
    """

    domains: tuple[DomainInfo, ...]
    keys: list[tuple[int, int]]

    def holds_for(self, domains: tuple[DomainInfo, ...], keys: list[tuple[int, int]]) -> bool:
        return (self.domains is domains or self.domains == domains) and self.keys == keys


@dataclass
class Plan:
    """What a snapshot changes in the rows, decided from one read of them.

    Writing it (``write_plan``) touches each row only where it is still as read: a row
    deleted (or changed) since is skipped, never the whole host's resync failed. The host
    row's own changes (``facts``, ``last_seen_due``) are decided again on the write's read.
    """

    host_id: int
    snapshot: HostSnapshot
    seen_at: dt.datetime
    free_slack_mb: int
    writes: list[RowWrite] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    changes: int = 0
    facts: dict[str, Any] = field(default_factory=dict)
    last_seen_due: bool = False
    unchanged: Unchanged | None = None  # set when the next recheck may skip the planning (see Unchanged)

    @property
    def writes_anything(self) -> bool:
        """False for an unchanged host seen lately: then no write unit (nor SQLite's write lock) is needed."""
        return bool(self.writes or self.inserts or self.facts or self.last_seen_due)


@dataclass(frozen=True)
class Applied:
    """How a plan went: ``changes`` written, ``skipped`` rows that had changed or gone since the read."""

    changes: int
    skipped: tuple[str, ...] = ()


def plan_snapshot(session: Session, host_id: int, snapshot: HostSnapshot, *, seen_at: dt.datetime | None = None,
                  free_slack_mb: int = 0, unchanged: Unchanged | None = None) -> Plan | None:
    """Read the host's rows and decide what ``snapshot`` changes in them; writes nothing.

    None when the host row is gone (removed from virthosts.conf meanwhile). ``unchanged``: the last plan's
    ``unchanged``, if any; when the same snapshot meets the same rows again, the planning is skipped.
    """
    host = session.execute(_HOST_READ, {"host_id": host_id}).first()
    if host is None:
        return None
    read = [tuple(row) for row in session.execute(_ROWS_OF_HOST, {"host_id": host_id})]
    return _plan_from(session, host, read, _keys(read), PlanRequest(host_id, snapshot, seen_at, free_slack_mb,
                                                                    unchanged))


def _keys(read: list[tuple[Any, ...]]) -> list[tuple[int, int]]:
    """The (id, version) of each row as read (``_READ`` begins with them)."""
    return [(row[0], row[1]) for row in read]


@dataclass(frozen=True)
class PlanRequest:
    """One host's snapshot to plan, as ``plan_snapshot`` takes it (``plan_snapshots`` takes several)."""

    host_id: int
    snapshot: HostSnapshot
    seen_at: dt.datetime | None = None
    free_slack_mb: int = 0
    unchanged: Unchanged | None = None


def plan_snapshots(session: Session, requests: list[PlanRequest]) -> list[Plan | None]:
    """``plan_snapshot`` for several hosts in one unit of work, in the order asked: what the hosts' many
    rechecks at once cost (every host after a restart of the server, each DB_RECHECK). Two light queries
    (their host rows; their guest rows' ids and versions), and the full rows only of the hosts whose
    ``Unchanged`` no longer holds."""
    ids = sorted({r.host_id for r in requests})
    hosts = {row.id: row for row in session.execute(_HOSTS_READ, {"host_ids": ids})}
    keys: dict[int, list[tuple[int, int]]] = {host_id: [] for host_id in ids}
    for host_id, guest_id, version in session.execute(_KEYS_OF_HOSTS, {"host_ids": ids}).all():
        keys[host_id].append((guest_id, version))
    stale = sorted({r.host_id for r in requests if r.host_id in hosts
                    and not (r.unchanged is not None and r.unchanged.holds_for(r.snapshot.domains, keys[r.host_id]))})
    rows: dict[int, list[tuple[Any, ...]]] = {host_id: [] for host_id in stale}
    if stale:
        for row in session.execute(_ROWS_OF_HOSTS, {"host_ids": stale}).all():
            rows[row[_HOST_ID_AT]].append(tuple(row))
    return [_plan_from(session, hosts[r.host_id], rows.get(r.host_id), keys[r.host_id], r) if r.host_id in hosts
            else None for r in requests]


def _plan_from(session: Session, host: Any, read: list[tuple[Any, ...]] | None, keys: list[tuple[int, int]],
               request: PlanRequest) -> Plan:
    """The plan from the host row and its guest rows' keys; ``read``, the full rows, is None only where the
    request's ``Unchanged`` holds for the keys (then the rows need no planning)."""
    plan = Plan(request.host_id, request.snapshot, request.seen_at or utcnow(), request.free_slack_mb)
    if request.unchanged is not None and request.unchanged.holds_for(request.snapshot.domains, keys):
        plan.unchanged = request.unchanged
    else:
        assert read is not None
        _plan_rows(session, plan, read)
    plan.facts = _fact_changes(host, request.snapshot, request.free_slack_mb)
    plan.last_seen_due = _last_seen_due(host.last_seen_at, plan.seen_at)
    return plan


def _plan_rows(session: Session, plan: Plan, read: list[tuple[Any, ...]]) -> None:
    """Decide the row writes and inserts of ``plan`` from the host's rows as ``read``."""
    host_id, snapshot = plan.host_id, plan.snapshot
    rows = [_Row(*row) for row in read]
    loaded = list(rows)
    by_id = {g.id: g for g in rows}
    by_name = {g.domain_name: g for g in rows}
    marked_elsewhere = {d.guest_id for d in snapshot.domains if d.guest_id and d.guest_id not in by_id}
    if marked_elsewhere:
        for row in session.execute(_ROWS_BY_ID, {"ids": sorted(marked_elsewhere)}):
            guest = _Row(*row)
            by_id[guest.id] = guest
            loaded.append(guest)
    macs = _Macs(session, snapshot.domains, loaded)
    gone: dict[int, _Row] = {}
    new: list[_Row] = []

    seen: set[int] = set()
    for dom in snapshot.domains:
        match = _match(host_id, dom, by_id, by_name, gone)
        if match is None:
            continue
        if match.new:  # a new unmanaged row
            _update_guest(match, dom, macs)
            new.append(match)
            continue
        seen.add(match.id)
        if released(match):
            continue
        _update_guest(match, dom, macs)

    for guest in rows:
        if guest.id in seen or released(guest) or guest.id in gone:
            continue
        if not guest.managed:
            gone[guest.id] = guest  # someone else's domain went away: so does its mirror
        elif guest.state != GuestState.UNDEFINED:
            _set(guest, "state", GuestState.MISSING)

    for guest in gone.values():
        plan.writes.append(RowWrite(guest.id, guest.version, guest.name, None))
    for guest in loaded:
        if guest.id in gone:
            continue
        values = guest.changes()
        if values:
            plan.writes.append(RowWrite(guest.id, guest.version, guest.name, values))
    plan.inserts = [guest.inserted() for guest in new]
    plan.changes = len(plan.writes) + len(plan.inserts)
    if not plan.changes and not marked_elsewhere and not macs.asked_others:
        plan.unchanged = Unchanged(snapshot.domains, _keys(read))


def write_plan(session: Session, plan: Plan) -> Applied:
    """Write ``plan``: host facts, then each row only where it is still as the plan read it."""
    host = session.get(Host, plan.host_id)
    if host is None:
        return Applied(0)
    facts = _fact_changes(host, plan.snapshot, plan.free_slack_mb)
    for attr, value in facts.items():
        setattr(host, attr, value)
    changes = len(facts)
    if facts:
        session.flush()  # the host row first, then its guests': the order every resync locks them in
    skipped: list[str] = []
    # Deletions first: a row moved here may take the name of a mirror row that goes.
    for write in sorted(plan.writes, key=lambda w: (w.values is not None, w.guest_id)):
        as_read = (_GUESTS.c.id == write.guest_id) & (_GUESTS.c.version == write.version)
        if write.values is None:
            statement: Any = delete(_GUESTS).where(as_read)
        else:
            statement = update(_GUESTS).where(as_read).values(**write.values, version=write.version + 1,
                                                               updated_at=utcnow())
        result = cast(CursorResult[Any], session.execute(statement))
        if result.rowcount == 1:
            changes += 1
        else:  # deleted or changed since the read: its own writer's word stands; the next resync looks again
            skipped.append(write.name)
    for values in plan.inserts:
        session.add(Guest(**values))
        changes += 1
    if skipped:
        log.info("host %s: %d row(s) changed or went while being resynced; left as they are: %s",
                 plan.host_id, len(skipped), ", ".join(skipped[:10]))
    if changes or _last_seen_due(host.last_seen_at, plan.seen_at):
        host.last_seen_at = plan.seen_at
    return Applied(changes, tuple(skipped))


def apply_snapshot(session: Session, host_id: int, snapshot: HostSnapshot, *, seen_at: dt.datetime | None = None,
                   free_slack_mb: int = 0) -> Applied:
    """Make the host row and its guest rows match ``snapshot`` in one unit: ``plan_snapshot`` then ``write_plan``."""
    plan = plan_snapshot(session, host_id, snapshot, seen_at=seen_at, free_slack_mb=free_slack_mb)
    if plan is None or not plan.writes_anything:
        return Applied(0)
    return write_plan(session, plan)


def _match(host_id: int, dom: DomainInfo, by_id: dict[int, _Row], by_name: dict[str | None, _Row],
           gone: dict[int, _Row]) -> _Row | None:
    """The row for ``dom``: by Fogmachine's mark, else by name on this host, else a new unmanaged row
    (the plan inserts it). A mirror row in the way of a moved guest goes to ``gone``."""
    if dom.guest_id is not None:
        guest = by_id.get(dom.guest_id)
        if guest is not None and guest.managed and guest.uuid and dom.uuid and guest.uuid != dom.uuid:
            # The mark names this row but the UUID is another guest's: a read taken before an older
            # guest of the same id was deleted (SQLite reuses ids). Not this row's domain; the next
            # resync no longer sees it.
            log.info("host %s: domain %s is marked for guest %s but its UUID differs; not that guest's",
                     host_id, dom.name, guest.id)
            return None
        if guest is not None and guest.managed and not released(guest):
            if guest.host_id == host_id:
                if guest.domain_name != dom.name and dom.name not in by_name:
                    by_name.pop(guest.domain_name or "", None)
                    guest.domain_name = dom.name  # renamed behind our back
                    by_name[dom.name] = guest
                return guest
            if guest.host_id is None or guest.state in (GuestState.MISSING, GuestState.UNDEFINED,
                                                         GuestState.UNKNOWN):
                clash = by_name.get(dom.name)
                if clash is not None and clash is not guest:
                    if clash.managed:
                        log.warning("host %s: domain %s is marked for guest %s but guest %s has that name here",
                                    host_id, dom.name, guest.id, clash.id)
                        return clash
                    gone[clash.id] = clash
                log.info("guest %s (%s) found on host %s: moved", guest.id, guest.name, host_id)
                guest.host_id = host_id
                guest.domain_name = dom.name
                by_name[dom.name] = guest
                return guest
            log.warning("host %s: domain %s is marked for guest %s, which lives on host %s; shown as is",
                        host_id, dom.name, guest.id, guest.host_id)
        elif guest is None or released(guest):
            # Fogmachine made it but its guest is gone: not someone else's domain to mirror, an
            # orphan that reconciliation removes (or a read taken just before a delete undefined it).
            log.debug("host %s: domain %s belongs to guest %s, which is gone", host_id, dom.name, dom.guest_id)
            return None
    existing = by_name.get(dom.name)
    if existing is not None:
        return existing
    guest = _Row(id=NEW, version=0, name=dom.name[:63], managed=False, step=Step.READY, domain_name=dom.name,
                 host_id=host_id, state=dom.state, uuid=None, mac=None, vnc_port=None, ram_mb=None, vcpus=None)
    by_name[dom.name] = guest
    return guest


def apply_down(session: Session, host_id: int, reason: str, *, last_seen_at: dt.datetime | None = None) -> int:
    """Mark the host down with ``reason`` and its guests' state unknown."""
    host = session.get(Host, host_id)
    if host is None:
        return 0
    changes = _set(host, "state", HostState.DOWN) + _set(host, "state_reason", reason[:2000])
    if last_seen_at is not None and (host.last_seen_at is None or last_seen_at > host.last_seen_at):
        host.last_seen_at = last_seen_at
        changes += 1
    result = cast(CursorResult[Any], session.execute(
        update(Guest)
        .where(Guest.host_id == host_id, Guest.step != Step.RETIRED, Guest.state.not_in(_NOT_LIVE))
        .values(state=GuestState.UNKNOWN, updated_at=utcnow(), version=Guest.version + 1)
        .execution_options(synchronize_session=False)
    ))
    return changes + (result.rowcount or 0)
