"""Applying host snapshots to rows: only real changes are written; down hosts make guests unknown."""

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from fogmachine.db import migrate
from fogmachine.db.models import Guest, GuestState, Host, Step, utcnow
from fogmachine.db.session import Database
from fogmachine.services import hoststate
from fogmachine.virt.inventory import DomainInfo, HostFacts, HostSnapshot
from tests.support.apiclient import make_api  # noqa: F401  (a fixture: pytest finds it by name)


def dom(name, state="running", *, mac=None, guest_id=None, memory=512, vcpus=1, vnc=None, uuid=None):
    return DomainInfo(name=name, uuid=uuid or f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
                      state=state, domain_id=1 if state in ("running", "paused") else -1, memory_mb=memory,
                      current_memory_mb=memory, vcpus=vcpus, macs=(mac,) if mac else (), vnc_port=vnc,
                      guest_id=guest_id)


def snap(*domains, free=4096):
    return HostSnapshot(HostFacts(total_memory_mb=8192, free_memory_mb=free, cpus=4, committed_memory_mb=512,
                                  committed_vcpus=1, guest_count=len(domains), hypervisor_type="QEMU",
                                  hypervisor_version="7.2.0"), tuple(domains))


@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    with database.session() as s:
        s.add(Host(name="h", uri="test:///h", virt_type="test"))
    yield database
    database.dispose()


def host_id(db):
    with db.session() as s:
        return s.scalar(select(Host.id).where(Host.name == "h"))


def apply(db, snapshot, **kwargs):
    with db.session() as s:
        return hoststate.apply_snapshot(s, host_id(db), snapshot, **kwargs).changes


def test_unchanged_snapshot_writes_nothing(db):
    first = snap(dom("a", mac="52:54:00:00:00:01", vnc=5900), dom("b", "shutoff"))
    assert apply(db, first) > 0
    with db.session() as s:
        stamps = [(r.id, r.updated_at) for r in s.scalars(select(Guest))]
        stamps.append(("host", s.scalar(select(Host.updated_at))))
    assert apply(db, first) == 0
    # free memory wobbling within the slack is not a change either
    assert apply(db, snap(*first.domains, free=4100), free_slack_mb=32) == 0
    with db.session() as s:
        again = [(r.id, r.updated_at) for r in s.scalars(select(Guest))]
        again.append(("host", s.scalar(select(Host.updated_at))))
        assert s.scalar(select(Host.free_memory_mb)) == 4096
    assert again == stamps
    assert apply(db, snap(*first.domains, free=5000), free_slack_mb=32) == 1


def plan(db, snapshot, unchanged=None):
    with db.session() as s:
        return hoststate.plan_snapshot(s, host_id(db), snapshot, unchanged=unchanged)


def test_a_recheck_of_the_same_domains_over_the_same_rows_skips_the_planning_but_not_a_change(db):
    first = snap(dom("a", mac="52:54:00:00:00:01", vnc=5900), dom("b", "shutoff"))
    apply(db, first)
    checked = plan(db, first)
    assert checked.unchanged is not None and not checked.writes and not checked.inserts
    # Another snapshot object with the same domains (free memory moved): the rows are not planned again,
    # the host row's facts are.
    again = plan(db, snap(*first.domains, free=3000), checked.unchanged)
    assert again.unchanged is checked.unchanged and not again.writes and again.facts == {"free_memory_mb": 3000}
    # Someone else changed a row: its version moved, so the rows are planned, and the domain's state wins.
    with db.session() as s:
        s.scalar(select(Guest).where(Guest.name == "a")).state = GuestState.PAUSED
    fixed = plan(db, first, checked.unchanged)
    assert [w.values for w in fixed.writes] == [{"state": GuestState.RUNNING}] and fixed.unchanged is None
    # Different domains over the same rows: planned too.
    moved = plan(db, snap(dom("a", mac="52:54:00:00:00:01", vnc=5901), dom("b", "shutoff")), checked.unchanged)
    assert [w.values for w in moved.writes] == [{"state": GuestState.RUNNING, "vnc_port": 5901}]


