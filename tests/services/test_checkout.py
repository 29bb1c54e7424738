"""Checkout through the running server on libvirt test-driver hosts with the local catalog."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from fogmachine.config import Config
from fogmachine.db.models import GuestState, Host, Step
from fogmachine.errors import CobblerError, NoCapacity, PermissionDenied, ValidationError
from fogmachine.services import checkout as co
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest
from tests.support import provisioning as pv

UNIT = {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "boot": "network", "network": "user"}
PROFILES = {
    "unit": UNIT,
    "big": {**UNIT, "ram_mb": 6144, "vcpus": 2},
    "vm-xen": {**UNIT, "virt_type": "xen", "disk_gb": 5},
    "announce": {**UNIT, "boot": "kernel", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img",
                 "cmdline": "console=ttyS0 fm.hostname={name} fm.phonehome={phonehome_url}", "phonehome": "yes"},
}
POOL = """<pool type='dir'><name>default</name><uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>
<capacity unit='GiB'>100</capacity><allocation>0</allocation><available unit='GiB'>100</available>
<source/><target><path>/var/lib/libvirt/images</path></target></pool>"""


def pool_host(directory: Path, name: str, *, cpus: int = 4, memory_mb: int = 8192) -> str:
    """A test-driver host with a 'default' storage pool (volumes are created in it)."""
    import xml.etree.ElementTree as ET

    from tests.support.testhosts import host_xml

    node = ET.fromstring(host_xml(cpus=cpus, memory_mb=memory_mb))
    node.append(ET.fromstring(POOL))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.xml"
    path.write_text(ET.tostring(node, encoding="unicode"))
    return f"test://{path}"


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 database_url: str):
    """A server on each of the three databases: checkout is the write every user makes."""

    async def start(hosts: dict[str, Any] | None = None, **settings: str) -> Any:
        catalog = pv.write_catalog(tmp_path / "catalog.conf", PROFILES)
        hosts = hosts if hosts is not None else {"h1": {"cpus": 4, "memory_mb": 8192}}
        settings.setdefault("database_connection", database_url)
        srv = await start_server(make_config(hosts=hosts, local_catalog=str(catalog), **settings))
        srv.alice = pv.add_user(srv.ctx, "alice")
        return srv

    return start


def req(name: str, target: str = "unit", days: Any = 3, purpose: str = "testing") -> CheckoutRequest:
    return CheckoutRequest(name=name, target=target, days=days, purpose=purpose)


async def test_checkout_places_defines_and_starts_the_guest(server: Any) -> None:
    srv = await server()
    ctx = srv.ctx
    guest = await co.checkout(ctx, srv.alice, req("web1"))
    # The answer comes before the domain exists: the steps run in the background.
    assert guest.step == Step.DEFINING and guest.host.name == "h1" and guest.owner_id == srv.alice.user_id
    assert guest.mac.startswith("52:54:00:") and len(guest.phonehome_token_hash) == 64
    assert guest.live_name == "web1" and guest.expires_at is not None and guest.worker
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert (row.step, row.state, row.step_reason, row.worker) == (Step.READY, GuestState.RUNNING, "", "")
    info = await pv.Domains(ctx).get("h1", "web1")
    assert info is not None and info.active and info.guest_id == guest.id
    assert info.mac == guest.mac and info.memory_mb == 1024 and info.vcpus == 1 and info.uuid == guest.uuid
    assert ("guest.checkout", "ok") in pv.audit_actions(ctx, "web1")


@pytest.mark.parametrize(("request_", "field"), [
    (req("Web1"), "name"), (req("-web"), "name"), (req("web_1"), "name"), (req("a" * 64), "name"),
    (req(""), "name"), (req("web", days=0), "days"), (req("web", days=31), "days"), (req("web", days="x"), "days"),
    (req("web", purpose=" "), "purpose"), (req("web", purpose="x" * 2001), "purpose"),
    (req("web", target="nope"), "target"), (req("web", target=""), "target"),
])
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(server: Any, request_: CheckoutRequest,
                                                                       field: str) -> None:
    srv = await server()
    with pytest.raises(ValidationError) as info:
        await co.checkout(srv.ctx, srv.alice, request_)
    assert info.value.status == 400 and info.value.details["field"] == field
    if field == "target" and request_.target:
        assert repr(request_.target) in info.value.message
    assert pv.count_guests(srv.ctx) == 0


async def test_a_duplicate_name_is_refused_while_the_first_lives(server: Any) -> None:
    srv = await server()
    await co.checkout(srv.ctx, srv.alice, req("web1"))
    bob = pv.add_user(srv.ctx, "bob")
    with pytest.raises(ValidationError) as info:
        await co.checkout(srv.ctx, bob, req("web1"))
    assert info.value.details["field"] == "name" and "web1 already exists" in info.value.message
    await pv.settle(srv.ctx)
    assert pv.count_guests(srv.ctx) == 1


async def test_no_room_is_a_409_with_what_was_asked_and_the_most_free(server: Any) -> None:
    srv = await server()
    await co.checkout(srv.ctx, srv.alice, req("big1", "big"))
    with pytest.raises(NoCapacity) as info:
        await co.checkout(srv.ctx, srv.alice, req("big2", "big"))
    error = info.value
    assert error.status == 409
    assert "6144 MiB and 2 vCPU(s)" in error.message and "2048 MiB (on h1)" in error.message
    assert error.details["requested"] == {"ram_mb": 6144, "vcpus": 2, "virt_type": "kvm"}
    assert error.details["most_free"]["ram_mb"] == 2048
    await pv.settle(srv.ctx)
    assert [g.name for g in pv.guests(srv.ctx)] == ["big1"]
    assert ("guest.checkout", "refused") in pv.audit_actions(srv.ctx, "big2")


async def test_read_only_tokens_and_ownerless_actors_cannot_check_out(server: Any) -> None:
    srv = await server()
    reader = Actor(srv.alice.user_id, "alice", scope="read")
    with pytest.raises(PermissionDenied):
        await co.checkout(srv.ctx, reader, req("web1"))
    with pytest.raises(PermissionDenied):
        await co.checkout(srv.ctx, Actor.system(), req("web1"))
    assert pv.count_guests(srv.ctx) == 0


@pytest.mark.parametrize(("policy", "expected"), [("spread", ["wide", "wide", "wide"]),
                                                  ("pack", ["narrow", "narrow", "wide"])])
async def test_placement_policy(server: Any, policy: str, expected: list[str]) -> None:
    srv = await server(hosts={"narrow": {"cpus": 4, "memory_mb": 2048}, "wide": {"cpus": 4, "memory_mb": 8192}},
                       placement_policy=policy)
    placed = [(await co.checkout(srv.ctx, srv.alice, req(f"g{i}"))).host.name for i in range(3)]
    assert placed == expected
    await pv.settle(srv.ctx)


async def test_preview_says_where_or_why_not(server: Any) -> None:
    srv = await server()
    answer = await co.preview(srv.ctx, srv.alice, "big")
    assert answer["host"] == "h1" and answer["fits"] and answer["target"]["ram_mb"] == 6144
    await co.checkout(srv.ctx, srv.alice, req("big1", "big"))
    answer = await co.preview(srv.ctx, srv.alice, "big")
    assert answer["host"] is None and "2048 MiB (on h1)" in answer["reason"]
    assert answer["hosts"] == [{"name": "h1", "free_ram_mb": 2048, "free_vcpus": 14, "fits": False,
                                "reason": "2048 MiB free"}]
    with pytest.raises(ValidationError):
        await co.preview(srv.ctx, srv.alice, "nope")
    await pv.settle(srv.ctx)


async def test_a_failed_step_undoes_the_earlier_ones_and_releases_capacity(server: Any, tmp_path: Path) -> None:
    # The xen host takes the placement and the volume, then the domain builder refuses a xen domain.
    srv = await server(hosts={"x1": pool_host(tmp_path / "pools", "x1", memory_mb=6144)})
    srv.ctx.db.run_sync(lambda s: s.execute(update(Host).where(Host.name == "x1").values(virt_type="xen")))
    guest = await co.checkout(srv.ctx, srv.alice, req("xen1", "vm-xen"))
    await pv.settle(srv.ctx)
    row = pv.guest(srv.ctx, guest.id)
    assert row.step == Step.FAILED and "domain type" in row.step_reason
    assert (row.state, row.volume_path, row.phonehome_token_hash, row.worker) == (GuestState.UNDEFINED, "", "", "")
    assert await pv.Domains(srv.ctx).names("x1") == set()
    pool = await srv.ctx.hosts.get("x1")._call(
        lambda c: c.storagePoolLookupByName("default").listVolumes(), action="list volumes")
    assert pool == []  # the volume made for it was deleted again
    assert ("guest.provision", "failed") in pv.audit_actions(srv.ctx, "xen1")
    # Its capacity is free again: a guest of the same size fits.
    again = await co.checkout(srv.ctx, srv.alice, req("xen2", "vm-xen"))
    assert again.host.name == "x1"
    await pv.settle(srv.ctx)


async def test_a_teardown_that_breaks_still_marks_the_guest_failed(server: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the teardown (a double of that one function) must not leave the guest 'defining' for ever."""
    from fogmachine.services import teardown

    async def broken(ctx: Any, holdings: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(teardown, "release_each", broken)
    srv = await server(hosts={"x1": pool_host(tmp_path / "pools", "x1", memory_mb=6144)})
    srv.ctx.db.run_sync(lambda s: s.execute(update(Host).where(Host.name == "x1").values(virt_type="xen")))
    guest = await co.checkout(srv.ctx, srv.alice, req("xen1", "vm-xen"))
    await pv.settle(srv.ctx)
    row = pv.guest(srv.ctx, guest.id)
    assert row.step == Step.FAILED and "domain type" in row.step_reason
    assert "cleanup incomplete: could not tear down: internal error RuntimeError" in row.step_reason
    assert row.volume_path  # what may be left stays named on the row, so a delete tries again


async def test_a_guest_deleted_while_being_provisioned_leaves_nothing(server: Any) -> None:
    srv = await server()
    guest = await co.checkout(srv.ctx, srv.alice, req("gone"))
    # Before the background steps get a turn (no await in between): the row disappears.
    srv.ctx.db.run_sync(lambda s: s.delete(s.get(type(guest), guest.id)))
    await pv.settle(srv.ctx)
    assert "gone" not in await pv.Domains(srv.ctx).names("h1")


async def test_guests_that_phone_home_wait_in_installing(server: Any) -> None:
    srv = await server()
    guest = await co.checkout(srv.ctx, srv.alice, req("talker", "announce"))
    await pv.settle(srv.ctx)
    assert pv.guest(srv.ctx, guest.id).step == Step.INSTALLING


async def test_a_phone_home_before_the_last_step_is_written_keeps_the_guest_ready(server: Any,
                                                                                 database_url: str) -> None:
    from fogmachine.services import phonehome
    from fogmachine.services.tokens import hash_token

    srv = await server(database_connection=database_url)
    guest = await co.checkout(srv.ctx, srv.alice, req("quick", "announce"))
    # Before the background steps get a turn: the guest announces itself (a fast guest on a slow server).
    srv.ctx.db.run_sync(lambda s: s.execute(update(type(guest)).where(type(guest).id == guest.id)
                                            .values(phonehome_token_hash=hash_token("t0ken"))))
    srv.ctx.db.run_sync(phonehome.record_address, guest.mac, "t0ken", "10.0.2.15", "quick", "127.0.0.1", lock=True)
    await pv.settle(srv.ctx)
    # The state comes from the host: a resync read before the start may land after the last step's write
    # (seen on MariaDB), and the next one (the STARTED event's) says running. Wait for it.
    row = await pv.wait_for(lambda: pv.guest(srv.ctx, guest.id), lambda g: g.state == GuestState.RUNNING, 30)
    assert (row.step, row.state, row.ip, row.worker) == (Step.READY, GuestState.RUNNING, "10.0.2.15", "")


async def test_an_unreachable_cobbler_is_a_502_naming_it_and_nothing_is_made(server: Any) -> None:
    srv = await server(cobbler_url="http://127.0.0.1:9/cobbler_api", cobbler_timeout="2")
    with pytest.raises(CobblerError) as info:
        await co.checkout(srv.ctx, srv.alice, req("web1", "some-profile"))
    assert info.value.status == 502 and "http://127.0.0.1:9/cobbler_api" in info.value.message
    assert pv.count_guests(srv.ctx) == 0


def test_kernel_command_lines(make_config: Callable[..., Config]) -> None:
    from fogmachine.catalog import CatalogEntry

    config = make_config(public_url="http://10.0.2.2:8080", cobbler_url="http://cobbler.example.org/cobbler_api")
    local = CatalogEntry("l", "local", 256, 1, 0, "qemu", cmdline="console=ttyS0 x={name} p={phonehome_url}")
    line = co.kernel_cmdline(config, local, "web1", "52:54:00:00:00:01", "tok")
    assert line == ("console=ttyS0 x=web1 p=http://10.0.2.2:8080/guest/52:54:00:00:00:01/set?"
                    "token=tok&hostname=web1")
    redhat = CatalogEntry("p", "profile", 256, 1, 0, "qemu", cmdline="console=ttyS0", breed="redhat")
    assert co.kernel_cmdline(config, redhat, "web1", "m", "t") == \
        "console=ttyS0 ks=http://cobbler.example.org/cblr/svc/op/autoinstall/system/web1"
    debian = CatalogEntry("p", "profile", 256, 1, 0, "qemu", breed="debian")
    assert "auto-install/enable=true priority=critical url=http://cobbler.example.org" in \
        co.kernel_cmdline(config, debian, "web1", "m", "t")
    other = CatalogEntry("p", "profile", 256, 1, 0, "qemu", breed="")
    config = config.replace(cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op/")
    assert co.kernel_cmdline(config, other, "web1", "m", "t") == \
        "autoinstall=http://10.0.2.2:25152/cblr/svc/op/autoinstall/system/web1"


def test_macs_are_locally_administered_qemu_macs() -> None:
    macs = {co.new_mac() for _ in range(200)}
    assert len(macs) > 190
    assert all(m.startswith("52:54:00:") and len(m) == 17 for m in macs)
