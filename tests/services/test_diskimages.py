"""Checkout of disk-image profiles on test-driver hosts: the overlay, placement by pool, the 409, the undo."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import pytest

from fogmachine.config import Config
from fogmachine.db.models import GuestState, Step
from fogmachine.errors import NoCapacity
from fogmachine.services import checkout as co
from fogmachine.services import lifecycle
from fogmachine.services.checkout import CheckoutRequest
from tests.support import provisioning as pv
from tests.support import testhosts
from tests.support.hostfleet import write_pool_host

BASE = "/var/lib/fogmachine/images/base.qcow2"
PROFILES = {
    "cloud": {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "image": BASE, "disk_gb": 20},
    "blank": {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "boot": "network", "disk_gb": 5},
}


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path):
    async def start(hosts: dict[str, Any]) -> Any:
        catalog = pv.write_catalog(tmp_path / "catalog.conf", PROFILES)
        srv = await start_server(make_config(hosts=hosts, local_catalog=str(catalog)))
        srv.alice = pv.add_user(srv.ctx, "alice")
        return srv

    return start


def pooled(tmp_path: Path, name: str, **kwargs: Any) -> str:
    return write_pool_host(tmp_path / "hosts", name, tmp_path / f"pool-{name}", **kwargs)


def bare(tmp_path: Path, name: str, **kwargs: Any) -> str:
    return testhosts.write_host(tmp_path / "hosts", name, **kwargs)


async def read(srv: Any, host: str, fn: Callable[..., Any], *args: Any) -> Any:
    return await srv.ctx.hosts.get(host)._call(fn, *args, action="test read")


async def volumes(srv: Any, host: str) -> list[str]:
    return sorted(await read(srv, host, lambda c: c.storagePoolLookupByName("default").listVolumes()))


def req(name: str, target: str = "cloud") -> CheckoutRequest:
    return CheckoutRequest(name=name, target=target, days=2, purpose="image test")


async def test_the_guest_boots_an_overlay_of_the_image(server: Any, tmp_path: Path) -> None:
    srv = await server({"h1": pooled(tmp_path, "h1")})
    guest = await co.checkout(srv.ctx, srv.alice, req("cloud1"))
    await pv.settle(srv.ctx)
    row = pv.guest(srv.ctx, guest.id)
    overlay = str(tmp_path / "pool-h1" / "cloud1.qcow2")
    assert (row.step, row.state, row.volume_path) == (Step.READY, GuestState.RUNNING, overlay)
    volume = ET.fromstring(await read(srv, "h1", lambda c: c.storageVolLookupByPath(overlay).XMLDesc(0)))
    assert volume.findtext("./backingStore/path") == BASE
    assert volume.find("./capacity").text == str(20 * 1024**3)
    domain = ET.fromstring(await read(srv, "h1", lambda c: c.lookupByName("cloud1").XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)))
    assert domain.find("./devices/disk/source").get("file") == overlay
    assert [b.get("dev") for b in domain.findall("./os/boot")] == ["hd"] and domain.find("./os/kernel") is None
    await lifecycle.delete(srv.ctx, srv.alice, guest.id)
    assert await volumes(srv, "h1") == []  # the overlay went with the guest (the image is not in the pool)


async def test_only_hosts_with_a_pool_take_an_image(server: Any, tmp_path: Path) -> None:
    # spread would pick the roomier host, which has no pool.
    srv = await server({"roomy": bare(tmp_path, "roomy", memory_mb=16384), "pooled": pooled(tmp_path, "pooled")})
    preview = await co.preview(srv.ctx, srv.alice, "cloud")
    assert preview["host"] == "pooled"
    assert {h["name"]: h["reason"] for h in preview["hosts"]}["roomy"] == \
        "no active storage pool 'default' for the image's overlay"
    guest = await co.checkout(srv.ctx, srv.alice, req("cloud1"))
    assert guest.host.name == "pooled"
    blank = await co.checkout(srv.ctx, srv.alice, req("blank1", "blank"))
    assert blank.host.name == "roomy"  # a blank disk is optional: no pool needed
    await pv.settle(srv.ctx)


async def test_no_host_with_a_pool_is_a_409_and_nothing_is_made(server: Any, tmp_path: Path) -> None:
    srv = await server({"h1": bare(tmp_path, "h1"), "h2": bare(tmp_path, "h2")})
    with pytest.raises(NoCapacity) as info:
        await co.checkout(srv.ctx, srv.alice, req("cloud1"))
    error = info.value
    assert error.status == 409
    assert error.message == ("no host can take 1024 MiB and 1 vCPU(s) (kvm): "
                             "h1: no active storage pool 'default' for the image's overlay; "
                             "h2: no active storage pool 'default' for the image's overlay")
    assert error.details["hosts"]["h1"] == "no active storage pool 'default' for the image's overlay"
    assert pv.count_guests(srv.ctx) == 0
    assert await pv.Domains(srv.ctx).names("h1") == set()
    assert ("guest.checkout", "refused") in pv.audit_actions(srv.ctx, "cloud1")


async def test_a_pool_gone_after_placement_fails_the_guest_and_undoes_it(server: Any, tmp_path: Path) -> None:
    srv = await server({"h1": pooled(tmp_path, "h1")})
    first = await co.checkout(srv.ctx, srv.alice, req("cloud1"))
    await pv.settle(srv.ctx)
    await lifecycle.delete(srv.ctx, srv.alice, first.id)
    # The pool goes while placement still trusts its last answer (remembered for POOL_TTL seconds).
    await read(srv, "h1", lambda c: c.storagePoolLookupByName("default").destroy())
    guest = await co.checkout(srv.ctx, srv.alice, req("cloud2"))
    await pv.settle(srv.ctx)
    row = pv.guest(srv.ctx, guest.id)
    assert row.step == Step.FAILED
    assert row.step_reason == f"host h1 has no active storage pool 'default' for the image's overlay ({BASE})"
    assert (row.volume_path, row.state) == ("", GuestState.UNDEFINED)
    assert "cloud2" not in await pv.Domains(srv.ctx).names("h1")
    # The host's answer was corrected: the next checkout is refused up front.
    with pytest.raises(NoCapacity):
        await co.checkout(srv.ctx, srv.alice, req("cloud3"))
