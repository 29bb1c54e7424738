"""Disk images and the switch to disk boot on the real libvirtd/QEMU host 1 (qemu+tcp://127.0.0.1/system).

The test makes a small qcow2 image with qemu-img, gives host 1 a 'default' directory pool under the test
state directory when it has none (and removes it again), and checks what libvirt and qemu-img say about
the overlay Fogmachine made: the domain's disk is the overlay, the overlay's backing file is the image,
and deleting the guest removes the overlay but never the image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fogmachine.config import Config
from fogmachine.db.models import GuestState, Step
from fogmachine.services import checkout as co
from fogmachine.services import lifecycle
from tests.support import provisioning as pv
from tests.support import realhosts as rh
from tests.support import realparts

pytestmark = pytest.mark.realhosts
PREFIX = "fmtest-img-"
POOL_DIR = rh.STATE / "pool"
IMAGES = rh.STATE / "images"


@pytest.fixture(scope="module")
def pool() -> Iterator[Path]:
    """Host 1's active 'default' pool: the one it has, or one defined here and removed afterwards."""
    rh.require()
    if shutil.which("qemu-img") is None:
        realparts.missing("realhosts", "qemu-img missing (libvirt needs it for qcow2 volumes): "
                          "bash tests/infra/libvirt_hosts.sh install")
    made = started = False
    if rh.virsh("rh1", "pool-info", "default").returncode != 0:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        done = rh.virsh("rh1", "pool-define-as", "default", "dir", "--target", str(POOL_DIR))
        assert done.returncode == 0, done.stderr
        made = True
    if "running" not in rh.virsh("rh1", "pool-info", "default").stdout:
        done = rh.virsh("rh1", "pool-start", "default")
        assert done.returncode == 0, done.stderr
        started = True
    target = ET.fromstring(rh.virsh("rh1", "pool-dumpxml", "default").stdout).findtext("./target/path")
    yield Path(target)
    if started:
        rh.virsh("rh1", "pool-destroy", "default")
    if made:
        rh.virsh("rh1", "pool-undefine", "default")


