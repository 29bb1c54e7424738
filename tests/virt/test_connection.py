"""HostConnection on test-driver hosts: calls, errors, events, reconnects (no database)."""

import asyncio
import socket
import threading
import time

import libvirt
import pytest

from fogmachine.db.models import GuestState
from fogmachine.errors import BackendTimeout, Conflict, HostUnreachable, NotFound, ValidationError
from fogmachine.virt import HostConnection, HostSnapshot
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import testhosts
from tests.support.hostfleet import write_pool_host


class Recorder:
    """A Listener that keeps what the connection reports."""

    def __init__(self) -> None:
        self.snapshots: list[HostSnapshot] = []
        self.downs: list[str] = []

    async def host_up(self, host, snapshot):
        self.snapshots.append(snapshot)

    async def host_down(self, host, reason):
        self.downs.append(reason)

    def state_of(self, name: str) -> str | None:
        if not self.snapshots:
            return None
        return next((d.state for d in self.snapshots[-1].domains if d.name == name), None)


async def wait_until(predicate, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while not predicate() and time.monotonic() < end:
        await asyncio.sleep(0.01)
    return predicate()


@pytest.fixture
async def opened():
    made: list[HostConnection] = []

    async def open_(uri: str, **kwargs) -> tuple[HostConnection, Recorder]:
        recorder = Recorder()
        host = HostConnection("h1", uri, listener=recorder, resync_interval=kwargs.pop("resync_interval", 3600),
                              **kwargs)
        await host.watch()
        await host.wait_settled(10)
        made.append(host)
        return host, recorder

    yield open_
    for host in made:
        await host.close()


async def test_facts_and_domains_in_one_read(tmp_path, opened):
    uri = testhosts.write_host(tmp_path, "h", cpus=4, memory_mb=8192, domains=[
        testhosts.TestDomain("web1", memory_mb=1024, vcpus=2, mac="52:54:00:00:00:01", vnc_port=5901),
        testhosts.TestDomain("db1", memory_mb=2048, state="shutoff"),
        testhosts.TestDomain("idle", memory_mb=512, state="paused")])
    host, recorder = await opened(uri)
    assert host.connected and host.state == "up"
    snap = recorder.snapshots[-1]
    states = {d.name: d.state for d in snap.domains}
    assert states == {"web1": GuestState.RUNNING, "db1": GuestState.SHUTOFF, "idle": GuestState.PAUSED}
    web1 = next(d for d in snap.domains if d.name == "web1")
    assert (web1.mac, web1.vnc_port, web1.vcpus, web1.guest_id) == ("52:54:00:00:00:01", 5901, 2, None)
    f = snap.facts
    assert (f.total_memory_mb, f.cpus, f.guest_count, f.hypervisor_type) == (8192, 4, 3, "TEST")
    # running and paused domains hold memory; the shut-off one does not
    assert (f.committed_memory_mb, f.committed_vcpus) == (1536, 3)
    # the test driver reports no free memory for a host file: total minus committed
    assert f.free_memory_mb == 8192 - 1536
    assert await host.facts() == f


async def test_actions_conflicts_and_not_found(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1")]))
    with pytest.raises(Conflict, match=r"^guest web1 is already running$"):
        await host.start("web1")
    await host.suspend("web1")
    assert (await host.domain("web1")).state == GuestState.PAUSED
    await host.resume("web1")
    await host.shutdown("web1")
    with pytest.raises(Conflict, match=r"^guest Web One is not running$"):
        await host.suspend("web1", label="Web One")
    await host.start("web1")
    await host.reboot("web1")
    await host.destroy("web1")
    with pytest.raises(NotFound, match=r"^guest ghost has no domain on host h1$"):
        await host.start("ghost")
    await host.undefine("web1")
    assert await host.list_domains() == []


async def test_define_reads_back_the_domain(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h"))
    spec = DomainSpec(name="new1", domain_type="test", memory_mb=256, vcpus=1, mac="52:54:00:12:34:56", guest_id=3)
    info = await host.define(build_domain_xml(spec))
    assert (info.name, info.state, info.guest_id, info.mac, info.active) == ("new1", "shutoff", 3, spec.mac, False)
    with pytest.raises(ValidationError):
        await host.define("<domain")


async def test_events_trigger_a_resync(tmp_path, opened):
    """A change made behind Fogmachine's back arrives through libvirt's event, not the periodic resync."""
    host, recorder = await opened(testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1")]))
    before = host.resyncs
    # the raw libvirt handle, as another tool would act (the test driver has one state per connection)
    await asyncio.to_thread(lambda: host._conn.lookupByName("web1").suspend())
    assert await wait_until(lambda: recorder.state_of("web1") == GuestState.PAUSED)
    assert host.resyncs > before  # resync_interval is an hour: only the event can explain it
    assert [e.event for e in host.recent_events][-1] == "SUSPENDED"


async def test_volumes_in_the_default_pool(tmp_path, opened):
    host, _ = await opened(write_pool_host(tmp_path, "pooled", tmp_path / "pool"))
    path = await host.create_volume("web1", 4)
    assert path == str(tmp_path / "pool" / "web1.qcow2")
    await host.delete_volume(path)
    with pytest.raises(NotFound):
        await host.delete_volume(path)
    with pytest.raises(ValidationError):
        await host.create_volume("../etc", 1)


async def test_no_default_pool_means_no_volume(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h"))
    assert await host.create_volume("web1", 4) is None


async def test_unopenable_host_file_is_down(tmp_path, opened):
    host, recorder = await opened(f"test://{tmp_path}/nowhere.xml")
    assert host.state == "down" and not host.connected
    assert recorder.downs == [f"host h1: test host file {tmp_path}/nowhere.xml does not exist"]
    with pytest.raises(HostUnreachable, match=r"^host h1 is down: "):
        await host.start("web1")
    with pytest.raises(HostUnreachable):
        await host.resync()


async def test_broken_host_file_is_down(tmp_path, opened):
    (tmp_path / "broken.xml").write_text("<node><memory>oops")
    host, recorder = await opened(f"test://{tmp_path}/broken.xml")
    assert host.state == "down"
    assert "cannot be reached" in recorder.downs[0]


async def test_closed_port_is_down(opened):
    host, recorder = await opened("qemu+tcp://127.0.0.1:1/system")
    assert host.state == "down"
    assert "Connection refused" in recorder.downs[0]


async def test_silent_host_times_out_on_connect(opened):
    """A host that accepts TCP but never answers: open() would hang; the connect timeout ends it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        host, recorder = await opened(f"qemu+tcp://127.0.0.1:{port}/system", connect_timeout=0.5)
        assert host.state == "down"
        assert recorder.downs[0] == (f"host h1 did not answer within 0.5 s at qemu+tcp://127.0.0.1:{port}/system")
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


async def test_slow_call_times_out(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h"), call_timeout=0.2)
    with pytest.raises(BackendTimeout, match=r"^host h1 did not finish nap within 0.2 s$"):
        await host._call(lambda conn: time.sleep(1), action="nap")


async def test_close_callback_marks_down_then_reconnects(tmp_path, opened):
    """What libvirt does when a remote libvirtd dies, played on the event thread: down at once, then back."""
    host, recorder = await opened(testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1")]))
    conn = host._conn
    loop = asyncio.get_running_loop()
    threading.Thread(target=host._close_callback, args=(conn, libvirt.VIR_CONNECT_CLOSE_REASON_EOF, loop)).start()
    assert await wait_until(lambda: recorder.downs == ["connection closed by the host"])
    assert await wait_until(lambda: host.connected and host._conn is not conn and host.state == "up")
    ups = len(recorder.snapshots)
    await host.resync()
    assert len(recorder.snapshots) == ups + 1
