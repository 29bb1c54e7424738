"""The hypervisor layer against the two real libvirtd/QEMU hosts of tests/infra/libvirt_hosts.sh.

``./bootstrap.sh test`` starts them; when they do not answer these tests fail
with the reason (skip only under FM_ALLOW_MISSING=realhosts). Domains are named ``fmv-<random>`` and
removed afterwards: other tests may use the same hosts at the same time.
``resync_interval`` is an hour in every test, so whatever reaches the
database in time came through libvirt's events or close callback.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Guest, Step
from fogmachine.services import lifecycle
from fogmachine.services.actor import Actor
from fogmachine.virt.connection import CLOSE_REASONS
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml, parse_domain_xml
from tests.support import realhosts
from tests.support.hostfleet import fleet  # noqa: F401

pytestmark = pytest.mark.realhosts

ROOT = Path(__file__).resolve().parent.parent.parent
HOSTS_SH = ROOT / "tests" / "infra" / "libvirt_hosts.sh"
URI1, URI2 = realhosts.URIS["rh1"], realhosts.URIS["rh2"]
KERNEL, INITRD = realhosts.KERNEL, realhosts.INITRD


@pytest.fixture(autouse=True)
def _need_hosts(real_hosts: None) -> None:
    """Every test here uses the real hosts (the fixture fails when they are down)."""


def virsh(uri: str, *args: str) -> str:
    done = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"virsh {' '.join(args)}: {done.stderr}"
    return done.stdout


def tiny_spec(name: str, guest_id: int | None = None) -> DomainSpec:
    (realhosts.STATE / "smoke").mkdir(parents=True, exist_ok=True)
    return DomainSpec(name=name, domain_type="qemu", memory_mb=256, vcpus=1, boot="kernel", kernel=str(KERNEL),
                      initrd=str(INITRD), cmdline=f"console=ttyS0 panic=-1 fm.hostname={name}",
                      serial_log=str(realhosts.STATE / "smoke" / f"{name}.log"), guest_id=guest_id)


def remove_domain(uri: str, name: str) -> None:
    """Best-effort cleanup, whatever state the test left the domain in."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()
    (realhosts.STATE / "smoke" / f"{name}.log").unlink(missing_ok=True)


@pytest.fixture
def domain_name():
    name = f"fmv-{uuid.uuid4().hex[:8]}"
    yield name
    for uri in (URI1, URI2):
        remove_domain(uri, name)


def test_two_guests_started_at_the_same_moment_one_on_each_host_both_start(domain_name: str) -> None:
    """Both hosts live on one machine, so their guests' VNC servers share its ports. Each host has its own
    display range in its qemu.conf (tests/infra/libvirt_hosts.sh); with libvirt's default range both
    picked 5900 at the same moment and one start failed with "Failed to find an available port"."""
    barrier = threading.Barrier(2)

    def define_and_start(uri: str) -> tuple[str, int | None]:
        spec = dataclasses.replace(tiny_spec(domain_name),
                                   serial_log=str(realhosts.STATE / "smoke" / f"{domain_name}-{uri[-9:-7]}.log"))
        conn = libvirt.open(uri)
        try:
            dom = conn.defineXML(build_domain_xml(spec))
            barrier.wait(timeout=60)
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                return f"failed: {exc}", None
            return "started", parse_domain_xml(dom.XMLDesc()).vnc_port
        finally:
            conn.close()

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(define_and_start, (URI1, URI2)))
    finally:
        for log in (realhosts.STATE / "smoke").glob(f"{domain_name}-*.log"):
            log.unlink(missing_ok=True)
    assert [state for state, _ in results] == ["started", "started"], results
    ports = [port for _, port in results]
    assert None not in ports and ports[0] != ports[1], ports


def events_of(host, name: str) -> list[str]:
    return [e.event for e in host.recent_events if e.domain == name]


def reader(fn):
    """An async read for Fleet.wait_for from a plain function."""
    async def read():
        return fn()
    return read


