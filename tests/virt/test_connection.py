"""HostConnection on test-driver hosts: calls, errors, events, reconnects (no database)."""

import asyncio
import socket
import threading
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest

from fogmachine.errors import BackendTimeout, Conflict, HostUnreachable, NotFound, ValidationError
from fogmachine.states import GuestState
from fogmachine.virt import HostConnection, HostSnapshot
from fogmachine.virt.domainxml import DomainSpec, boot_from_disk, build_domain_xml
from tests.support import testhosts
from tests.support.hostfleet import write_pool_host
from tests.support.tcpproxy import TcpProxy


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


async def test_an_action_records_its_outcome_without_reading_the_host(tmp_path, opened):
    """``act`` hands what it did to the listener at once, in the host's last snapshot: no read of the host."""
    host, recorder = await opened(testhosts.write_host(tmp_path, "h", domains=[
        testhosts.TestDomain("web1", memory_mb=1024, vnc_port=5901), testhosts.TestDomain("db1", state="shutoff")]))
    before = await host.domain("web1")
    reads = host.resyncs

    def web1():
        return next(d for d in recorder.snapshots[-1].domains if d.name == "web1")

    async def act(action: str, echo: str) -> int:
        """The action, then its own lifecycle event: it says nothing new, so it reads nothing."""
        seen = len(host.recent_events)
        domain_id = await host.act("web1", action)
        assert await wait_until(lambda: [e.event for e in host.recent_events][seen:] == [echo])
        return domain_id

    assert await act("pause", "SUSPENDED") == before.domain_id
    assert (web1().state, web1().domain_id) == (GuestState.PAUSED, before.domain_id)
    await act("unpause", "RESUMED")
    assert web1().state == GuestState.RUNNING
    await act("destroy", "STOPPED")
    assert (web1().state, web1().domain_id) == (GuestState.SHUTOFF, -1)
    assert recorder.snapshots[-1].facts.committed_memory_mb == 0  # the facts follow the domains
    assert await act("start", "STARTED") == -1
    started = web1()
    assert started.state == GuestState.RUNNING and started.domain_id not in (-1, before.domain_id)
    assert started == await host.domain("web1")  # what the action read is what the host says
    assert recorder.snapshots[-1].facts.committed_memory_mb == 1024
    assert host.resyncs == reads
    await host.act("web1", "shutdown")  # the test driver's guests obey at once: read after the request
    assert web1().state == GuestState.SHUTOFF
    with pytest.raises(Conflict, match=r"^not now$") as info:
        await host.act("web1", "start", refuse=lambda state: "not now")
    assert info.value.details["state"] == GuestState.SHUTOFF
    assert (await host.domain("web1")).state == GuestState.SHUTOFF  # refused: nothing done
    with pytest.raises(NotFound, match=r"^guest ghost has no domain on host h1$"):
        await host.act("ghost", "start")