def test_a_plan_that_asked_for_other_hosts_rows_is_not_kept(db):
    """A MAC that another host's row holds makes the plan depend on rows this recheck does not read."""
    with db.session() as s:
        other = Host(name="other", uri="test:///other", virt_type="test")
        s.add(other)
        s.flush()
        s.add(Guest(name="elsewhere", domain_name="elsewhere", managed=False, host_id=other.id, step=Step.READY,
                    state=GuestState.RUNNING, mac="52:54:00:00:00:09"))
    snapshot = snap(dom("a", mac="52:54:00:00:00:09"))
    apply(db, snapshot)
    checked = plan(db, snapshot)
    assert not checked.writes and checked.unchanged is None


def test_host_facts_and_unmanaged_rows(db):
    apply(db, snap(dom("a", mac="52:54:00:00:00:01", vnc=5901, memory=1024, vcpus=2)))
    with db.session() as s:
        host = s.scalar(select(Host).where(Host.name == "h"))
        assert (host.state, host.hypervisor_type, host.hypervisor_version, host.guest_count) == ("up", "QEMU",
                                                                                              "7.2.0", 1)
        guest = s.scalar(select(Guest))
        assert (guest.name, guest.managed, guest.owner_id, guest.live_name) == ("a", False, None, None)
        assert (guest.mac, guest.vnc_port, guest.ram_mb, guest.vcpus) == ("52:54:00:00:00:01", 5901, 1024, 2)


def test_down_host_makes_guests_unknown_and_back(db):
    hid = host_id(db)
    with db.session() as s:
        s.add(Guest(name="prov", live_name="prov", domain_name="prov", host_id=hid, step=Step.DEFINING))
        s.add(Guest(name="old", domain_name="old", host_id=hid, step=Step.RETIRED, state=GuestState.UNDEFINED))
    apply(db, snap(dom("a"), dom("b", "shutoff")))
    seen = (utcnow() + dt.timedelta(seconds=5)).replace(microsecond=0)  # forward only; MariaDB keeps seconds
    with db.session() as s:
        assert hoststate.apply_down(s, hid, "connection lost", last_seen_at=seen) > 0
    with db.session() as s:
        host = s.scalar(select(Host).where(Host.name == "h"))
        assert (host.state, host.state_reason, host.last_seen_at) == ("down", "connection lost", seen)
        states = {g.name: g.state for g in s.scalars(select(Guest))}
    # provisioning and retired guests have no libvirt state to lose
    assert states == {"a": "unknown", "b": "unknown", "prov": "undefined", "old": "undefined"}
    with db.session() as s:
        assert hoststate.apply_down(s, hid, "connection lost", last_seen_at=seen) == 0
    apply(db, snap(dom("a"), dom("b", "shutoff")))
    with db.session() as s:
        assert {g.name: g.state for g in s.scalars(select(Guest))}["a"] == "running"
        assert s.scalar(select(Host.state)) == "up"


def test_a_guest_waiting_for_its_tier_has_no_domain_to_miss(db):
    """An environment's later tier holds its host's capacity before it has a domain: neither missing nor
    unknown, whatever the host says or does."""
    hid = host_id(db)
    with db.session() as s:
        s.add(Guest(name="lab1-web1", live_name="lab1-web1", domain_name=None, host_id=hid, step=Step.WAITING,
                    state=GuestState.UNDEFINED))
    apply(db, snap(dom("a")))
    with db.session() as s:
        hoststate.apply_down(s, hid, "connection lost")
    apply(db, snap(dom("a")))
    with db.session() as s:
        guest = s.scalar(select(Guest).where(Guest.name == "lab1-web1"))
        assert (guest.step, guest.state, guest.domain_name) == (Step.WAITING, GuestState.UNDEFINED, None)