@pytest.fixture
def base(pool: Path) -> Iterator[Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"base-{uuid.uuid4().hex[:8]}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True, timeout=60)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 base: Path, real_hosts: None) -> Any:
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    tiny = {"virt_type": "qemu", "ram_mb": 256, "vcpus": 1, "network": "user"}
    catalog = pv.write_catalog(tmp_path / "catalog.conf", {
        "cloud": {**tiny, "image": str(base)},  # boot = disk, the image's own size
        "gone": {**tiny, "image": str(IMAGES / "no-such-image.qcow2")},
        "install": {**tiny, "image": str(base), "disk_gb": 1, "boot": "kernel", "kernel": str(rh.KERNEL),
                    "initrd": str(rh.INITRD), "phonehome": "yes",
                    "cmdline": "console=ttyS0 panic=-1 fm.hostname={name} fm.phonehome={phonehome_url}"},
    })
    port = rh.free_port()
    config = make_config(hosts={}, virthosts=str(rh.write_virthosts(tmp_path / "real-virthosts.conf", ("rh1",))),
                         local_catalog=str(catalog), listen_port=str(port), public_url=f"http://10.0.2.2:{port}",
                         console_log_dir=str(rh.CONSOLE_DIR))
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    srv.base = base
    yield srv
    rh.remove_domains(PREFIX)
    for leftover in pool_volumes():
        if leftover.startswith(PREFIX):
            rh.virsh("rh1", "vol-delete", "--pool", "default", leftover)


def pool_volumes() -> set[str]:
    done = rh.virsh("rh1", "vol-list", "default")
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def dumpxml(name: str, *flags: str) -> ET.Element:
    done = rh.virsh("rh1", "dumpxml", name, *flags)
    assert done.returncode == 0, done.stderr
    return ET.fromstring(done.stdout)


def image_info(path: str) -> dict[str, Any]:
    # -U: QEMU holds a lock on the overlay while the guest runs; reading the header is safe.
    done = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_the_guest_runs_on_an_overlay_and_delete_keeps_the_image(server: Any, pool: Path) -> None:
    ctx, name = server.ctx, PREFIX + uuid.uuid4().hex[:6]
    guest = await co.checkout(ctx, server.alice, co.CheckoutRequest(name, "cloud", 1, "image on a real host"))
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert (row.step, row.state) == (Step.READY, GuestState.RUNNING), row.step_reason
    overlay = row.volume_path
    assert overlay == str(pool / f"{name}.qcow2")
    disk = dumpxml(name).find("./devices/disk")
    assert disk.find("source").get("file") == overlay and disk.find("driver").get("type") == "qcow2"
    assert [b.get("dev") for b in dumpxml(name, "--inactive").findall("./os/boot")] == ["hd"]
    info = image_info(overlay)
    assert (info["format"], info["backing-filename"], info["virtual-size"]) == ("qcow2", str(server.base), 64 << 20)
    assert info["backing-filename-format"] == "qcow2"
    await lifecycle.delete(ctx, server.alice, guest.id)
    assert name not in rh.domain_names("rh1")
    assert not Path(overlay).exists() and f"{name}.qcow2" not in pool_volumes()
    assert server.base.is_file() and image_info(str(server.base))["format"] == "qcow2"  # the image stays


async def test_a_missing_image_fails_the_guest_with_its_path_and_leaves_nothing(server: Any) -> None:
    ctx, name = server.ctx, PREFIX + uuid.uuid4().hex[:6]
    guest = await co.checkout(ctx, server.alice, co.CheckoutRequest(name, "gone", 1, "missing image"))
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert row.step == Step.FAILED
    assert row.step_reason.startswith(f"host rh1 cannot use the disk image for {name}: ")
    assert str(IMAGES / "no-such-image.qcow2") in row.step_reason
    assert name not in rh.domain_names("rh1") and f"{name}.qcow2" not in pool_volumes()


async def test_the_installed_guest_boots_its_disk_next_time(server: Any) -> None:
    ctx, name = server.ctx, PREFIX + uuid.uuid4().hex[:6]
    guest = await co.checkout(ctx, server.alice, co.CheckoutRequest(name, "install", 1, "install then disk"))
    row = await pv.wait_for(lambda: pv.guest(ctx, guest.id), lambda g: g.step in (Step.READY, Step.FAILED))
    assert row.step == Step.READY, f"{row.step} {row.step_reason}\n{rh.console(name)}"
    # The switch follows the phone-home's answer in the background: wait for its audit event.
    events = await pv.wait_for(lambda: pv.audit_actions(ctx, name),
                               lambda found: any(action == "guest.diskboot" for action, _ in found))
    assert ("guest.diskboot", "ok") in events, (events, pv.guest(ctx, guest.id).step_reason)
    persistent = dumpxml(name, "--inactive")
    assert persistent.find("./os/kernel") is None and persistent.find("./os/cmdline") is None
    assert [b.get("dev") for b in persistent.findall("./os/boot")] == ["hd"]
    assert persistent.find("./devices/disk/source").get("file") == row.volume_path
    live = dumpxml(name)
    assert live.findtext("./os/kernel") == str(rh.KERNEL)  # this boot is left alone
    assert rh.virsh("rh1", "domstate", name).stdout.strip() == "running"
    # Power-cycled, the guest comes up from its disk, not the installer's kernel.
    await lifecycle.perform(ctx, server.alice, guest.id, "destroy")
    await lifecycle.perform(ctx, server.alice, guest.id, "start")
    again = dumpxml(name)
    assert again.find("./os/kernel") is None and [b.get("dev") for b in again.findall("./os/boot")] == ["hd"]
    await lifecycle.delete(ctx, server.alice, guest.id)
    assert name not in rh.domain_names("rh1") and server.base.is_file()