async def test_a_read_that_began_before_an_action_does_not_undo_it(tmp_path, opened, monkeypatch):
    """A read whose answer was on its way while an action ended says the domain is as it was: the action's
    outcome stands over it, until a read that began after the action."""
    from fogmachine.virt import connection as connmod

    host, recorder = await opened(testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1")]))
    real_read = connmod.read_snapshot
    read, answer = threading.Event(), threading.Event()

    def slow_read(conn, *args):
        snapshot = real_read(conn, *args)  # the host as it is now
        read.set()
        answer.wait(10)  # the answer still on its way
        return snapshot

    monkeypatch.setattr(connmod, "read_snapshot", slow_read)
    stale = asyncio.ensure_future(host.resync())
    assert await asyncio.to_thread(read.wait, 10)
    await host.act("web1", "pause")
    assert recorder.state_of("web1") == GuestState.PAUSED
    answer.set()
    await stale
    assert recorder.snapshots[-1].domains[0].state == GuestState.PAUSED  # not the "running" it read
    monkeypatch.setattr(connmod, "read_snapshot", real_read)
    await host.resync()
    assert recorder.state_of("web1") == GuestState.PAUSED
    # from now on reads say what the host says: a change behind our back shows
    await asyncio.to_thread(lambda: host._conn.lookupByName("web1").resume())
    assert await wait_until(lambda: recorder.state_of("web1") == GuestState.RUNNING)


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


async def test_close_callback_marks_down_then_reconnects(tmp_path, opened, real_hosts):
    """A remote libvirtd vanishes (a test-driver host served by the real libvirtd on 127.0.0.1 through a TCP
    forwarder, cut: connections reset, reconnects refused): down at once, then back when it answers again."""
    path = testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1")])[len("test://"):]
    with TcpProxy(("127.0.0.1", 16509)) as proxy:
        host, recorder = await opened(f"test+tcp://127.0.0.1:{proxy.port}{path}")
        assert host.connected and host.state == "up"
        before = len(recorder.snapshots)
        proxy.cut()
        assert await wait_until(lambda: not host.connected and recorder.downs)
        assert recorder.downs[0] in ("connection lost (I/O error)", "connection closed by the host"), recorder.downs
        proxy.restore()
        assert await wait_until(lambda: host.connected and host.state == "up" and len(recorder.snapshots) > before)
        ups = len(recorder.snapshots)
        await host.resync()
        assert len(recorder.snapshots) == ups + 1



async def _read(host: HostConnection, fn, *args):
    return await host._call(fn, *args, action="test read")


async def test_an_overlay_of_an_image_in_the_default_pool(tmp_path, opened):
    host, _ = await opened(write_pool_host(tmp_path, "pooled", tmp_path / "pool"))
    assert await host.pool_path() == str(tmp_path / "pool")
    path = await host.create_volume("web1", 20, backing="/images/base.qcow2")
    assert path == str(tmp_path / "pool" / "web1.qcow2")
    volume = ET.fromstring(await _read(host, lambda c, p: c.storageVolLookupByPath(p).XMLDesc(0), path))
    assert volume.findtext("./backingStore/path") == "/images/base.qcow2"
    assert volume.find("./backingStore/format").get("type") == "qcow2"
    assert volume.find("./target/format").get("type") == "qcow2"
    raw = await host.create_volume("web2", 1, backing="/images/base.img", backing_format="raw")
    volume = ET.fromstring(await _read(host, lambda c, p: c.storageVolLookupByPath(p).XMLDesc(0), raw))
    assert volume.find("./backingStore/format").get("type") == "raw"
    await host.delete_volume(path)
    await host.delete_volume(raw)
    assert await _read(host, lambda c: c.storagePoolLookupByName("default").listVolumes()) == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"backing": "images/base.qcow2"}, "image"),
    ({"backing": "/images/base.qcow2", "backing_format": "vmdk"}, "image_format"),
    ({"size_gb": 0}, "disk_gb"),  # 0 (the image's size) only with an image
])
async def test_bad_volume_requests_are_refused_before_libvirt(tmp_path, opened, kwargs, field):
    host, _ = await opened(write_pool_host(tmp_path, "pooled", tmp_path / "pool"))
    with pytest.raises(ValidationError) as info:
        await host.create_volume("web1", **{"size_gb": 1, **kwargs})
    assert info.value.field == field


async def test_a_pool_gone_is_noticed_by_create_volume_and_remembered(tmp_path, opened):
    host, _ = await opened(write_pool_host(tmp_path, "pooled", tmp_path / "pool"))
    assert await host.pool_path() == str(tmp_path / "pool")
    await _read(host, lambda c: c.storagePoolLookupByName("default").destroy())
    # Placement's answer is remembered for a while; making the volume finds out and corrects it.
    assert await host.pool_path() == str(tmp_path / "pool")
    assert await host.create_volume("web1", 1, backing="/images/base.qcow2") is None
    assert await host.pool_path() is None


async def test_no_default_pool_has_no_pool_path(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h"))
    assert await host.pool_path() is None


async def test_redefine_changes_the_persistent_definition_only(tmp_path, opened):
    host, _ = await opened(testhosts.write_host(tmp_path, "h"))
    spec = DomainSpec(name="inst", domain_type="test", memory_mb=128, vcpus=1, boot="kernel", kernel="/vmlinuz",
                      initrd="/initrd.img", cmdline="ks=http://x/ks", disk_path="/pool/inst.qcow2")
    await host.define(build_domain_xml(spec))
    await host.start("inst")
    running = await host.domain("inst")
    assert await host.redefine("inst", boot_from_disk) is True
    persistent = ET.fromstring(await _read(
        host, lambda c: c.lookupByName("inst").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
    live = ET.fromstring(await _read(host, lambda c: c.lookupByName("inst").XMLDesc(0)))
    assert persistent.find("./os/kernel") is None and [b.get("dev") for b in persistent.findall("./os/boot")] == ["hd"]
    assert live.findtext("./os/kernel") == "/vmlinuz"  # the running guest is not disturbed
    after = await host.domain("inst")
    assert (after.state, after.domain_id) == (GuestState.RUNNING, running.domain_id)
    assert await host.redefine("inst", boot_from_disk) is False  # nothing left to change
    with pytest.raises(NotFound):
        await host.redefine("nope", boot_from_disk)