def test_missing_managed_and_vanished_unmanaged(db):
    hid = host_id(db)
    with db.session() as s:
        s.add(Guest(name="mine", live_name="mine", domain_name="mine", host_id=hid, step=Step.READY,
                    state=GuestState.RUNNING))
    apply(db, snap(dom("mine"), dom("theirs")))
    apply(db, snap())
    with db.session() as s:
        rows = {g.name: g for g in s.scalars(select(Guest))}
    assert set(rows) == {"mine"}
    assert rows["mine"].state == GuestState.MISSING


def test_mark_moves_a_missing_guest_to_the_host_where_it_appears(db):
    with db.session() as s:
        other = Host(name="other", uri="test:///o", virt_type="test")
        s.add(other)
        s.flush()
        guest = Guest(name="mig", live_name="mig", domain_name="mig", host_id=other.id, step=Step.READY,
                      state=GuestState.MISSING)
        s.add(guest)
        s.flush()
        gid = guest.id
    apply(db, snap(dom("mig", guest_id=gid)))
    with db.session() as s:
        guest = s.get(Guest, gid)
        assert (guest.host_id, guest.state, guest.managed) == (host_id(db), "running", True)
        assert s.scalar(select(Guest.id).where(Guest.managed.is_(False))) is None


def test_mark_of_a_gone_guest_gets_no_row(db):
    """Fogmachine's own orphan (or a read from just before a delete) is not mirrored as someone
    else's domain; reconciliation removes it."""
    apply(db, snap(dom("orphan", guest_id=999), dom("foreign")))
    with db.session() as s:
        assert [(g.name, g.managed) for g in s.scalars(select(Guest))] == [("foreign", False)]


def test_stale_domain_of_an_older_guest_with_the_same_id_is_not_matched(db):
    """SQLite reuses a deleted row's id: a read taken before the old guest's domain went must
    not rewrite the new guest that now has that id."""
    hid = host_id(db)
    new_uuid = "11111111-2222-4333-8444-555555555555"
    with db.session() as s:
        guest = Guest(name="new", live_name="new", domain_name="new", host_id=hid, step=Step.DEFINING,
                      state=GuestState.UNDEFINED, uuid=new_uuid)
        s.add(guest)
        s.flush()
        gid = guest.id
    apply(db, snap(dom("old", guest_id=gid, uuid="99999999-2222-4333-8444-555555555555")))
    with db.session() as s:
        guest = s.get(Guest, gid)
        assert (guest.domain_name, guest.uuid, guest.state) == ("new", new_uuid, GuestState.UNDEFINED)
    apply(db, snap(dom("new", guest_id=gid, uuid=new_uuid)))
    with db.session() as s:
        assert s.get(Guest, gid).state == GuestState.RUNNING


def test_read_from_before_a_teardown_does_not_revive_a_failed_guest(db):
    """Reconciliation tears a stuck guest down and marks it failed; a resync that read the host just
    before the teardown must not set the row running again (the next read would then call it missing
    and hide the real reason)."""
    hid = host_id(db)
    with db.session() as s:
        guest = Guest(name="silent", live_name="silent", domain_name="silent", host_id=hid, step=Step.FAILED,
                      step_reason="did not phone home within 600 s", state=GuestState.UNDEFINED)
        s.add(guest)
        s.flush()
        gid = guest.id
    apply(db, snap(dom("silent", guest_id=gid)))
    apply(db, snap())
    with db.session() as s:
        guest = s.get(Guest, gid)
        assert (guest.step, guest.state, guest.step_reason) == (Step.FAILED, GuestState.UNDEFINED,
                                                                "did not phone home within 600 s")
        assert s.scalar(select(Guest.id).where(Guest.managed.is_(False))) is None


