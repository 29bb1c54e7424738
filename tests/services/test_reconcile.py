"""Reconciliation on a running server with test-driver hosts (and the real Cobbler), on each database."""

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select, update

from fogmachine.db.models import AuditEvent, Guest, GuestState, Host, Step, TargetKind, TaskLease, User, utcnow
from fogmachine.services import leases, reconcile
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import cobbler as cobbler_support


async def domains(srv, host="h1"):
    return {d.name for d in await srv.ctx.hosts.get(host).list_domains()}


async def define(srv, name, guest_id, host="h1", start=True):
    conn = srv.ctx.hosts.get(host)
    await conn.define(build_domain_xml(DomainSpec(name=name, memory_mb=256, vcpus=1, domain_type="test",
                                                  guest_id=guest_id)))
    if start:
        await conn.start(name)


def add_guest(session, name, *, step, worker="", created_at=None, state=GuestState.UNDEFINED, **kw):
    owner = session.scalar(select(User).where(User.username == "ann"))
    if owner is None:
        owner = User(username="ann")
        session.add(owner)
    host = session.scalar(select(Host).where(Host.name == "h1"))
    kw.setdefault("domain_name", name)
    guest = Guest(name=name, live_name=name, owner=owner, host=host, step=step, worker=worker,
                  state=state, ram_mb=256, vcpus=1, created_at=created_at or utcnow(),
                  expires_at=utcnow() + dt.timedelta(days=1), **kw)
    session.add(guest)
    session.flush()
    return guest.id


async def test_orphan_domain_with_our_mark_is_removed_foreign_one_kept(database_url, make_config, start_server):
    srv = await start_server(make_config(database_connection=database_url))
    await srv.tasks.wait_started()
    await define(srv, "ghost", guest_id=4242)           # ours, but its guest is gone
    await define(srv, "someone-else", guest_id=None)    # not ours: never touched
    report = await reconcile.reconcile(srv.ctx)
    assert report.orphan_domains == ["h1/ghost"]
    names = await domains(srv)
    assert "ghost" not in names and "someone-else" in names
    audits = await srv.ctx.db.run(lambda s: s.scalars(select(AuditEvent.message).where(
        AuditEvent.action == "domain.reconcile")).all())
    assert audits == ["domain ghost on h1 belonged to guest 4242, which is gone: removed"]
    assert not await reconcile.reconcile(srv.ctx)  # nothing left to repair


async def test_an_orphan_domain_goes_with_the_volume_checkout_made_for_it(database_url, make_config, start_server,
                                                                          tmp_path):
    """No row names the volume any more: the one at NAME.qcow2 in the default pool is recognised as made for
    the domain and deleted with it; a disk of another name (someone's shared image) is left alone."""
    from tests.support.hostfleet import write_pool_host

    uri = write_pool_host(tmp_path / "hosts", "h1", tmp_path / "pool", memory_mb=8192)
    srv = await start_server(make_config(hosts={"h1": uri}, database_connection=database_url))
    await srv.tasks.wait_started()
    conn = srv.ctx.hosts.get("h1")
    own = await conn.create_volume("ghost2", 1)
    shared = await conn.create_volume("shared", 1)
    for name, disk, gid in (("ghost2", own, 4343), ("ghost3", shared, 4344)):
        await conn.define(build_domain_xml(DomainSpec(name=name, memory_mb=128, vcpus=1, domain_type="test",
                                                      guest_id=gid, disk_path=disk)))
    report = await reconcile.reconcile(srv.ctx)
    assert sorted(report.orphan_domains) == ["h1/ghost2", "h1/ghost3"]
    volumes = await conn._call(lambda c: c.storagePoolLookupByName("default").listVolumes(), action="list")
    assert volumes == ["shared.qcow2"]


