"""The catalog: the local file, and Cobbler's profiles and images (real Cobbler, marked)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fogmachine.catalog import Catalog, load_local, parse_network, split_target
from fogmachine.cobbler import CobblerClient
from fogmachine.config import Config
from fogmachine.errors import CobblerError, ConfigError, ValidationError
from tests.support import cobbler as cobbler_support

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_catalog_parses() -> None:
    entries = {e.name: e for e in load_local(ROOT / "catalog.conf")}
    assert {"small", "medium", "large", "rescue"} <= set(entries)
    small = entries["small"]
    assert (small.ram_mb, small.vcpus, small.disk_gb, small.virt_type, small.boot) == (1024, 1, 10, "kvm", "network")
    assert small.network == ("network", "default")
    rescue = entries["rescue"]
    assert rescue.boot == "kernel" and rescue.kernel and rescue.network == "user" and not rescue.phonehome


def test_the_shipped_image_example_parses(tmp_path: Path) -> None:
    """The commented [debian12] example in catalog.conf is a valid profile once uncommented."""
    lines = (ROOT / "catalog.conf").read_text().splitlines()
    start = lines.index("#   [debian12]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    (entry,) = load_local(_write(tmp_path, "\n".join(block) + "\n"))
    assert (entry.name, entry.boot, entry.image_format, entry.disk_gb) == ("debian12", "disk", "qcow2", 20)
    assert entry.image.endswith(".qcow2") and entry.network == ("network", "default")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("[a]\nram_mb = lots\n", "ram_mb must be a number"),
    ("[a]\nvcpus = 0\n", "vcpus must be at least 1"),
    ("[a]\nvirt_type = vmware\n", "virt_type must be one of"),
    ("[a]\nboot = floppy\n", "boot must be one of"),
    ("[a]\nboot = kernel\n", "needs a kernel"),
    ("[a]\nboot = network\nnetwork = wifi:x\n", "network 'wifi:x' must be"),
    ("[a]\nboot = network\ncolour = red\n", "unknown key(s) colour"),
    ("[a]\nkernel = /k\ncmdline = x={nope}\n", "unknown placeholder 'nope'"),
    ("[bad name]\nboot = network\n", "profile name must be"),
    ("[a]\nboot = disk\n", "boot = disk needs an image"),
    ("[a]\nimage = images/base.qcow2\n", "image 'images/base.qcow2' must be an absolute path"),
    ("[a]\nimage = /i/base.img\nimage_format = vmdk\n", "image_format must be one of qcow2, raw"),
    ("[a]\nboot = network\nimage_format = raw\n", "image_format needs an image"),
    ("[a]\nimage = /i/base.qcow2\nboot = kernel\n", "needs a kernel"),
    ("no section\n", "not a valid INI file"),
])
def test_a_bad_local_catalog_names_file_section_and_problem(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_local(path)
    assert message in info.value.message
    assert str(path) in info.value.message


def test_image_profiles_boot_their_disk_unless_told_otherwise(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cloud]\nimage = /var/lib/libvirt/images/base.qcow2\nvirt_type = qemu\n\n"
                            "[install]\nimage = /srv/blank.img\nimage_format = RAW\nboot = kernel\n"
                            "kernel = /k\ndisk_gb = 20\n\n[plain]\nboot = network\n")
    entries = {e.name: e for e in load_local(path)}
    cloud, install, plain = entries["cloud"], entries["install"], entries["plain"]
    assert (cloud.image, cloud.image_format, cloud.boot, cloud.disk_gb) == (
        "/var/lib/libvirt/images/base.qcow2", "qcow2", "disk", 0)
    assert (install.image, install.image_format, install.boot, install.disk_gb) == ("/srv/blank.img", "raw",
                                                                                    "kernel", 20)
    assert (plain.image, plain.boot) == ("", "network")


def test_network_and_target_spelling() -> None:
    assert parse_network("user") == "user"
    assert parse_network("br0") == ("bridge", "br0")
    assert parse_network("network:default") == ("network", "default")
    assert split_target("image:x") == ("image", "x")
    assert split_target("profile:a:b") == ("profile", "a:b")
    assert split_target("web:1") == (None, "web:1")


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
