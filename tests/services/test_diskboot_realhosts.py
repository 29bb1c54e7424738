"""A guest whose switch to disk boot failed because its host was away: a real fault on the real host 1.

Fogmachine reaches the real libvirtd (qemu+tcp://127.0.0.1/system) through a TcpProxy, and the tiny
guest reaches Fogmachine through another one. The guest installs (boots its kernel with a blank disk
made in the host's ``default`` pool); then the host's proxy is cut (connections reset, new ones refused,
as a dead host does) and only then may the guest phone home. Its phone-home is answered, the switch
fails, the guest is ready with the warning; a later phone-home keeps the warning (it used to clear it);
the host comes back and the switch is done without any phone-home, the warning cleared.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fogmachine.config import Config
from fogmachine.db.models import Step
from fogmachine.services import checkout as co
from fogmachine.services.diskboot import NOT_SWITCHED
from tests.services.test_diskimages_realhosts import dumpxml, pool, pool_volumes
from tests.support import provisioning as pv
from tests.support import realhosts as rh
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.realhosts
PREFIX = "fmtest-dbr-"
LIBVIRTD = ("127.0.0.1", 16509)  # host 1's daemon
__all__ = ["pool"]  # the fixture: host 1's 'default' pool


@pytest.fixture
def proxies() -> Iterator[tuple[TcpProxy, TcpProxy]]:
    host, phone = TcpProxy(LIBVIRTD).start(), TcpProxy(("127.0.0.1", 1))  # phone's target is set below
    yield host, phone
    host.cut()
    phone.cut()


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 database_url: str, pool: Path, proxies: tuple[TcpProxy, TcpProxy]) -> Any:
    host, phone = proxies
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    catalog = pv.write_catalog(tmp_path / "catalog.conf", {
        "install": {"virt_type": "qemu", "ram_mb": 256, "vcpus": 1, "network": "user", "disk_gb": 1,
                    "boot": "kernel", "kernel": str(rh.KERNEL), "initrd": str(rh.INITRD), "phonehome": "yes",
                    "cmdline": "console=ttyS0 panic=-1 fm.hostname={name} fm.phonehome={phonehome_url}"},
    })
    port = rh.free_port()
    phone.target = ("127.0.0.1", port)
    phone.start()
    phone.cut()  # the guest cannot phone home until the test lets it (it retries every second for a minute)
    virthosts = tmp_path / "proxied-virthosts.conf"
    virthosts.write_text(f"rh1, qemu+tcp://127.0.0.1:{host.port}/system, qemu\n")
    config = make_config(hosts={}, virthosts=str(virthosts), local_catalog=str(catalog), listen_port=str(port),
                         public_url=f"http://10.0.2.2:{phone.port}", console_log_dir=str(rh.CONSOLE_DIR),
                         database_connection=database_url,
                         # No periodic retry during the test: what brings the switch is the host coming back.
                         diskboot_retry_interval="3600")
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    srv.config = config
    yield srv
    rh.remove_domains(PREFIX)
    for leftover in pool_volumes():
        if leftover.startswith(PREFIX):
            rh.virsh("rh1", "vol-delete", "--pool", "default", leftover)


def _phonehome_path(name: str) -> str:
    """The guest's own phone-home URL (token included), read from its domain on the real daemon directly."""
    cmdline = dumpxml(name).findtext("./os/cmdline") or ""
    url = re.search(r"fm\.phonehome=(\S+)", cmdline)
    assert url is not None, cmdline
    parts = urlsplit(url.group(1))
    return f"{parts.path}?{parts.query}"


async def _installed_while_the_host_is_away(server: Any, proxies: tuple[TcpProxy, TcpProxy], name: str) -> Any:
    """Check out, let the guest install, cut the host, let the guest phone home: ready, with the warning."""
    host, phone = proxies
    ctx = server.ctx
    guest = await co.checkout(ctx, server.alice, co.CheckoutRequest(name, "install", 1, "disk boot retry"))
    row = await pv.wait_for(lambda: pv.guest(ctx, guest.id), lambda g: g.step in (Step.INSTALLING, Step.FAILED),
                            deadline=120)
    assert row.step == Step.INSTALLING, row.step_reason
    assert row.volume_path and dumpxml(name, "--inactive").findtext("./os/kernel") == str(rh.KERNEL)

    host.cut()  # the host is away ...
    phone.restore()  # ... when the guest phones home
    row = await pv.wait_for(lambda: pv.guest(ctx, guest.id),
                            lambda g: g.step == Step.READY and g.step_reason.startswith(NOT_SWITCHED), deadline=120)
    assert row.step == Step.READY and row.step_reason.startswith(NOT_SWITCHED), \
        f"{row.step} {row.step_reason!r}\n{rh.console(name)}"
    assert row.hostname == name and row.diskboot_pending
    assert dumpxml(name, "--inactive").findtext("./os/kernel") == str(rh.KERNEL)  # would reinstall at next boot
    return guest


async def test_the_switch_is_retried_until_done_and_the_warning_kept_until_then(
        server: Any, proxies: tuple[TcpProxy, TcpProxy]) -> None:
    host, _ = proxies
    ctx, name = server.ctx, PREFIX + uuid.uuid4().hex[:6]
    guest = await _installed_while_the_host_is_away(server, proxies, name)

    # A later phone-home (the installer's retry, or a reinstall) keeps the warning: the switch is not done.
    reply = await server.fetch(_phonehome_path(name))
    assert reply.code == 200, reply.body  # the token still works: the guest's next boot is an install
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert row.diskboot_pending and row.step_reason.startswith(NOT_SWITCHED), row.step_reason

    host.restore()  # the host is back: the switch is done without any phone-home, the warning cleared
    row = await pv.wait_for(lambda: pv.guest(ctx, guest.id), lambda g: not g.diskboot_pending, deadline=120)
    assert not row.diskboot_pending and row.step_reason == "", row.step_reason
    persistent = dumpxml(name, "--inactive")
    assert persistent.find("./os/kernel") is None and [b.get("dev") for b in persistent.findall("./os/boot")] == ["hd"]
    diskboot = [a for a in pv.audit_actions(ctx, name) if a[0] == "guest.diskboot"]
    # One failure line per distinct reason: the cut may be seen as "closed" and then as "refused".
    assert diskboot[-1] == ("guest.diskboot", "ok") and 1 <= len(diskboot) - 1 <= 2
    assert set(diskboot[:-1]) == {("guest.diskboot", "failed")}


async def test_a_restarted_server_does_not_forget_the_pending_switch(
        server: Any, proxies: tuple[TcpProxy, TcpProxy], start_server: Callable[..., Any]) -> None:
    host, _ = proxies
    name = PREFIX + uuid.uuid4().hex[:6]
    guest = await _installed_while_the_host_is_away(server, proxies, name)
    await server.server.stop()  # nothing of the pending switch lives in memory past this
    host.restore()
    again = await start_server(server.config)
    row = await pv.wait_for(lambda: pv.guest(again.ctx, guest.id), lambda g: not g.diskboot_pending, deadline=120)
    assert not row.diskboot_pending and row.step_reason == "", row.step_reason
    assert dumpxml(name, "--inactive").find("./os/kernel") is None
