"""The provisioning steps through the running server: a failed step's undo, a row gone meanwhile, phone-home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from fogmachine.db.models import GuestState, Host, Step
from fogmachine.services import checkout as co
from tests.services.checkout.conftest import pool_host, req
from tests.support import provisioning as pv


async def failed_xen_checkout(server: Any, tmp_path: Path) -> tuple[Any, Any]:
    """A server whose one host is xen, and a guest whose checkout failed there: the host takes the
    placement and the volume, then the domain builder refuses a xen domain."""
    srv = await server(hosts={"x1": pool_host(tmp_path / "pools", "x1", memory_mb=6144)})
    srv.ctx.db.run_sync(lambda s: s.execute(update(Host).where(Host.name == "x1").values(virt_type="xen")))
    guest = await co.checkout(srv.ctx, srv.alice, req("xen1", "vm-xen"))
    await pv.settle(srv.ctx)
    row = pv.guest(srv.ctx, guest.id)
    assert row.step == Step.FAILED and "domain type" in row.step_reason
    return srv, row


async def test_a_failed_step_undoes_the_earlier_ones_and_releases_capacity(server: Any, tmp_path: Path) -> None:
    srv, row = await failed_xen_checkout(server, tmp_path)
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
    _, row = await failed_xen_checkout(server, tmp_path)
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


async def test_a_guest_gets_a_pty_serial_port_with_its_log_and_a_vnc_password_of_its_own(server: Any) -> None:
    """What the consoles need from the domain: a pty to open (its log file keeps the tail) and a password."""
    import xml.etree.ElementTree as ET

    srv = await server(vnc_listen="0.0.0.0", console_log_dir="/var/log/fm-consoles/")
    passwords = []
    for name in ("con1", "con2"):
        guest = await co.checkout(srv.ctx, srv.alice, req(name))
        await pv.settle(srv.ctx)
        row = pv.guest(srv.ctx, guest.id)
        assert row.step == Step.READY, row.step_reason
        seen: list[str] = []
        await srv.ctx.hosts.get("h1").redefine(row.domain_name, seen.append)
        root = ET.fromstring(seen[0])  # the persistent XML with its secrets, as libvirt keeps it
        serial = root.find("./devices/serial")
        assert serial is not None and serial.get("type") == "pty"
        assert serial.find("log").attrib == {"file": f"/var/log/fm-consoles/{name}.log", "append": "on"}
        graphics = root.find("./devices/graphics")
        assert graphics is not None and graphics.get("listen") == "0.0.0.0"
        password = graphics.get("passwd") or ""
        assert len(password) == 8 and password.isalnum()
        passwords.append(password)
    assert passwords[0] != passwords[1]