async def test_real_guest_events_actions_and_changes_behind_our_back(make_config, fleet, domain_name):  # noqa: F811
    running = await fleet(make_config(hosts={"q1": URI1}, resync_interval="3600", shutdown_timeout="2"))
    host = running.hosts.get("q1")
    assert host.connected
    owner = await running.add_user("ann")
    ann = Actor(user_id=owner, username="ann")
    host_id = (await running.host_row("q1")).id

    def add(s):
        guest = Guest(name=domain_name, live_name=domain_name, domain_name=domain_name, owner_id=owner,
                      host_id=host_id, step=Step.READY)
        s.add(guest)
        s.flush()
        return guest.id

    gid = await running.db(add)
    info = await host.define(build_domain_xml(tiny_spec(domain_name, gid)))
    assert info.guest_id == gid and info.state == "shutoff"

    def state():
        return running.db(lambda s: s.scalar(select(Guest.state).where(Guest.id == gid)))

    # boot: QEMU sends RESUMED then STARTED, and the row follows
    guest = await lifecycle.perform(running.ctx, ann, gid, "start")
    assert guest.state == "running" and guest.managed
    assert guest.vnc_port is not None and guest.vnc_port >= 5900  # autoport, read from the live XML
    await running.wait_for(reader(lambda: events_of(host, domain_name)), lambda evs: "STARTED" in evs)
    assert events_of(host, domain_name)[-2:] == ["RESUMED", "STARTED"]

    before = len(events_of(host, domain_name))
    assert (await lifecycle.perform(running.ctx, ann, gid, "pause")).state == "paused"
    assert (await lifecycle.perform(running.ctx, ann, gid, "unpause")).state == "running"
    # the action answers from its own read of the domain; the events arrive on their own time
    await running.wait_for(reader(lambda: events_of(host, domain_name)[before:]), lambda evs: len(evs) >= 2)
    assert events_of(host, domain_name)[before:] == ["SUSPENDED", "RESUMED"]

    # busybox init ignores ACPI: the graceful stop is reported as ignored after shutdown_timeout
    assert (await lifecycle.perform(running.ctx, ann, gid, "stop")).state == "running"

    def stop_results():
        return running.db(lambda s: [e.result for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "guest.stop").order_by(AuditEvent.id))])

    assert await running.wait_for(stop_results, lambda r: r == ["ok", "ignored"]) == ["ok", "ignored"]
    row = await running.guest_row(domain_name)
    assert row.step_reason == f"guest {domain_name} ignored the shutdown request for 2 s; destroy powers it off"

    # behind Fogmachine's back, with virsh: the events bring each change to the row
    virsh(URI1, "suspend", domain_name)
    assert await running.wait_for(state, lambda v: v == "paused") == "paused"
    virsh(URI1, "resume", domain_name)
    assert await running.wait_for(state, lambda v: v == "running") == "running"
    before = len(events_of(host, domain_name))
    virsh(URI1, "destroy", domain_name)
    assert await running.wait_for(state, lambda v: v == "shutoff") == "shutoff"
    await running.wait_for(reader(lambda: events_of(host, domain_name)[before:]), lambda evs: "STOPPED" in evs)
    assert events_of(host, domain_name)[before:] == ["SHUTDOWN", "STOPPED"]
    assert (await running.host_row("q1")).state == "up"

    await lifecycle.delete(running.ctx, ann, gid)
    assert await running.guest_row(domain_name) is None
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(URI1).lookupByName(domain_name)


def hosts_sh(*args: str) -> None:
    done = subprocess.run(["bash", str(HOSTS_SH), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.disruptive
async def test_dead_libvirtd_goes_down_at_once_and_comes_back(make_config, fleet, domain_name):  # noqa: F811
    running = await fleet(make_config(hosts={"q1": URI1, "q2": URI2}, resync_interval="3600"))
    conn2 = libvirt.open(URI2)
    try:
        conn2.defineXML(build_domain_xml(tiny_spec(domain_name)))
    finally:
        conn2.close()
    mirror = await running.wait_for(lambda: running.guest_row(domain_name, "q2"), lambda g: g is not None)
    assert mirror is not None and mirror.state == "shutoff" and not mirror.managed

    def q2():
        return running.host_row("q2")

    try:
        started = time.monotonic()
        hosts_sh("stop-host", "2")
        down = await running.wait_for(q2, lambda h: h.state == "down")
        took = time.monotonic() - started
        print(f"\nhost 2 marked down {took:.3f} s after its libvirtd was killed")
        assert down.state == "down"
        # the close callback did it (the periodic resync is an hour away)
        assert down.state_reason in CLOSE_REASONS.values() or "cannot be reached" in down.state_reason
        assert (await running.guest_row(domain_name, "q2")).state == "unknown"

        # host 1 keeps working meanwhile: a domain defined and started there behind our back shows up
        other = f"{domain_name}-q1"
        try:
            conn1 = libvirt.open(URI1)
            try:
                conn1.defineXML(build_domain_xml(tiny_spec(other)))
            finally:
                conn1.close()
            virsh(URI1, "start", other)
            seen = await running.wait_for(lambda: running.guest_row(other, "q1"),
                                          lambda g: g is not None and g.state == "running")
            assert seen is not None and seen.state == "running"
        finally:
            remove_domain(URI1, other)
        assert (await running.host_row("q1")).state == "up"
    finally:
        hosts_sh("start-host", "2")
    up = await running.wait_for(q2, lambda h: h.state == "up", deadline=90)
    assert up.state == "up" and up.state_reason == ""
    back = await running.wait_for(lambda: running.guest_row(domain_name, "q2"), lambda g: g.state == "shutoff")
    assert back.state == "shutoff"
