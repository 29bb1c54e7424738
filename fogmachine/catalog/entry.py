"""One thing that can be checked out, as every catalog source describes it, and the catalog as listed.

Both sources (the local file and Cobbler) map their own records into
``CatalogEntry``; the checkout, placement and the pages only ever see entries.
What the two share lives here: the kinds, the virtualisation types, how a
network is spelled and how a target names a kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

VIRT_TYPES = ("qemu", "kvm", "xen", "lxc", "test")
KINDS = ("profile", "image", "local")

Network = str | tuple[str, str]


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    kind: str  # profile | image | local
    ram_mb: int
    vcpus: int
    disk_gb: int
    virt_type: str
    description: str = ""
    boot: str = "kernel"
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    network: Network = "user"
    # True when the guest announces itself (phone-home); else it is ready once started.
    phonehome: bool = False
    breed: str = ""  # Cobbler's distro breed: which kernel argument carries the autoinstall URL
    image: str = ""  # a disk image on the host the guest's disk overlays (local catalog only)
    image_format: str = "qcow2"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ram_mb": self.ram_mb, "vcpus": self.vcpus,
                "disk_gb": self.disk_gb, "virt_type": self.virt_type, "description": self.description}


@dataclass(frozen=True)
class CatalogView:
    entries: list[CatalogEntry]
    stale: bool
    source: str  # "cobbler" or "local"
    error: str = ""
    fetched_at: float = 0.0

    def get(self, name: str) -> CatalogEntry | None:
        return next((e for e in self.entries if e.name == name), None)


def parse_network(value: str, where: str = "") -> Network:
    """``user``, ``bridge:NAME`` or ``network:NAME``; a bare name means a bridge (Cobbler's virt_bridge)."""
    value = value.strip()
    if not value or value == "user":
        return "user"
    kind, sep, name = value.partition(":")
    if not sep:
        kind, name = "bridge", value
    if kind not in ("bridge", "network") or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name):
        raise ValueError(f"{where}network {value!r} must be user, bridge:NAME or network:NAME")
    return (kind, name)


def split_target(target: str) -> tuple[str | None, str]:
    """``profile:NAME`` / ``image:NAME`` / ``local:NAME`` pick a kind; a bare name is looked up as any."""
    kind, sep, name = target.partition(":")
    if sep and kind in KINDS:
        return kind, name
    return None, target


def positive(value: Any, what: str, *, zero_ok: bool = False) -> int:
    """A whole number of at least 1 (or 0 with ``zero_ok``); ValueError naming ``what`` otherwise."""
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if number < 0 or (number == 0 and not zero_ok):
        raise ValueError(f"{what} must be {'0 or more' if zero_ok else 'at least 1'}")
    return number
