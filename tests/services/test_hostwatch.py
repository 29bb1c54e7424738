"""HostManager (services.hostwatch): hosts watched concurrently, what they hold written to the database, live."""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fogmachine.db.models import Guest, GuestState, Host, Step
from fogmachine.errors import NotFound
from fogmachine.services.hostwatch import HostManager
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import testhosts
from tests.support.hostfleet import fleet  # noqa: F401
from tests.support.tcpproxy import TcpProxy


def three_domains(prefix: str, octet: int) -> dict:
    domain = testhosts.TestDomain
    return {"cpus": 4, "memory_mb": 8192, "domains": [
        domain(f"{prefix}-run", memory_mb=1024, vcpus=2, mac=f"52:54:00:00:{octet:02x}:01", vnc_port=5900),
        domain(f"{prefix}-off", memory_mb=2048, state="shutoff", mac=f"52:54:00:00:{octet:02x}:02"),
        domain(f"{prefix}-paused", memory_mb=512, state="paused")]}


async def test_start_watches_every_host_at_once(make_config, fleet, database_url):  # noqa: F811
    config = make_config(hosts={"a": three_domains("a", 1), "b": three_domains("b", 2),
                                "nofile": "test:///nonexistent/host.xml",
                                "closed": "qemu+tcp://127.0.0.1:1/system"},
                         database_connection=database_url, resync_interval="3600")
    running = await fleet(config)
    hosts = {h.name: h for h in await running.db(lambda s: list(s.scalars(select(Host))))}
    assert {n: h.state for n, h in hosts.items()} == {"a": "up", "b": "up", "nofile": "down", "closed": "down"}
    a = hosts["a"]
    assert (a.total_memory_mb, a.free_memory_mb, a.cpus) == (8192, 8192 - 1536, 4)
    assert (a.committed_memory_mb, a.committed_vcpus, a.guest_count) == (1536, 3, 3)
    assert (a.hypervisor_type, a.state_reason) == ("TEST", "")
    assert a.last_seen_at is not None
    assert "Connection refused" in hosts["closed"].state_reason
    assert hosts["nofile"].state_reason.endswith("test host file /nonexistent/host.xml does not exist")
    assert hosts["nofile"].last_seen_at is None

    guests = {g.name: g for g in await running.db(lambda s: list(s.scalars(select(Guest))))}
    assert set(guests) == {"a-run", "a-off", "a-paused", "b-run", "b-off", "b-paused"}
    run = guests["a-run"]
    assert (run.managed, run.owner_id, run.step, run.live_name) == (False, None, Step.READY, None)
    assert (run.state, run.mac, run.vnc_port, run.ram_mb, run.vcpus) == ("running", "52:54:00:00:01:01", 5900,
                                                                          1024, 2)
    assert guests["a-off"].state == "shutoff" and guests["a-paused"].state == "paused"
    assert run.uuid and len(run.uuid) == 36

    assert isinstance(running.ctx.hosts, HostManager)
    assert running.hosts.get("a").connected
    with pytest.raises(NotFound):
        running.hosts.get("zzz")


async def test_changes_behind_our_back_reach_the_database(make_config, fleet):  # noqa: F811
    """Raw libvirt calls (not Fogmachine's) change states; the events bring them to the rows."""
    running = await fleet(make_config(hosts={"a": three_domains("a", 1)}, resync_interval="3600"))
    host = running.hosts.get("a")
    raw = host._conn  # the test driver keeps one state per connection: act on the same one

    def state(name):
        return lambda: running.db(lambda s: s.scalar(select(Guest.state).where(Guest.domain_name == name)))

    await asyncio.to_thread(lambda: raw.lookupByName("a-run").suspend())
    assert await running.wait_for(state("a-run"), lambda v: v == "paused") == "paused"
    await asyncio.to_thread(lambda: raw.lookupByName("a-off").create())
    assert await running.wait_for(state("a-off"), lambda v: v == "running") == "running"
    row = await running.host_row("a")
    assert row.committed_memory_mb == 1024 + 2048 + 512

    # a domain defined by someone else shows up as unmanaged; undefined, its mirror goes away
    xml = build_domain_xml(DomainSpec(name="stranger", domain_type="test", memory_mb=64, vcpus=1))
    await asyncio.to_thread(raw.defineXML, xml)
    stranger = await running.wait_for(lambda: running.guest_row("stranger"), lambda g: g is not None)
    assert stranger is not None and not stranger.managed and stranger.state == "shutoff"
    await asyncio.to_thread(lambda: raw.lookupByName("stranger").undefine())
    assert await running.wait_for(lambda: running.guest_row("stranger"), lambda g: g is None) is None


