"""The catalog: the local file read and re-read, and Cobbler's profiles and images (real Cobbler, marked)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fogmachine.catalog import Catalog
from fogmachine.cobbler import CobblerClient
from fogmachine.config import Config
from fogmachine.errors import CobblerError, ConfigError, ValidationError
from tests.support import cobbler as cobbler_support


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.conf"
    path.write_text(text)
    return path


async def test_local_catalog_resolves_and_reloads_when_the_file_changes(
        make_config: Callable[..., Config], tmp_path: Path) -> None:
    path = _write(tmp_path, "[one]\nboot = network\nram_mb = 256\n")
    catalog = Catalog(make_config(local_catalog=str(path)))
    await catalog.start()
    view = await catalog.entries()
    assert (view.source, view.stale, [e.name for e in view.entries]) == ("local", False, ["one"])
    assert (await catalog.resolve("one")).ram_mb == 256
    assert (await catalog.resolve("local:one")).name == "one"
    with pytest.raises(ValidationError) as info:
        await catalog.resolve("two")
    assert info.value.field == "target" and "'two'" in info.value.message
    with pytest.raises(ValidationError):
        await catalog.resolve("  ")

    time.sleep(0.01)
    path.write_text("[one]\nboot = network\nram_mb = 512\n[two]\nboot = network\n")
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))
    assert (await catalog.resolve("one")).ram_mb == 512
    assert (await catalog.resolve("two")).name == "two"

    # A broken edit keeps the last good catalog and says why, marked stale.
    path.write_text("[one]\nram_mb = x\n")
    os.utime(path, (time.time() + 10, time.time() + 10))
    view = await catalog.entries()
    assert view.stale and "ram_mb must be a number" in view.error
    assert [e.name for e in view.entries] == ["one", "two"]


async def test_a_malformed_local_catalog_stops_the_start(make_config: Callable[..., Config], tmp_path: Path) -> None:
    path = _write(tmp_path, "[one]\nvcpus = none\n")
    with pytest.raises(ConfigError):
        await Catalog(make_config(local_catalog=str(path))).start()


async def test_a_missing_local_catalog_is_empty(make_config: Callable[..., Config], tmp_path: Path) -> None:
    catalog = Catalog(make_config(local_catalog=str(tmp_path / "nope.conf")))
    await catalog.start()
    view = await catalog.entries()
    assert view.entries == [] and view.stale and "cannot read" in view.error


# -- Cobbler ----------------------------------------------------------------------------------------

@pytest.fixture
async def cobbler_catalog(make_config: Callable[..., Config], cobbler_server: None):  # type: ignore[no-untyped-def]
    config = make_config(cobbler_url=cobbler_support.XMLRPC_URL, cobbler_password=cobbler_support.PASSWORD,
                         catalog_ttl="60")
    client = CobblerClient(config.cobbler_url, config.cobbler_user, config.cobbler_password, timeout=5)
    catalog = Catalog(config, client)
    await catalog.start()
    yield catalog
    await catalog.stop()
    await client.stop()


@pytest.mark.cobbler
async def test_cobbler_catalog_lists_marked_profiles_and_images(cobbler_catalog: Catalog) -> None:
    view = await cobbler_catalog.entries()
    assert view.source == "cobbler" and not view.stale
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
        cobbler_catalog: Catalog) -> None:
    client = cobbler_catalog.cobbler
    first = await cobbler_catalog.entries()
    calls = client.calls
    assert await cobbler_catalog.entries() is first
    assert client.calls == calls  # cached: no call within catalog_ttl

    cobbler_catalog.ttl = 0  # expire it, and point the client at a port nobody listens on
    client.url = client.display_url = "http://127.0.0.1:1/"
    stale = await cobbler_catalog.entries()
    assert stale.stale and stale.entries == first.entries
    assert "http://127.0.0.1:1/" in stale.error and "unreachable" in stale.error
    # A checkout must not go ahead on a stale catalog: resolve asks Cobbler and fails with 502.
    with pytest.raises(CobblerError) as info:
        await cobbler_catalog.resolve(cobbler_support.PROFILE)
    assert info.value.status == 502 and "http://127.0.0.1:1/" in info.value.message


@pytest.mark.cobbler
async def test_cobbler_resolve_is_fresh_and_refuses_unmarked_or_unknown(cobbler_catalog: Catalog) -> None:
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
async def test_a_cobbler_that_does_not_answer_in_time_also_gives_the_stale_view(cobbler_catalog: Catalog) -> None:
    import asyncio

    first = await cobbler_catalog.entries()
    hold: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        hold.append(w)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = cobbler_catalog.cobbler
    cobbler_catalog.ttl = 0
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