def test_a_failed_guest_whose_domain_is_still_tracked_keeps_its_state(db):
    """A failed guest with a live state (not yet cleaned up) still follows its domain."""
    hid = host_id(db)
    with db.session() as s:
        guest = Guest(name="f", live_name="f", domain_name="f", host_id=hid, step=Step.FAILED,
                      state=GuestState.RUNNING)
        s.add(guest)
        s.flush()
        gid = guest.id
    apply(db, snap(dom("f", "paused", guest_id=gid)))
    with db.session() as s:
        assert s.get(Guest, gid).state == GuestState.PAUSED


# -- through the running server: resyncs while guests are deleted -------------------------------------

UNIT = {"virt_type": "kvm", "ram_mb": 256, "vcpus": 1, "boot": "network", "network": "user"}


async def test_resyncs_survive_many_concurrent_deletes_through_the_api(database_url, make_api,  # noqa: F811
                                                                      tmp_path, caplog):
    """Issue 11: with 120 concurrent deletes, resyncs failed by the hundred (StaleDataError: a row
    deleted between the resync's read and its write) and each rolled back the host's whole snapshot.
    Each row is now written only where it still is; one that went is skipped, the rest is written."""
    import asyncio
    import logging

    from tests.support import provisioning as pv

    caplog.set_level(logging.INFO, logger="fogmachine")
    catalog = pv.write_catalog(tmp_path / "catalog.conf", {"unit": UNIT})
    api = await make_api(hosts={"h1": {"cpus": 64, "memory_mb": 262144}}, database_connection=database_url,
                         local_catalog=str(catalog))
    ctx = api.srv.ctx
    count = 60
    made = await asyncio.gather(*(api.call("POST", "/api/v1/guests", body={
        "name": f"del{i}", "target": "unit", "days": 1, "purpose": "resync race"}) for i in range(count)))
    assert {r.code for r in made} == {202}, [r.json for r in made if r.code != 202][:3]
    await pv.settle(ctx)
    ids = [r.json["id"] for r in made]
    assert {g.step for g in pv.guests(ctx)} == {Step.READY}
    conn = ctx.hosts.get("h1")
    await conn.resync()
    # The host stays up throughout: a resync that skipped a row must not pass for the host coming back
    # (that ran the host-up hooks, e.g. a disk-boot retry racing the caller's own).
    came_up: list[str] = []
    ctx.hosts.on_up.append(came_up.append)

    done = asyncio.Event()

    async def resync_all_along() -> int:
        rounds = 0
        while not done.is_set():
            await conn.resync()
            rounds += 1
        return rounds

    resyncer = asyncio.ensure_future(resync_all_along())
    deleted = await asyncio.gather(*(api.call("DELETE", f"/api/v1/guests/{gid}") for gid in ids))
    done.set()
    rounds = await resyncer
    assert {r.code for r in deleted} == {204}, [r.json for r in deleted if r.code != 204][:3]
    await conn.resync()

    failures = [r.getMessage() for r in caplog.records if "resync failed" in r.getMessage()]
    assert failures == [], failures[:3]
    skipped = [r for r in caplog.records if "changed or went while being resynced" in r.getMessage()]
    print(f"\n{database_url.split(':')[0]}: {rounds} resyncs during {count} deletes, {len(skipped)} skipped a row")
    assert came_up == []
    live = ctx.db.run_sync(lambda s: s.scalars(select(Guest.name).where(Guest.step != Step.RETIRED)).all())
    assert live == []
    assert {d.name for d in await conn.list_domains()} & {f"del{i}" for i in range(count)} == set()
    host = pv.host_row(ctx, "h1")
    assert host.state == "up" and host.guest_count == 0


def _plans_equal(a, b):
    """Two plans decide the same writes (the snapshot objects and read times aside)."""
    if a is None or b is None:
        return a is b
    return ((a.host_id, a.writes, a.inserts, a.changes, a.facts, a.last_seen_due, a.unchanged is not None)
            == (b.host_id, b.writes, b.inserts, b.changes, b.facts, b.last_seen_due, b.unchanged is not None))