async def test_managed_guest_is_matched_by_its_mark_and_goes_missing(make_config, fleet, database_url):  # noqa: F811
    running = await fleet(make_config(hosts={"a": {}}, database_connection=database_url, resync_interval="3600"))
    owner = await running.add_user("ann")
    host_id = (await running.host_row("a")).id

    def add_guest(s):
        guest = Guest(name="web1", live_name="web1", domain_name="web1", owner_id=owner, host_id=host_id,
                      step=Step.READY, state=GuestState.UNDEFINED, mac="52:54:00:aa:00:01")
        s.add(guest)
        s.flush()
        return guest.id

    gid = await running.db(add_guest)
    host = running.hosts.get("a")
    spec = DomainSpec(name="web1", domain_type="test", memory_mb=256, vcpus=1, mac="52:54:00:aa:00:01",
                      guest_id=gid)
    await host.define(build_domain_xml(spec))
    await host.resync()
    guest = await running.guest_row("web1")
    assert (guest.id, guest.managed, guest.owner_id, guest.state) == (gid, True, owner, "shutoff")
    count = await running.db(lambda s: s.scalar(select(func.count()).select_from(Guest)))
    assert count == 1  # matched, not mirrored as an unmanaged second row

    await asyncio.to_thread(lambda: host._conn.lookupByName("web1").undefine())
    missing = await running.wait_for(lambda: running.guest_row("web1"), lambda g: g.state == "missing")
    assert missing.state == GuestState.MISSING and missing.id == gid  # kept, never deleted


async def test_a_forced_resync_locks_only_to_write(make_config, fleet, database_url, monkeypatch):  # noqa: F811
    """Issue 12: a forced resync (every DB_RECHECK, or after a skipped row) compares the host with its rows.
    An unchanged host's plan has nothing to write, so no locked unit runs: on SQLite each took the write
    lock in turn, and the fleet's forced resyncs queued behind one another. A row changed behind the
    resync's back is still written back, under the lock."""
    from fogmachine.services.hostwatch import RECHECK_NOW

    running = await fleet(make_config(hosts={"a": three_domains("a", 1)}, database_connection=database_url,
                                      resync_interval="3600"))
    host = running.hosts.get("a")
    db = running.hosts.db
    real_run = db.run
    locked: list[str] = []

    async def run(fn, *args, lock=False, **kwargs):
        if lock:
            locked.append(fn.__name__)
        return await real_run(fn, *args, lock=lock, **kwargs)

    monkeypatch.setattr(db, "run", run)
    host.applied_at = RECHECK_NOW
    await host.resync()
    assert locked == []

    def pause_behind_its_back(s):
        s.scalar(select(Guest).where(Guest.domain_name == "a-run")).state = GuestState.PAUSED

    await real_run(pause_behind_its_back)
    host.applied_at = RECHECK_NOW
    await host.resync()
    assert locked == ["write_plan"]
    assert (await running.guest_row("a-run")).state == "running"


async def test_provisioning_guest_without_domain_is_left_alone(make_config, fleet):  # noqa: F811
    running = await fleet(make_config(hosts={"a": {}}, resync_interval="3600"))
    host_id = (await running.host_row("a")).id

    def add(s):
        s.add(Guest(name="new", live_name="new", domain_name="new", host_id=host_id, step=Step.DEFINING))

    await running.db(add)
    await running.hosts.get("a").resync()
    assert (await running.guest_row("new")).state == GuestState.UNDEFINED


