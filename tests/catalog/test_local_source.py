"""The local catalog source: the file read at start and re-read when it changes, and no registration."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fogmachine.catalog import CatalogEntry, LocalCatalog, Registration
from fogmachine.config import Config
from fogmachine.errors import ConfigError, ValidationError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.conf"
    path.write_text(text)
    return path


async def test_the_file_resolves_and_reloads_when_the_file_changes(
        make_config: Callable[..., Config], tmp_path: Path) -> None:
    path = _write(tmp_path, "[one]\nboot = network\nram_mb = 256\n")
    catalog = LocalCatalog(make_config(local_catalog=str(path)))
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
        await LocalCatalog(make_config(local_catalog=str(path))).start()


async def test_a_missing_local_catalog_is_empty(make_config: Callable[..., Config], tmp_path: Path) -> None:
    catalog = LocalCatalog(make_config(local_catalog=str(tmp_path / "nope.conf")))
    await catalog.start()
    view = await catalog.entries()
    assert view.entries == [] and view.stale and "cannot read" in view.error




async def test_the_local_source_keeps_no_record_of_its_guests(make_config: Callable[..., Config],
                                                              tmp_path: Path) -> None:
    """Its guests get their token on the kernel command line: nothing to register, remove or blank, and a
    record a guest's row still names (from a Cobbler before) is left to it."""
    source = LocalCatalog(make_config(local_catalog=str(_write(tmp_path, "[one]\nboot = network\n"))))
    await source.start()
    assert source.name == "local" and source.record_for("web1") == ""
    entry = CatalogEntry("one", "local", 256, 1, 0, "qemu", boot="network")
    await source.register(Registration("web1", "52:54:00:00:00:01", "tok", entry))
    assert await source.records() == []
    assert await source.unregister("web1") is False
    assert await source.installed("web1") is False
    await source.stop()
