"""End to end: Cobbler, two real libvirtd/QEMU hosts, the running server and the tiny guest.

A user checks a guest out of the Cobbler profile. Fogmachine registers the
Cobbler system, defines the domain for direct kernel boot with
``ks=<Cobbler's rendered autoinstall for this system>`` on the command line and
starts it; the tiny guest's 'installer' fetches that file from Cobbler's svc app
(10.0.2.2 is the host's loopback inside QEMU's user network), runs its %post,
which holds the rendered ``fogmachine_user`` and ``fogmachine_update`` snippets,
and so asks the server who its owner is and phones home with its token. The
guest becomes ready with its IP and hostname; then it is stopped (destroyed:
the tiny guest ignores ACPI), started again and deleted, after which neither
the Cobbler system nor the domain exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogmachine.config import Config
from fogmachine.db.models import GuestState, Step
from fogmachine.services import checkout as co
from fogmachine.services import lifecycle
from tests.support import cobbler as cb
from tests.support import provisioning as pv
from tests.support import realhosts as rh

pytestmark = [pytest.mark.realhosts, pytest.mark.cobbler]
PREFIX = "fmtest-e2e-"


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 real_hosts: None, cobbler_server: None, database_url: str) -> Any:
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    port = rh.free_port()
    config = make_config(
        hosts={}, virthosts=str(rh.write_virthosts(tmp_path / "real-virthosts.conf")), listen_port=str(port),
        public_url=f"http://10.0.2.2:{port}", cobbler_url=cb.XMLRPC_URL, cobbler_password=cb.PASSWORD,
        cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op", console_log_dir=str(rh.CONSOLE_DIR),
        database_connection=database_url)
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    yield srv
    rh.remove_domains(PREFIX)
    cb.remove_systems(PREFIX)


def _state(ctx: Any, guest_id: int) -> Any:
    return pv.guest(ctx, guest_id)


async def test_checkout_install_phone_home_stop_start_delete(server: Any) -> None:
    ctx, name = server.ctx, PREFIX + uuid.uuid4().hex[:6]
    guest = await co.checkout(ctx, server.alice, co.CheckoutRequest(name, cb.PROFILE, 1, "end to end"))
    assert guest.step == Step.REGISTERING
    host = guest.host.name

    row = await pv.wait_for(lambda: _state(ctx, guest.id), lambda g: g.step in (Step.READY, Step.FAILED),
                            deadline=180)
    assert row.step == Step.READY, f"{row.step} {row.step_reason}\n--- console ---\n{rh.console(name)}"
    assert (row.ip, row.hostname, row.state) == ("10.0.2.15", name, GuestState.RUNNING)

    # What the guest was given: Cobbler's rendered autoinstall for its own system, on the kernel command line.
    xml = rh.virsh(host, "dumpxml", name).stdout
    assert f"ks=http://10.0.2.2:25152/cblr/svc/op/autoinstall/system/{name}" in xml
    assert guest.mac in xml
    system = await ctx.cobbler.get_system(name)
    assert system is not None and system["interfaces"]["eth0"]["mac_address"] == guest.mac
    # The guest prints its line after the server's answer reaches it: under load that can come a moment
    # after the row says ready, so wait for it rather than read the console once.
    log = await pv.wait_for(lambda: rh.console(name), lambda text: "fogmachine: phoned home" in text, deadline=60)
    assert "fogmachine: owner alice" in log and "fogmachine: phoned home" in log, log
    # Installed: Cobbler's rendered kickstart, which anyone may fetch, no longer carries a working token.
    row = await pv.wait_for(lambda: _state(ctx, guest.id), lambda g: not g.cobbler_token_pending, deadline=60)
    assert not row.cobbler_token_pending
    assert "fm_token=" not in await ctx.cobbler.generate_autoinstall(name)

    await lifecycle.perform(ctx, server.alice, guest.id, "destroy")
    assert _state(ctx, guest.id).state == GuestState.SHUTOFF
    await lifecycle.perform(ctx, server.alice, guest.id, "start")
    assert _state(ctx, guest.id).state == GuestState.RUNNING

    await lifecycle.delete(ctx, server.alice, guest.id)
    assert await ctx.cobbler.get_system(name) is None
    assert name not in rh.domain_names(host)
    assert pv.guest(ctx, guest.id).step == "retired"  # kept as history