async def test_same_mac_on_two_hosts_does_not_break_the_resync(make_config, fleet):  # noqa: F811
    mac = "52:54:00:de:ad:01"
    running = await fleet(make_config(hosts={"a": {"domains": [testhosts.TestDomain("clone", mac=mac)]},
                                             "b": {"domains": [testhosts.TestDomain("clone", mac=mac)]}}))
    rows = await running.db(lambda s: list(s.scalars(select(Guest).where(Guest.domain_name == "clone"))))
    assert len(rows) == 2
    assert sorted(str(r.mac) for r in rows) == sorted([mac, "None"])
    assert {h.state for h in await running.db(lambda s: list(s.scalars(select(Host))))} == {"up"}


async def test_reconnect_after_the_connection_drops(make_config, fleet, tmp_path, real_hosts):  # noqa: F811
    """A test-driver host served by the real libvirtd on 127.0.0.1 through a TCP forwarder; cutting it is a
    real fault (connections reset, reconnects refused) for this test alone."""
    path = testhosts.write_host(tmp_path / "served", "a", domains=[testhosts.TestDomain("web1")])[len("test://"):]
    with TcpProxy(("127.0.0.1", 16509)) as proxy:
        running = await fleet(make_config(hosts={"a": f"test+tcp://127.0.0.1:{proxy.port}{path}"},
                                          resync_interval="3600"))
        proxy.cut()
        down = await running.wait_for(lambda: running.host_row("a"), lambda h: h.state == "down")
        assert down.state_reason, down
        assert (await running.guest_row("web1")).state != GuestState.MISSING
        proxy.restore()
        # back: its guest was unknown while the host was down and is running again, never missing
        up = await running.wait_for(lambda: running.host_row("a"), lambda h: h.state == "up")
    assert up.state == "up" and up.state_reason == ""
    assert (await running.guest_row("web1")).state == "running"


async def test_the_server_attaches_the_manager(make_config, start_server):
    server = await start_server(make_config(hosts={"a": {"domains": [testhosts.TestDomain("web1")]}}))
    assert isinstance(server.ctx.hosts, HostManager)
    assert server.ctx.hosts.get("a").connected


async def test_reload_follows_the_hosts_table(make_config, fleet, tmp_path):  # noqa: F811
    from fogmachine import virthosts

    config = make_config(hosts={"a": {}, "b": {}})
    running = await fleet(config)
    assert sorted(h.name for h in running.hosts.all()) == ["a", "b"]
    old_b = running.hosts.get("b")
    uri_c = testhosts.write_host(tmp_path / "hosts", "c", domains=[testhosts.TestDomain("in-c")])
    text = Path(config.virthosts).read_text()
    Path(config.virthosts).write_text("".join(line + "\n" for line in text.splitlines() if line.startswith("a,"))
                                      + f"c, {uri_c}, test\n")
    await running.db(lambda s: virthosts.sync(s, virthosts.parse(config.virthosts)))
    await running.hosts.reload()
    assert sorted(h.name for h in running.hosts.all()) == ["a", "c"]
    assert not old_b.connected  # closed, not leaked
    await running.hosts.get("c").wait_settled(10)
    assert (await running.guest_row("in-c", "c")) is not None


async def test_hosts_whose_calls_hang_hold_none_of_the_others_up(make_config, start_server, monkeypatch):
    """Several hosts hang in a read: the others' resyncs and a user's action still finish, because every
    call has a thread of its own; the hung calls hold only theirs."""
    import asyncio
    import threading

    from fogmachine.services import lifecycle
    from fogmachine.services.actor import Actor
    from fogmachine.virt import connection as connmod

    hanging = 3
    srv = await start_server(make_config(hosts={f"h{i}": {} for i in range(hanging + 3)}))
    hosts = srv.ctx.hosts
    await hosts.wait_settled(10)
    slow = [hosts.get(f"h{i}") for i in range(hanging)]
    slow_conns = {h._conn for h in slow}
    release = threading.Event()
    entered: set[object] = set()
    real_read = connmod.read_snapshot

    def read(conn, *args):
        if conn in slow_conns:
            entered.add(conn)
            release.wait(60)  # a host that does not answer for a long while
        return real_read(conn, *args)

    async def until(check, what: str) -> None:
        """Positive signals, not sleeps: a loaded machine only makes them come later."""
        for _ in range(1000):
            if check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"never happened: {what}")

    other = hosts.get(f"h{hanging}")
    owner = await srv.ctx.db.run(add_user_row, "ann")
    gid = await srv.ctx.db.run(add_guest_row, owner, other.host_id, "act1")
    await other.define(build_domain_xml(DomainSpec(name="act1", memory_mb=128, vcpus=1, domain_type="test",
                                                   guest_id=gid)))
    await other.resync()

    monkeypatch.setattr(connmod, "read_snapshot", read)
    stuck = [asyncio.ensure_future(h.resync()) for h in slow]
    await until(lambda: entered == slow_conns, "every slow host's read has begun")
    threads = hosts.fleet.threads
    assert threads.busy >= hanging
    others = [h for h in hosts.all() if h not in slow]
    # Far less than the hung reads' 60 s: had they held the others' threads, these would wait for them.
    await asyncio.wait_for(asyncio.gather(*(h.resync() for h in others)), 30)
    guest = await asyncio.wait_for(lifecycle.perform(srv.ctx, Actor(owner, "ann"), gid, "start"), 30)
    assert guest.state == "running"
    assert not any(s.done() for s in stuck)
    release.set()
    await asyncio.gather(*stuck)
    await until(lambda: threads.busy == 0, "the hung calls' threads are free again")


