"""The Cobbler catalog source against the real Cobbler 3.3 (marked): the catalog, and each guest's system."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest

from fogmachine.catalog import CatalogEntry, CobblerCatalog, Registration
from fogmachine.catalog.cobbler_source import made_by
from fogmachine.cobbler import CobblerClient
from fogmachine.config import Config
from fogmachine.errors import CobblerError, ValidationError
from tests.support import cobbler as cobbler_support

PREFIX = "fmtest-src-"


def test_made_by_knows_this_servers_systems_only() -> None:
    server = "http://fog.example.org:8888"
    assert made_by({"autoinstall_meta": {"fogmachine_token": "", "fogmachine_server": server}}, server)
    assert not made_by({"autoinstall_meta": {"fogmachine_token": "t", "fogmachine_server": "http://other"}}, server)
    assert not made_by({"autoinstall_meta": {"fogmachine_server": server}}, server)  # no token key: not made by us
    assert not made_by({"autoinstall_meta": "<<inherit>>"}, server)


@pytest.fixture
async def cobbler_catalog(make_config: Callable[..., Config], cobbler_server: None) -> AsyncIterator[CobblerCatalog]:
    config = make_config(cobbler_url=cobbler_support.XMLRPC_URL, cobbler_password=cobbler_support.PASSWORD,
                         catalog_ttl="60")
    client = CobblerClient(config.cobbler_url, config.cobbler_user, config.cobbler_password, timeout=5)
    catalog = CobblerCatalog(config, client)
    await catalog.start()
    yield catalog
    await catalog.stop()  # stops its client too
    cobbler_support.remove_systems(PREFIX)


@pytest.mark.cobbler
async def test_cobbler_catalog_lists_marked_profiles_and_images(cobbler_catalog: CobblerCatalog) -> None:
    view = await cobbler_catalog.entries()
    assert view.source == cobbler_catalog.name == "cobbler" and not view.stale
    names = {(e.kind, e.name) for e in view.entries}
    assert ("profile", cobbler_support.PROFILE) in names
    assert ("image", cobbler_support.IMAGE) in names
    assert ("profile", cobbler_support.HIDDEN_PROFILE) not in names
    profile = view.get(cobbler_support.PROFILE)
    assert profile is not None
    assert (profile.ram_mb, profile.vcpus, profile.disk_gb, profile.virt_type) == (256, 1, 0, "qemu")
    assert profile.network == "user" and profile.boot == "kernel"
    assert profile.kernel == str(cobbler_support.KERNEL) and profile.breed == "redhat"
    image = view.get(cobbler_support.IMAGE)
    assert image is not None and image.boot == "network" and image.ram_mb == 256


@pytest.mark.cobbler
async def test_cobbler_catalog_is_cached_then_served_stale_when_cobbler_is_unreachable(
        cobbler_catalog: CobblerCatalog) -> None:
    client = cobbler_catalog.cobbler
    first = await cobbler_catalog.entries()
    calls = client.calls
    assert await cobbler_catalog.entries() is first
    assert client.calls == calls  # cached: no call within catalog_ttl

    cobbler_catalog.cache.ttl = 0  # expire it, and point the client at a port nobody listens on
    client.url = client.display_url = "http://127.0.0.1:1/"
    stale = await cobbler_catalog.entries()
    assert stale.stale and stale.entries == first.entries
    assert "http://127.0.0.1:1/" in stale.error and "unreachable" in stale.error
    # A checkout must not go ahead on a stale catalog: resolve asks Cobbler and fails with 502.
    with pytest.raises(CobblerError) as info:
        await cobbler_catalog.resolve(cobbler_support.PROFILE)
    assert info.value.status == 502 and "http://127.0.0.1:1/" in info.value.message


@pytest.mark.cobbler
async def test_cobbler_resolve_is_fresh_and_refuses_unmarked_or_unknown(cobbler_catalog: CobblerCatalog) -> None:
    entry = await cobbler_catalog.resolve(cobbler_support.PROFILE)
    assert entry.kind == "profile" and entry.cmdline == "console=ttyS0 panic=-1"
    assert entry.kernel == str(cobbler_support.KERNEL) and entry.initrd == str(cobbler_support.INITRD)
    image = await cobbler_catalog.resolve(f"image:{cobbler_support.IMAGE}")
    assert image.kind == "image"
    for target in (cobbler_support.HIDDEN_PROFILE, "no-such-profile", f"image:{cobbler_support.PROFILE}"):
        with pytest.raises(ValidationError) as info:
            await cobbler_catalog.resolve(target)
        assert info.value.field == "target" and repr(target) in info.value.message


@pytest.mark.cobbler
async def test_a_cobbler_that_does_not_answer_in_time_also_gives_the_stale_view(
        cobbler_catalog: CobblerCatalog) -> None:
    import asyncio

    first = await cobbler_catalog.entries()
    hold: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        hold.append(w)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = cobbler_catalog.cobbler
    cobbler_catalog.cache.ttl = 0
    client.url = client.display_url = f"http://127.0.0.1:{port}/"
    client.timeout = 0.3
    try:
        view = await cobbler_catalog.entries()
        assert view.stale and view.entries == first.entries and "did not answer" in view.error
    finally:
        for w in hold:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.cobbler
async def test_a_guest_is_registered_finished_found_and_unregistered(cobbler_catalog: CobblerCatalog) -> None:
    """The record's life through the interface: the system checkout makes, the token blanked once the guest is
    installed (the key kept, so reconciliation still knows it), found as ours, removed (twice: gone counts)."""
    client, name = cobbler_catalog.cobbler, PREFIX + secrets.token_hex(3)
    assert cobbler_catalog.record_for(name) == name
    entry = await cobbler_catalog.resolve(f"image:{cobbler_support.IMAGE}")  # boots from the network
    await cobbler_catalog.register(Registration(name, "52:54:00:fe:10:01", "s3cret", entry))
    system = await client.get_system(name)
    assert system is not None and system["image"] == cobbler_support.IMAGE and system["netboot_enabled"] is True
    assert system["hostname"] == name
    meta = system["autoinstall_meta"]
    server = cobbler_catalog.config.server_url
    assert (meta["fogmachine_token"], meta["fogmachine_server"], meta["fogmachine_mac"]) == (
        "s3cret", server, "52:54:00:fe:10:01")
    assert name in await cobbler_catalog.records()

    assert await cobbler_catalog.installed(name) is True
    system = await client.get_system(name)
    assert system is not None and system["netboot_enabled"] is False
    assert system["autoinstall_meta"]["fogmachine_token"] == "" and name in await cobbler_catalog.records()
    calls = client.calls
    assert await cobbler_catalog.installed(name) is True  # nothing left to change: read, no write
    assert client.calls == calls + 1

    assert await cobbler_catalog.unregister(name) is True
    assert await client.get_system(name) is None and name not in await cobbler_catalog.records()
    assert await cobbler_catalog.unregister(name) is True


@pytest.mark.cobbler
async def test_a_profile_guest_keeps_netboot_off(cobbler_catalog: CobblerCatalog) -> None:
    name = PREFIX + secrets.token_hex(3)
    entry = await cobbler_catalog.resolve(cobbler_support.PROFILE)
    assert entry.boot == "kernel"
    await cobbler_catalog.register(Registration(name, "52:54:00:fe:10:02", "tok", entry))
    system = await cobbler_catalog.cobbler.get_system(name)
    assert system is not None and system["profile"] == cobbler_support.PROFILE and system["netboot_enabled"] is False


@pytest.mark.cobbler
async def test_a_cobbler_that_is_away_fails_the_registration_calls(cobbler_catalog: CobblerCatalog) -> None:
    client = cobbler_catalog.cobbler
    client.url = client.display_url = "http://127.0.0.1:1/"
    entry = CatalogEntry(cobbler_support.PROFILE, "profile", 256, 1, 0, "qemu")
    for call in (cobbler_catalog.register(Registration(PREFIX + "away", "52:54:00:fe:10:03", "t", entry)),
                 cobbler_catalog.unregister(PREFIX + "away"), cobbler_catalog.installed(PREFIX + "away"),
                 cobbler_catalog.records()):
        with pytest.raises(CobblerError) as info:
            await call
        assert info.value.status == 502 and "http://127.0.0.1:1/" in info.value.message
