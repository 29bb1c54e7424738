"""Checkout with the real Cobbler, on test-driver hosts: the system record, its undo, the phone-home."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import tornado.httpclient
from sqlalchemy import update

from fogmachine.config import Config
from fogmachine.db.models import Host, Step
from fogmachine.services import checkout as co
from fogmachine.services import lifecycle, reconcile
from fogmachine.services.checkout import CheckoutRequest
from tests.support import cobbler as cb
from tests.support import provisioning as pv

pytestmark = pytest.mark.cobbler
PREFIX = "fmtest-co-"


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], cobbler_server: None,
                 database_url: str) -> Any:
    cb.remove_systems(PREFIX)
    config = make_config(hosts={"h1": {"cpus": 4, "memory_mb": 4096}}, cobbler_url=cb.XMLRPC_URL,
                         cobbler_password=cb.PASSWORD, public_url="http://10.0.2.2:9999",
                         cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op",
                         database_connection=database_url)
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice", email="alice@example.org")
    yield srv
    cb.remove_systems(PREFIX)


async def test_checkout_registers_the_system_then_the_guest_phones_home(server: Any) -> None:
    srv, ctx = server, server.ctx
    name = PREFIX + "web"
    guest = await co.checkout(ctx, srv.alice, CheckoutRequest(name, cb.PROFILE, 2, "cobbler test"))
    assert guest.step == Step.REGISTERING and guest.target_kind == "profile"
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert row.step == Step.INSTALLING and row.cobbler_system == name
    system = await ctx.cobbler.get_system(name)
    assert system is not None and system["profile"] == cb.PROFILE and system["hostname"] == name
    assert system["interfaces"]["eth0"]["mac_address"] == guest.mac
    meta = system["autoinstall_meta"]
    assert meta["fogmachine_server"] == "http://10.0.2.2:9999" and meta["fogmachine_mac"] == guest.mac
    token = meta["fogmachine_token"]
    assert row.phonehome_token_hash != token and len(token) >= 32  # only the hash is kept
    # What the guest's installer would fetch (the kernel command line names this URL).
    rendered = await ctx.cobbler.generate_autoinstall(name)
    assert f"fm_token='{token}'" in rendered

    reply = await srv.fetch(f"/guest/{guest.mac}/set?" + urlencode({"token": token, "ip": "10.0.2.15",
                                                                     "hostname": name}))
    assert reply.code == 200
    row = pv.guest(ctx, guest.id)
    assert (row.step, row.ip, row.hostname) == (Step.READY, "10.0.2.15", name)
    reply = await srv.fetch(f"/guest/{guest.mac}/getuser?" + urlencode({"token": token}))
    assert reply.code == 200 and b'"username":"alice"' in reply.body  # within the grace: the same install

    # Once installed, the token is gone from Cobbler: what Cobbler serves to anyone no longer carries it.
    await pv.settle(ctx)
    assert not pv.guest(ctx, guest.id).cobbler_token_pending
    system = await ctx.cobbler.get_system(name)
    assert system is not None and system["autoinstall_meta"]["fogmachine_token"] == ""
    assert system["autoinstall_meta"]["fogmachine_mac"] == guest.mac  # the rest is kept
    rendered = await ctx.cobbler.generate_autoinstall(name)
    assert token not in rendered and "fm_token=" not in rendered
    served = await tornado.httpclient.AsyncHTTPClient().fetch(f"{cb.SVC_URL}/autoinstall/system/{name}")
    assert token.encode() not in served.body
    # Reconciliation still knows the system as this Fogmachine's (and as the guest's: kept).
    await reconcile.reconcile(ctx)
    assert await ctx.cobbler.get_system(name) is not None

    await lifecycle.delete(ctx, srv.alice, guest.id)
    assert await ctx.cobbler.get_system(name) is None
    assert name not in await pv.Domains(ctx).names("h1")


async def test_an_image_boots_from_the_network(server: Any) -> None:
    name = PREFIX + "img"
    guest = await co.checkout(server.ctx, server.alice, CheckoutRequest(name, f"image:{cb.IMAGE}", 1, "image"))
    await pv.settle(server.ctx)
    assert pv.guest(server.ctx, guest.id).step == Step.INSTALLING
    system = await server.ctx.cobbler.get_system(name)
    assert system is not None and system["image"] == cb.IMAGE and system["netboot_enabled"] is True


async def test_a_failure_after_registering_removes_the_system(server: Any) -> None:
    ctx = server.ctx
    ctx.db.run_sync(lambda s: s.execute(update(Host).where(Host.name == "h1").values(virt_type="xen")))
    name = PREFIX + "xen"
    guest = await co.checkout(ctx, server.alice, CheckoutRequest(name, cb.XEN_PROFILE, 1, "undo test"))
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert row.step == Step.FAILED and "domain type" in row.step_reason and row.cobbler_system == ""
    assert await ctx.cobbler.get_system(name) is None
    assert name not in await pv.Domains(ctx).names("h1")


async def test_someone_elses_system_of_that_name_is_left_alone(server: Any) -> None:
    from fogmachine.cobbler import SystemSpec

    ctx = server.ctx
    name = PREFIX + "taken"
    await ctx.cobbler.create_system(SystemSpec(name=name, mac="52:54:00:fe:00:01", hostname=name,
                                               profile=cb.PROFILE))
    guest = await co.checkout(ctx, server.alice, CheckoutRequest(name, cb.PROFILE, 1, "clash"))
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert row.step == Step.FAILED and "already has a system named" in row.step_reason
    system = await ctx.cobbler.get_system(name)
    assert system is not None and system["interfaces"]["eth0"]["mac_address"] == "52:54:00:fe:00:01"
    assert name not in await pv.Domains(ctx).names("h1")
    # The failed guest is the user's to read and delete.
    await lifecycle.delete(ctx, server.alice, guest.id)
    assert await ctx.cobbler.get_system(name) is not None