async def test_interrupted_and_timed_out_provisioning_undone(database_url, make_config, start_server):
    srv = await start_server(make_config(provision_timeout="600", database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    dead = await ctx.db.run(add_guest, "halfway", step=Step.BOOTING, worker="gone-host:1:abc")
    await define(srv, "halfway", guest_id=dead)
    alive_worker = ctx.process_id
    busy = await ctx.db.run(add_guest, "inflight", step=Step.DEFINING, worker=alive_worker)
    late = await ctx.db.run(add_guest, "silent", step=Step.INSTALLING, state=GuestState.RUNNING,
                            created_at=utcnow() - dt.timedelta(seconds=601))
    await define(srv, "silent", guest_id=late)
    fresh = await ctx.db.run(add_guest, "patient", step=Step.INSTALLING, state=GuestState.RUNNING)
    await define(srv, "patient", guest_id=fresh)

    report = await reconcile.reconcile(ctx)
    assert sorted(report.failed_provisioning) == ["halfway", "silent"]
    rows = {g.name: g for g in await ctx.db.run(lambda s: s.scalars(select(Guest)).all())}
    assert rows["halfway"].step == Step.FAILED
    assert "the Fogmachine process doing it stopped" in rows["halfway"].step_reason
    assert rows["silent"].step == Step.FAILED and "did not phone home within 600 s" in rows["silent"].step_reason
    assert rows["inflight"].step == Step.DEFINING  # its process is alive
    assert rows["patient"].step == Step.INSTALLING
    names = await domains(srv)
    assert "halfway" not in names and "silent" not in names and "patient" in names
    assert busy and not (await reconcile.reconcile(ctx)).failed_provisioning


async def test_a_process_never_takes_itself_for_dead(database_url, make_config, start_server):
    """Issue 11, found under load: a burst of 200 checkouts kept the heartbeat waiting for the database
    pool until its lease lapsed, and the process's own "interrupted" task then failed one of its own
    guests (claimed, not yet handed to a provisioning task). The lease here lapses as it did there."""
    srv = await start_server(make_config(database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    me = ctx.process_id
    mine = await ctx.db.run(add_guest, "claimed", step=Step.DEFINING, worker=me)
    theirs = await ctx.db.run(add_guest, "orphaned", step=Step.DEFINING, worker="gone-host:1:abc")
    await ctx.db.run(lambda s: s.execute(update(TaskLease).where(TaskLease.owner == me)
                                         .values(expires_at=utcnow() - dt.timedelta(seconds=60))))
    assert me not in await ctx.db.run(leases.live_processes)
    report = await reconcile.fix_interrupted(ctx)
    assert report.failed_provisioning == ["orphaned"]
    rows = {g.id: g for g in await ctx.db.run(lambda s: s.scalars(select(Guest)).all())}
    assert rows[mine].step == Step.DEFINING and rows[theirs].step == Step.FAILED


async def test_a_guest_waiting_for_its_tier_is_neither_interrupted_nor_late_nor_missing(database_url, make_config,
                                                                                         start_server):
    """An environment's later tier waits, by design, with no worker, no domain and no deadline of its own."""
    srv = await start_server(make_config(provision_timeout="600", database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    gid = await ctx.db.run(add_guest, "lab1-web1", step=Step.WAITING, domain_name=None,
                           created_at=utcnow() - dt.timedelta(seconds=3600))
    assert not (await reconcile.fix_interrupted(ctx)).failed_provisioning
    report = await reconcile.reconcile(ctx)
    assert (report.failed_provisioning, report.missing) == ([], [])
    await ctx.hosts.get("h1").resync()
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.state, g.step_reason) == (Step.WAITING, GuestState.UNDEFINED, "")


async def test_domain_left_behind_by_a_failed_guest_is_removed(database_url, make_config, start_server):
    """A checkout that failed and could not remove its domain: the next reconciliation does."""
    srv = await start_server(make_config(database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    gid = await ctx.db.run(add_guest, "leftover", step=Step.FAILED, step_reason="host said no")
    await define(srv, "leftover", guest_id=gid)
    report = await reconcile.reconcile(ctx)
    assert report.orphan_domains == ["h1/leftover"]
    assert "leftover" not in await domains(srv)
    await ctx.hosts.get("h1").resync()
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.state, g.step_reason) == (Step.FAILED, GuestState.UNDEFINED, "host said no")


async def test_missing_guest_is_noted_once(database_url, make_config, start_server):
    srv = await start_server(make_config(database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    gid = await ctx.db.run(add_guest, "vanished", step=Step.READY, state=GuestState.RUNNING)
    await define(srv, "vanished", guest_id=gid)
    conn = ctx.hosts.get("h1")
    await conn.resync()
    assert (await ctx.db.run(lambda s: s.get(Guest, gid))).state == GuestState.RUNNING
    await conn.destroy("vanished")  # gone behind Fogmachine's back
    await conn.undefine("vanished")
    await conn.resync()
    assert (await ctx.db.run(lambda s: s.get(Guest, gid))).state == GuestState.MISSING
    assert (await reconcile.reconcile(ctx)).missing == ["vanished"]
    assert (await reconcile.reconcile(ctx)).missing == []
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert g.step == Step.READY and g.step_reason.startswith("its domain vanished from its host (h1)")


async def test_a_resync_read_before_reconciliation_cannot_overwrite_its_reason(database_url, make_config,
                                                                               start_server):
    """Issue 11: reconciliation marked a guest of a killed process failed ("provisioning was interrupted"),
    then a resync that had read the row earlier wrote state=missing over it and the next pass replaced
    the reason with "its domain vanished". The resync's write is made only where the row is still the
    version it read: here the read (plan) comes first, reconciliation commits, then the write is skipped."""
    from fogmachine.services import hoststate

    srv = await start_server(make_config(database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()
    conn = ctx.hosts.get("h1")
    gid = await ctx.db.run(add_guest, "halfway", step=Step.BOOTING, state=GuestState.RUNNING,
                           worker="killed-host:1:abc")
    host_id = (await ctx.db.run(lambda s: s.get(Guest, gid))).host_id
    # The resync's read: the host without the domain (torn down, or never started), the row still booting.
    plan = await ctx.db.run(hoststate.plan_snapshot, host_id, await conn.snapshot())
    assert [(w.name, w.values) for w in plan.writes] == [("halfway", {"state": GuestState.MISSING})]

    report = await reconcile.reconcile(ctx)
    assert report.failed_provisioning == ["halfway"]
    applied = await ctx.db.run(hoststate.write_plan, plan, lock=True)
    assert applied.skipped == ("halfway",)

    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.state) == (Step.FAILED, GuestState.UNDEFINED)
    assert "the Fogmachine process doing it stopped" in g.step_reason
    assert not await reconcile.reconcile(ctx)  # nothing to note: not missing
    await conn.resync()  # a fresh read leaves the failed guest as it is
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.state) == (Step.FAILED, GuestState.UNDEFINED)
    assert "the Fogmachine process doing it stopped" in g.step_reason


async def test_forced_delete_on_a_down_host_retires_and_reconcile_cleans_up_when_it_is_back(
        database_url, make_config, start_server, tmp_path):
    """An administrator deletes a guest whose host is down: the guest is retired at once with its domain
    and volume named on the row; once the host answers, reconciliation removes them and clears the row."""
    from fogmachine.errors import HostUnreachable, PermissionDenied
    from fogmachine.services import lifecycle
    from fogmachine.services.actor import Actor
    from tests.support import testhosts

    late = tmp_path / "late-host" / "late.xml"  # not there yet: the host is down
    srv = await start_server(make_config(hosts={"h1": {}, "late": f"test://{late}"},
                                         database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()

    def add(session):
        gid = add_guest(session, "stuck", step=Step.READY, state=GuestState.RUNNING, volume_path="/pool/stuck.qcow2")
        guest = session.get(Guest, gid)
        guest.host = session.scalar(select(Host).where(Host.name == "late"))
        root = User(username="root", is_admin=True)
        session.add(root)
        session.flush()
        return gid, guest.owner_id, root.id

    gid, owner_id, root_id = await ctx.db.run(add)
    owner, admin = Actor(owner_id, "ann"), Actor(root_id, "root", True)
    with pytest.raises(HostUnreachable):  # without force: nothing happens while the host is down
        await lifecycle.delete(ctx, admin, gid)
    with pytest.raises(PermissionDenied):  # force is for administrators
        await lifecycle.delete(ctx, owner, gid, force=True)
    await lifecycle.delete(ctx, admin, gid, force=True)
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.live_name, g.domain_name, g.volume_path) == (Step.RETIRED, None, "stuck", "/pool/stuck.qcow2")
    assert "reconciliation removes them" in g.step_reason and "host late" in g.step_reason
    assert (await reconcile.reconcile(ctx)).leftovers == []  # still down: left for later, not an error

    testhosts.write_host(late.parent, "late")  # the host is back, with the domain still on it
    conn = ctx.hosts.get("late")
    assert await conn.wait_settled(5)
    for _ in range(200):
        if conn.connected:
            break
        await asyncio.sleep(0.05)
    await define(srv, "stuck", guest_id=gid, host="late")
    report = await reconcile.reconcile(ctx)
    assert report.leftovers == ["stuck"] and report.orphan_domains == []
    assert "stuck" not in await domains(srv, "late")
    g = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert (g.step, g.state, g.domain_name, g.volume_path) == (Step.RETIRED, GuestState.UNDEFINED, None, "")
    assert not await reconcile.reconcile(ctx)


@pytest.mark.cobbler
async def test_orphan_cobbler_system_removed_owned_one_kept(database_url, make_config, start_server, cobbler_server):
    srv = await start_server(make_config(cobbler_url=cobbler_support.XMLRPC_URL, cobbler_user="cobbler",
                                         cobbler_password="cobbler", database_connection=database_url))
    ctx = srv.ctx
    await srv.tasks.wait_started()  # the pass at start must not take the orphan before this one
    from fogmachine.cobbler.client import SystemSpec

    mine = {"fogmachine_token": "x", "fogmachine_server": ctx.config.server_url}
    other = {"fogmachine_token": "y", "fogmachine_server": "http://other-fogmachine:8888"}
    for name, mac, meta in (("fmtest-orphan", "52:54:00:fe:00:01", mine), ("fmtest-owned", "52:54:00:fe:00:02", mine),
                            ("fmtest-foreign", "52:54:00:fe:00:03", other)):
        await ctx.cobbler.remove_system(name)
        await ctx.cobbler.create_system(SystemSpec(name=name, mac=mac, hostname=name,
                                                   profile=cobbler_support.PROFILE, image=None,
                                                   autoinstall_meta=meta, netboot_enabled=False))
    await ctx.db.run(add_guest, "fmtest-owned", step=Step.READY, state=GuestState.RUNNING,
                     cobbler_system="fmtest-owned", target_kind=TargetKind.PROFILE)
    try:
        report = await reconcile.reconcile(ctx)
        assert "fmtest-orphan" in report.orphan_systems and "fmtest-owned" not in report.orphan_systems
        assert await ctx.cobbler.get_system("fmtest-orphan") is None
        assert await ctx.cobbler.get_system("fmtest-owned") is not None
        assert await ctx.cobbler.get_system("fmtest-foreign") is not None  # another instance's: left alone
    finally:
        await ctx.cobbler.remove_system("fmtest-owned")
        await ctx.cobbler.remove_system("fmtest-foreign")
