"""HostFleet on test-driver hosts, with no database: what the pure half of ctx.hosts does by itself."""

import asyncio
import threading

import pytest

from fogmachine.errors import NotFound
from fogmachine.virt import HostFleet
from fogmachine.virt.readgate import ReadGate
from tests.support import testhosts
from tests.virt.test_connection import Recorder


async def test_a_fleet_watches_its_hosts_on_shared_call_threads_and_reports_to_its_listener(tmp_path):
    recorder = Recorder()
    fleet = HostFleet(recorder, connect_timeout=5, resync_interval=3600)
    uri = testhosts.write_host(tmp_path, "a", domains=[testhosts.TestDomain("a-run")])
    try:
        a = fleet.add(1, "a", uri)
        gone = fleet.add(2, "gone", "test:///nonexistent/host.xml")
        for host in fleet.all():
            await host.watch()
        assert await fleet.wait_settled(10)

        assert (fleet.get("a"), fleet.get_by_id(2)) == (a, gone)
        assert "a" in fleet and "zzz" not in fleet
        with pytest.raises(NotFound):
            fleet.get("zzz")
        with pytest.raises(NotFound):
            fleet.get_by_id(3)
        assert a._threads is gone._threads is fleet.threads  # the same call threads for every host
        assert a.connected and not gone.connected
        assert recorder.state_of("a-run") == "running"
        assert recorder.downs and recorder.downs[0].endswith("test host file /nonexistent/host.xml does not exist")

        await fleet.remove("gone")
        assert [h.name for h in fleet.all()] == ["a"]
    finally:
        threads = fleet.threads
        background = fleet.spawn(asyncio.sleep(3600), name="bg")
        await fleet.close()
    assert background.cancelled()
    assert fleet.all() == [] and not a.connected
    assert fleet.threads is not threads and fleet.threads.threads == 0  # fresh ones for a later start


async def test_whole_host_reads_are_gated_and_other_calls_are_not(tmp_path, monkeypatch):
    """At most the read gate's limit of resyncs read their host at once (readgate.py says why); a look-up (or an action)
    does not wait for a slot: it runs while every slot is held by a read that cannot end yet."""
    from fogmachine.virt import connection

    real_read = connection.read_snapshot
    lock, gate = threading.Lock(), threading.Event()
    running, most = [0], [0]

    def held_read(*args, **kwargs):  # a test double of one function: the real read, held until ``gate``
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            gate.wait(60)
            return real_read(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    fleet = HostFleet(Recorder(), connect_timeout=5, resync_interval=3600,
                      read_gate=ReadGate(floor=3, ceiling=3, initial=3))
    try:
        for i in range(8):
            uri = testhosts.write_host(tmp_path, f"h{i}", domains=[testhosts.TestDomain(f"h{i}-dom")])
            fleet.add(i + 1, f"h{i}", uri)
        for host in fleet.all():
            await host.watch()
        assert await fleet.wait_settled(30)
        monkeypatch.setattr(connection, "read_snapshot", held_read)
        resyncs = asyncio.gather(*(host.resync() for host in fleet.all()))
        async with asyncio.timeout(60):  # only keeps a broken build from hanging
            while most[0] < 3:
                await asyncio.sleep(0.01)
            info = await fleet.get("h7").domain("h7-dom")  # every read slot is held right now
        assert info.name == "h7-dom" and running[0] == 3
        gate.set()
        async with asyncio.timeout(60):
            await resyncs
        assert most[0] == 3
    finally:
        gate.set()
        await fleet.close()
