"""Cobbler's profiles and images as catalog entries: pure functions over what its XML-RPC API lists.

The catalog is the profiles whose ``autoinstall_meta`` has a ``fogmachine``
key (so an operator chooses what users may check out without a second list to
keep in step) plus every image. A listed profile leaves fields at
``<<inherit>>``: they are followed up its parent profiles to Cobbler's
settings here. ``get_blended_data`` answers them resolved (distro included),
which is what a checkout asks for. Bad or missing sizes fall back to defaults
rather than hiding the entry: the operator sees it and can fix it in Cobbler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fogmachine.catalog.entry import VIRT_TYPES, CatalogEntry, Network, parse_network, positive

log = logging.getLogger(__name__)

META_KEY = "fogmachine"
NETWORK_KEY = "fogmachine_network"
BOOT_KEY = "fogmachine_boot"
INHERIT = "<<inherit>>"


def _meta(value: Any) -> dict[str, Any]:
    """autoinstall_meta as a dict: Cobbler gives a dict, or a flattened ``k=v k2`` string in blended data."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value != INHERIT:
        meta: dict[str, Any] = {}
        for token in value.split():
            key, _, val = token.partition("=")
            meta[key] = val
        return meta
    return {}


def _kernel_options(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(k if v in (None, "", "~") else f"{k}={v}" for k, v in value.items())
    if isinstance(value, str) and value != INHERIT:
        return " ".join(value.split())
    return ""


def _inherited(item: Mapping[str, Any], key: str, parents: Mapping[str, Mapping[str, Any]],
               defaults: Mapping[str, Any]) -> Any:
    """A profile field, following ``<<inherit>>`` up the parent profiles to Cobbler's default."""
    seen: set[str] = set()
    current: Mapping[str, Any] | None = item
    while current is not None:
        value = current.get(key, INHERIT)
        if value != INHERIT:
            return value
        parent = current.get("parent") or ""
        if not parent or parent in seen:
            break
        seen.add(parent)
        current = parents.get(parent)
    return defaults.get(f"default_{key}", defaults.get(key))


def _merged_meta(item: Mapping[str, Any], parents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    chain = []
    current: Mapping[str, Any] | None = item
    seen: set[str] = set()
    while current is not None:
        chain.append(current)
        parent = current.get("parent") or ""
        if not parent or parent in seen:
            break
        seen.add(parent)
        current = parents.get(parent)
    meta: dict[str, Any] = {}
    for link in reversed(chain):
        meta.update(_meta(link.get("autoinstall_meta")))
    return meta


def _network(meta: Mapping[str, Any], bridge: Any, name: str) -> Network:
    if NETWORK_KEY in meta:
        try:
            return parse_network(str(meta[NETWORK_KEY]))
        except ValueError as exc:
            log.warning("Cobbler profile %s: %s; using user-mode networking", name, exc)
            return "user"
    if isinstance(bridge, str) and bridge and bridge != INHERIT:
        return ("bridge", bridge)
    return "user"


def _boot(meta: Mapping[str, Any], default: str) -> str:
    boot = str(meta.get(BOOT_KEY, default)).strip().lower()
    return boot if boot in ("kernel", "network") else default


def _virt_type(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text.startswith("xen"):
        return "xen"
    return text if text in VIRT_TYPES else "kvm"


def _size(value: Any, default: int, zero_ok: bool = False) -> int:
    try:
        return positive(value, "size", zero_ok=zero_ok)
    except ValueError:
        return default


def profile_entry(item: Mapping[str, Any], parents: Mapping[str, Mapping[str, Any]],
                  distros: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any]) -> CatalogEntry | None:
    """A Cobbler profile (as listed by get_profiles) as a catalog entry, or None when not for Fogmachine."""
    meta = _merged_meta(item, parents)
    if META_KEY not in meta:
        return None
    name = str(item["name"])
    distro_name = _inherited(item, "distro", parents, {})
    distro = distros.get(str(distro_name or ""), {})
    return CatalogEntry(
        name=name, kind="profile",
        ram_mb=_size(_inherited(item, "virt_ram", parents, defaults), 512),
        vcpus=_size(_inherited(item, "virt_cpus", parents, defaults), 1),
        disk_gb=_size(_inherited(item, "virt_file_size", parents, defaults), 0, zero_ok=True),
        virt_type=_virt_type(_inherited(item, "virt_type", parents, defaults)),
        description=str(item.get("comment") or ""),
        boot=_boot(meta, "kernel"),
        kernel=str(distro.get("kernel") or ""), initrd=str(distro.get("initrd") or ""),
        network=_network(meta, _inherited(item, "virt_bridge", parents, defaults), name),
        phonehome=True, breed=str(distro.get("breed") or ""),
    )


def blended_entry(data: Mapping[str, Any]) -> CatalogEntry | None:
    """A profile from get_blended_data (everything resolved, distro included), or None when not for us."""
    meta = _meta(data.get("autoinstall_meta"))
    if META_KEY not in meta:
        return None
    name = str(data.get("profile_name") or data.get("name"))
    return CatalogEntry(
        name=name, kind="profile",
        ram_mb=_size(data.get("virt_ram"), 512), vcpus=_size(data.get("virt_cpus"), 1),
        disk_gb=_size(data.get("virt_file_size"), 0, zero_ok=True), virt_type=_virt_type(data.get("virt_type")),
        description=str(data.get("comment") or ""), boot=_boot(meta, "kernel"),
        kernel=str(data.get("kernel") or ""), initrd=str(data.get("initrd") or ""),
        cmdline=_kernel_options(data.get("kernel_options")),
        network=_network(meta, data.get("virt_bridge"), name), phonehome=True, breed=str(data.get("breed") or ""),
    )


def image_entry(item: Mapping[str, Any], defaults: Mapping[str, Any]) -> CatalogEntry:
    """A Cobbler image: it boots from the network (Cobbler's PXE menu serves the image for the system)."""
    meta = _meta(item.get("autoinstall_meta"))
    name = str(item["name"])
    return CatalogEntry(
        name=name, kind="image",
        ram_mb=_size(_inherited(item, "virt_ram", {}, defaults), 512),
        vcpus=_size(_inherited(item, "virt_cpus", {}, defaults), 1),
        disk_gb=_size(_inherited(item, "virt_file_size", {}, defaults), 0, zero_ok=True),
        virt_type=_virt_type(_inherited(item, "virt_type", {}, defaults)),
        description=str(item.get("comment") or ""), boot="network",
        network=_network(meta, _inherited(item, "virt_bridge", {}, defaults), name),
        phonehome=True, breed=str(item.get("breed") or ""),
    )


def catalog_entries(profiles: list[dict[str, Any]], images: list[dict[str, Any]], distros: list[dict[str, Any]],
                    settings: Mapping[str, Any]) -> list[CatalogEntry]:
    """The whole catalog from Cobbler's four listings, sorted by kind then name."""
    by_name = {p["name"]: p for p in profiles}
    distro_map = {d["name"]: d for d in distros}
    entries = [e for p in profiles if (e := profile_entry(p, by_name, distro_map, settings)) is not None]
    entries += [image_entry(i, settings) for i in images]
    entries.sort(key=lambda e: (e.kind, e.name))
    return entries
