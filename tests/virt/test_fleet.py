"""HostFleet on test-driver hosts, with no database: what the pure half of ctx.hosts does by itself."""

import asyncio

import pytest

from fogmachine.errors import NotFound
from fogmachine.virt import HostFleet
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