def add_user_row(s, username):
    from fogmachine.db.models import User

    user = User(username=username)
    s.add(user)
    s.flush()
    return user.id


def add_guest_row(s, owner_id, host_id, name):
    guest = Guest(name=name, live_name=name, domain_name=name, owner_id=owner_id, host_id=host_id,
                  step=Step.READY, state=GuestState.SHUTOFF)
    s.add(guest)
    s.flush()
    return guest.id


async def test_the_hosts_table_is_followed_and_a_host_that_left_stays_while_guests_live(make_config, start_server,
                                                                                        monkeypatch, tmp_path):
    """``hosts sync`` run by another process: a new host is watched without a restart; a host that left
    the file is watched until its last guest was given back, then dropped."""
    import datetime as dt

    from fogmachine import virthosts
    from fogmachine.db.models import User, utcnow
    from fogmachine.services import hostwatch, lifecycle
    from fogmachine.services.actor import Actor

    monkeypatch.setattr(hostwatch, "TABLE_POLL", 0.05)
    config = make_config(hosts={"a": {}, "b": {}})
    srv = await start_server(config)
    ctx = srv.ctx

    def add_guest(s):
        owner = User(username="ann")
        host = s.scalar(select(Host).where(Host.name == "b"))
        guest = Guest(name="keep", live_name="keep", domain_name="keep", owner=owner, host=host, step=Step.READY,
                      state=GuestState.RUNNING, ram_mb=128, vcpus=1, expires_at=utcnow() + dt.timedelta(days=1))
        s.add(guest)
        s.flush()
        return guest.id, owner.id

    gid, uid = await ctx.db.run(add_guest)
    conn_b = ctx.hosts.get("b")
    await conn_b.define(build_domain_xml(DomainSpec(name="keep", memory_mb=128, vcpus=1, domain_type="test",
                                                    guest_id=gid)))
    uri_c = testhosts.write_host(tmp_path / "hosts", "c")
    Path(config.virthosts).write_text(f"a, {ctx.hosts.get('a').uri}, test\nc, {uri_c}, test\n")

    async def sync():  # what `fogmachine hosts sync` does from another process
        return await ctx.db.run(lambda s: virthosts.sync(s, virthosts.parse(config.virthosts)))

    async def watched(expected):
        for _ in range(200):
            if sorted(h.name for h in ctx.hosts.all()) == expected:
                return True
            await asyncio.sleep(0.02)
        return False

    result = await sync()
    assert (result.added, result.disabled) == (["c"], ["b"])
    assert await watched(["a", "b", "c"])  # c came in; b stays while "keep" lives on it
    assert ctx.hosts.get("b") is conn_b
    await lifecycle.delete(ctx, Actor(uid, "ann"), gid)  # the guest can still be given back
    assert "keep" not in {d.name for d in await conn_b.list_domains()}
    assert (await sync()).deleted == ["b"]
    assert await watched(["a", "c"])
    for _ in range(200):  # dropped from the list first, then closed
        if not conn_b.connected:
            break
        await asyncio.sleep(0.02)
    assert not conn_b.connected
