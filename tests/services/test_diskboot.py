"""After the phone-home, a kernel-booted guest with a disk boots its disk: on test-driver hosts, through
the running server's /guest/<mac>/set route."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import libvirt
import pytest
from sqlalchemy import update

from fogmachine.config import Config
from fogmachine.db.models import Guest, GuestState, Step
from fogmachine.services import checkout as co
from fogmachine.services.diskboot import NOT_SWITCHED
from fogmachine.services.tokens import hash_token
from tests.support import provisioning as pv
from tests.support.hostfleet import write_pool_host

TOKEN = "diskboot-token-0123456789abcdef"
KERNEL = {"virt_type": "kvm", "ram_mb": 512, "vcpus": 1, "boot": "kernel", "kernel": "/boot/vmlinuz",
          "initrd": "/boot/initrd.img", "cmdline": "ks=http://x/ks fm.phonehome={phonehome_url}", "phonehome": "yes"}
PROFILES = {
    "install": {**KERNEL, "disk_gb": 10},  # installs onto a blank disk
    "cloudinit": {**KERNEL, "image": "/images/base.qcow2", "disk_gb": 10},  # a kernel with an image's disk
    "diskless": KERNEL,  # a live system: nothing to boot from afterwards
}


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 database_url: str) -> Any:
    catalog = pv.write_catalog(tmp_path / "catalog.conf", PROFILES)
    host = write_pool_host(tmp_path / "hosts", "h1", tmp_path / "pool", cpus=4, memory_mb=8192)
    # Only the tests' own run_once retries: a background run of the task holds the guest while it tries
    # (diskboot.finish: one attempt per guest at a time), and the test's run then finds it busy.
    srv = await start_server(make_config(hosts={"h1": host}, local_catalog=str(catalog),
                                         database_connection=database_url, diskboot_retry_interval="3600"))
    await srv.tasks.wait_started()  # the run at start is over
    srv.alice = pv.add_user(srv.ctx, "alice")
    return srv


async def installing(srv: Any, name: str, target: str) -> Guest:
    """A guest checked out and waiting for its phone-home, whose token is TOKEN."""
    guest = await co.checkout(srv.ctx, srv.alice, co.CheckoutRequest(name, target, 1, "disk boot test"))
    await pv.settle(srv.ctx)
    srv.ctx.db.run_sync(lambda s: s.execute(update(Guest).where(Guest.id == guest.id)
                                            .values(phonehome_token_hash=hash_token(TOKEN))))
    row = pv.guest(srv.ctx, guest.id)
    assert row.step == Step.INSTALLING, row.step_reason
    return row


async def phone_home(srv: Any, guest: Guest) -> None:
    reply = await srv.fetch(f"/guest/{guest.mac}/set?{urlencode({'token': TOKEN, 'ip': '10.0.2.15'})}")
    assert reply.code == 200, reply.body
    await pv.settle(srv.ctx)  # the switch runs in the background, after the answer


async def xml(srv: Any, name: str, flags: int) -> ET.Element:
    text = await srv.ctx.hosts.get("h1")._call(lambda c: c.lookupByName(name).XMLDesc(flags), action="test read")
    return ET.fromstring(text)


@pytest.mark.parametrize("target", ["install", "cloudinit"])
async def test_the_installed_guest_boots_its_disk_from_its_next_boot_on(server: Any, target: str) -> None:
    guest = await installing(server, "inst1", target)
    running = await pv.Domains(server.ctx).get("h1", "inst1")
    await phone_home(server, guest)
    row = pv.guest(server.ctx, guest.id)
    assert (row.step, row.step_reason, row.ip) == (Step.READY, "", "10.0.2.15")
    persistent = await xml(server, "inst1", libvirt.VIR_DOMAIN_XML_INACTIVE)
    os_el = persistent.find("os")
    assert [child.tag for child in os_el if child.tag in ("kernel", "initrd", "cmdline")] == []
    assert [b.get("dev") for b in os_el.findall("boot")] == ["hd"]
    assert persistent.find("./devices/disk/source").get("file") == row.volume_path
    assert persistent.find("./devices/interface/mac").get("address") == guest.mac
    # The running guest was not touched: same boot, still on its installer's kernel until it reboots.
    live = await xml(server, "inst1", 0)
    assert live.findtext("./os/kernel") == "/boot/vmlinuz"
    now = await pv.Domains(server.ctx).get("h1", "inst1")
    assert (now.state, now.domain_id, now.guest_id) == (GuestState.RUNNING, running.domain_id, guest.id)
    assert ("guest.diskboot", "ok") in pv.audit_actions(server.ctx, "inst1")
    # A later phone-home (a new lease, a reinstall's) does not switch again.
    await phone_home(server, guest)
    assert pv.audit_actions(server.ctx, "inst1").count(("guest.diskboot", "ok")) == 1


async def test_a_guest_without_a_disk_keeps_its_kernel(server: Any) -> None:
    guest = await installing(server, "live1", "diskless")
    await phone_home(server, guest)
    assert pv.guest(server.ctx, guest.id).step == Step.READY
    persistent = await xml(server, "live1", libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert persistent.findtext("./os/kernel") == "/boot/vmlinuz"
    assert not [a for a in pv.audit_actions(server.ctx, "live1") if a[0] == "guest.diskboot"]


async def test_a_failed_switch_never_fails_the_phone_home_and_is_recorded(server: Any) -> None:
    guest = await installing(server, "inst2", "install")
    # The domain disappears behind Fogmachine's back before the guest phones home.
    conn = server.ctx.hosts.get("h1")
    await conn.destroy("inst2")
    await conn.undefine("inst2")
    await phone_home(server, guest)
    row = pv.guest(server.ctx, guest.id)
    assert row.step == Step.READY and row.ip == "10.0.2.15"
    assert row.step_reason == (f"{NOT_SWITCHED} (guest inst2 has no domain on host h1); "
                               "its next boot runs the installer again")
    assert ("guest.diskboot", "failed") in pv.audit_actions(server.ctx, "inst2")


async def test_the_periodic_retry_finishes_the_switch_once_the_domain_is_back(server: Any) -> None:
    guest = await installing(server, "inst3", "install")
    conn = server.ctx.hosts.get("h1")
    definition = ET.tostring(await xml(server, "inst3", libvirt.VIR_DOMAIN_XML_INACTIVE), encoding="unicode")
    await conn.destroy("inst3")
    await conn.undefine("inst3")
    await phone_home(server, guest)
    row = pv.guest(server.ctx, guest.id)
    assert row.diskboot_pending and row.step_reason.startswith(NOT_SWITCHED)
    # A later phone-home (its installer again) neither clears the warning nor audits the same failure twice.
    await phone_home(server, guest)
    row = pv.guest(server.ctx, guest.id)
    assert row.diskboot_pending and row.step_reason.startswith(NOT_SWITCHED)
    assert pv.audit_actions(server.ctx, "inst3").count(("guest.diskboot", "failed")) == 1

    await conn.define(definition)  # the domain is back (still booting the installer's kernel)
    assert await server.tasks.run_once("diskboot")  # the periodic task's run
    row = pv.guest(server.ctx, guest.id)
    assert not row.diskboot_pending and row.step_reason == ""
    assert (await xml(server, "inst3", libvirt.VIR_DOMAIN_XML_INACTIVE)).find("./os/kernel") is None
    assert pv.audit_actions(server.ctx, "inst3")[-1] == ("guest.diskboot", "ok")
