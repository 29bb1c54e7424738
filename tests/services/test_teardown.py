"""Tearing a guest's parts down with the real Cobbler and test-driver hosts: each part on its own, on each database;
and with a catalog source that keeps no records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogmachine.app import open_database
from fogmachine.catalog import LocalCatalog
from fogmachine.cobbler import SystemSpec
from fogmachine.composition import build_context, release_context
from fogmachine.config import Config
from fogmachine.errors import HostUnreachable
from fogmachine.services import teardown
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import cobbler as cb
from tests.support import provisioning as pv

PREFIX = "fmtest-td-"


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], cobbler_server: None,
                 database_url: str) -> Any:
    cb.remove_systems(PREFIX)
    config = make_config(hosts={"h1": {}, "dead": "qemu+tcp://127.0.0.1:1/system"}, cobbler_url=cb.XMLRPC_URL,
                         cobbler_password=cb.PASSWORD, libvirt_connect_timeout="2", database_connection=database_url)
    srv = await start_server(config)
    yield srv
    cb.remove_systems(PREFIX)


async def make_system(ctx: Any, name: str) -> None:
    await ctx.cobbler.create_system(SystemSpec(name=name, mac="52:54:00:aa:bb:01", hostname=name,
                                               profile=cb.PROFILE, autoinstall_meta={}))


@pytest.mark.cobbler
async def test_everything_goes_and_a_second_teardown_finds_nothing_to_do(server: Any) -> None:
    ctx, name = server.ctx, PREFIX + "all"
    await make_system(ctx, name)
    conn = ctx.hosts.get("h1")
    await conn.define(build_domain_xml(DomainSpec(name=name, memory_mb=128, vcpus=1, domain_type="test")))
    await conn.start(name)
    holdings = teardown.Holdings(name, "h1", name, "", name)
    left, failures = await teardown.release_each(ctx, holdings)
    assert failures == [] and left == teardown.Holdings(name, "h1", None, "", "")
    assert name not in await pv.Domains(ctx).names("h1")
    assert await ctx.cobbler.get_system(name) is None
    await teardown.release(ctx, holdings)  # all gone already: counts as done


@pytest.mark.cobbler
async def test_a_host_that_is_down_keeps_its_parts_and_the_cobbler_system_still_goes(server: Any) -> None:
    ctx, name = server.ctx, PREFIX + "half"
    await make_system(ctx, name)
    holdings = teardown.Holdings(name, "dead", name, "/var/lib/libvirt/images/half.qcow2", name)
    left, failures = await teardown.release_each(ctx, holdings)
    # the domain and its volume are still there (the volume is not touched while its domain may use it)
    assert left == teardown.Holdings(name, "dead", name, "/var/lib/libvirt/images/half.qcow2", "")
    assert [f.what for f in failures] == [f"remove the domain {name}"]
    assert isinstance(failures[0].error, HostUnreachable) and "dead" in str(failures[0])
    assert await ctx.cobbler.get_system(name) is None
    with pytest.raises(HostUnreachable):  # what delete and retire see: the first part's own error
        await teardown.release(ctx, holdings)


@pytest.mark.cobbler
async def test_a_host_no_longer_watched_is_named(server: Any) -> None:
    left, failures = await teardown.release_each(server.ctx, teardown.Holdings("x", "gone", "x", "", ""))
    assert left.domain_name == "x"
    assert [f.what for f in failures] == ["reach host gone"]


async def test_a_source_that_keeps_no_records_leaves_the_rows_cobbler_system_named(
        make_config: Callable[..., Config], tmp_path: Path) -> None:
    """After a switch from Cobbler to the local file, nobody can remove a row's Cobbler system now: the row
    goes on naming it, and that is no failure (the local source is asked, and says it keeps no records)."""
    config = make_config(local_catalog=str(tmp_path / "catalog.conf"))
    # A teardown uses no database: the one given is never connected to.
    ctx = build_context(config, open_database(config), catalog=LocalCatalog(config))
    try:
        left, failures = await teardown.release_each(ctx, teardown.Holdings("old", None, None, "", "old"))
        assert failures == [] and left == teardown.Holdings("old", None, None, "", "old")
        await teardown.release(ctx, teardown.Holdings("old", None, None, "", "old"))  # not an error either
    finally:
        release_context(ctx)
        ctx.db.dispose()


@pytest.mark.cobbler
async def test_a_delete_waits_for_the_finish_of_an_install_in_flight(server: Any, monkeypatch: Any) -> None:
    """Cobbler's save adds back a system removed under an edit: a delete that came in the middle of finishing
    the guest's install answered 204 and left the system standing (CI, once). The delete now waits."""
    import asyncio
    import uuid

    from fogmachine.db.models import Guest, Step
    from fogmachine.services import diskboot, lifecycle

    ctx, name = server.ctx, PREFIX + "finishing"
    await ctx.cobbler.create_system(SystemSpec(name=name, mac="52:54:00:aa:bb:02", hostname=name,
                                               profile=cb.PROFILE, autoinstall_meta={"fogmachine_token": "t0k"}))
    ann = pv.add_user(ctx, "ann")

    def add(session: Any) -> int:
        guest = Guest(name=name, owner_id=ann.user_id, step=Step.READY, uuid=str(uuid.uuid4()), cobbler_system=name,
                      cobbler_token_pending=True)
        session.add(guest)
        session.flush()
        return guest.id

    gid = ctx.db.run_sync(add)
    entered, go = asyncio.Event(), asyncio.Event()
    real_installed = ctx.catalog.installed

    async def held_installed(record: str) -> bool:  # a test double of one function: the real edit, held
        entered.set()
        await go.wait()
        return bool(await real_installed(record))

    monkeypatch.setattr(ctx.catalog, "installed", held_installed)
    finishing = asyncio.create_task(diskboot.finish(ctx, gid))
    async with asyncio.timeout(30):
        await entered.wait()
    deleting = asyncio.create_task(lifecycle.delete(ctx, ann, gid))
    async with asyncio.timeout(30):  # a positive signal: the delete waits its turn on the guest
        while ctx.guest_work.holders(gid) < 2:
            await asyncio.sleep(0.01)
    assert await ctx.cobbler.get_system(name) is not None and not deleting.done()
    assert not await diskboot.finish(ctx, gid)  # a second finish meanwhile leaves it to a later retry
    go.set()
    async with asyncio.timeout(60):
        assert await finishing is True
        await deleting
    assert await ctx.cobbler.get_system(name) is None
    row = pv.guest(ctx, gid)
    assert row is not None and row.step == Step.RETIRED and not ctx.guest_work.busy(gid)