def test_several_hosts_planned_in_one_unit_decide_what_each_would_alone(db):
    """plan_snapshots (the fleet's rechecks together) is plan_snapshot per host: same writes, same inserts, the
    same Unchanged skip; a host row gone is None; asked order kept."""
    with db.session() as s:
        s.add(Host(name="h2", uri="test:///h2", virt_type="test"))
    with db.session() as s:
        h1, h2 = host_id(db), s.scalar(select(Host.id).where(Host.name == "h2"))
    one = snap(dom("a", mac="52:54:00:00:00:01", vnc=5900), dom("b", "shutoff"))
    two = snap(dom("c", mac="52:54:00:00:00:03"))
    with db.session() as s:
        hoststate.apply_snapshot(s, h1, one)
        hoststate.apply_snapshot(s, h2, two)
    changed = snap(dom("a", "paused", mac="52:54:00:00:00:01", vnc=5900), dom("new", "running"))
    with db.session() as s:
        alone = [hoststate.plan_snapshot(s, h2, two), hoststate.plan_snapshot(s, h1, changed),
                 hoststate.plan_snapshot(s, 9999, two)]
        together = hoststate.plan_snapshots(s, [hoststate.PlanRequest(h2, two), hoststate.PlanRequest(h1, changed),
                                                hoststate.PlanRequest(9999, two)])
    assert together[2] is None and together[1].writes and together[1].inserts and together[0].unchanged is not None
    assert all(_plans_equal(a, b) for a, b in zip(alone, together, strict=True))
    # The Unchanged of a plan made alone lets the batched plan skip its rows, and the other way round.
    with db.session() as s:
        again = hoststate.plan_snapshots(s, [hoststate.PlanRequest(h2, two, unchanged=alone[0].unchanged)])
    assert again[0].unchanged is alone[0].unchanged
    # A row changed by another writer (its version raised): the keys differ, the rows are read and planned.
    with db.session() as s:
        row = s.scalar(select(Guest).where(Guest.name == "c"))
        row.state = GuestState.SHUTOFF
    with db.session() as s:
        moved = hoststate.plan_snapshots(s, [hoststate.PlanRequest(h2, two, unchanged=alone[0].unchanged)])
    assert moved[0].unchanged is not alone[0].unchanged
    assert [w.values for w in moved[0].writes] == [{"state": GuestState.RUNNING}]


async def test_plans_asked_at_once_share_units_of_work(db):
    """hostwatch.PlanBatches: what comes within the first request's window goes in one unit; what comes after it
    started, in the next."""
    from fogmachine.services.hostwatch import PlanBatches

    with db.session() as s:
        s.add_all(Host(name=f"m{i}", uri=f"test:///m{i}", virt_type="test") for i in range(20))
    with db.session() as s:
        ids = list(s.scalars(select(Host.id).where(Host.name.like("m%")).order_by(Host.id)))
    batches = PlanBatches(db)
    requests = [hoststate.PlanRequest(i, snap(dom(f"d{n}", mac=f"52:54:00:00:01:{n:02x}"))) for n, i in enumerate(ids)]
    first = [asyncio.ensure_future(batches.plan(r)) for r in requests[:5]]
    await asyncio.sleep(0)
    first += [asyncio.ensure_future(batches.plan(r)) for r in requests[5:10]]  # within the window: same unit
    while batches.units == 0:  # the first unit has taken them (its window over)
        await asyncio.sleep(0.001)
    later = [asyncio.ensure_future(batches.plan(r)) for r in requests[10:]]
    plans = await asyncio.gather(*first, *later)
    assert [p.host_id for p in plans] == ids and all(len(p.inserts) == 1 for p in plans)
    assert batches.units == 2
    lone = await batches.plan(requests[0])
    assert lone.inserts and batches.units == 3
