"""What can be checked out: Cobbler's profiles and images, or the local catalog file.

With Cobbler, the catalog is the profiles whose ``autoinstall_meta`` has a
``fogmachine`` key (so an operator chooses what users may check out without a
second list to keep in step) plus every image. Listing it costs three XML-RPC
calls, so the view is cached for ``catalog_ttl`` seconds; when Cobbler cannot be
reached the last good view is served and marked stale, so the pages keep
working while Cobbler is down.

A checkout does not trust the cache: ``resolve`` asks Cobbler again for the one
entry (a profile deleted a minute ago must not be checked out, and an
unreachable Cobbler must refuse the checkout before anything is made).

Without Cobbler (``cobbler_url`` empty) the catalog is an INI file
(``local_catalog``), one section per profile, re-read when it changes::

    [tiny]
    description = Tiny test guest
    virt_type = qemu          # qemu, kvm, xen, lxc or test
    ram_mb = 256
    vcpus = 1
    disk_gb = 0               # an empty volume of this size where the host has a storage pool
    boot = kernel             # kernel (kernel/initrd/cmdline), network (PXE, then the disk) or disk
    kernel = /var/lib/fogmachine/vmlinuz
    initrd = /var/lib/fogmachine/initrd.img
    cmdline = console=ttyS0 fm.hostname={name}
    network = user            # user, bridge:NAME or network:NAME
    phonehome = no            # yes: the guest calls /guest/MAC/set when done; no: ready once started

``cmdline`` may use ``{name}``, ``{mac}``, ``{server}`` and ``{phonehome_url}``.

A profile may instead start from a disk image already on the hosts::

    [debian12]
    image = /var/lib/libvirt/images/debian-12-generic-amd64.qcow2
    image_format = qcow2      # or raw
    disk_gb = 0               # 0: the image's own size; more grows the guest's disk
    boot = disk               # the default with an image

Each guest then gets a copy-on-write overlay of the image in its host's
``default`` storage pool, so the image is shared and never written. Such a
profile is only placed on hosts with an active ``default`` pool (no pool, no
disk, nothing to boot: refused with 409 when no host has one). With
``boot = kernel`` and an image, the guest is installed by its kernel and
switched to boot from its disk once it phones home.
"""

from __future__ import annotations

import asyncio
import configparser
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogmachine.config import Config
from fogmachine.errors import BackendTimeout, CobblerError, ConfigError, ValidationError

log = logging.getLogger(__name__)

META_KEY = "fogmachine"
NETWORK_KEY = "fogmachine_network"
BOOT_KEY = "fogmachine_boot"
INHERIT = "<<inherit>>"
VIRT_TYPES = ("qemu", "kvm", "xen", "lxc", "test")
BOOTS = ("kernel", "network", "disk")
IMAGE_FORMATS = ("qcow2", "raw")
CMDLINE_FIELDS = ("name", "mac", "server", "phonehome_url")
KINDS = ("profile", "image", "local")
RETRY_AFTER = 10.0

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


def _positive(value: Any, what: str, *, zero_ok: bool = False) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, not {value!r}") from None
    if number < 0 or (number == 0 and not zero_ok):
        raise ValueError(f"{what} must be {'0 or more' if zero_ok else 'at least 1'}")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"{value!r} is not yes or no")


# -- the local catalog file ---------------------------------------------------------------------

LOCAL_KEYS = {"description", "virt_type", "ram_mb", "vcpus", "disk_gb", "boot", "kernel", "initrd", "cmdline",
              "network", "phonehome", "image", "image_format"}


def _image(section: configparser.SectionProxy) -> tuple[str, str]:
    """(image, image_format): the path is on the hypervisor hosts, so only its form is checked here."""
    image = section.get("image", "").strip()
    image_format = section.get("image_format", "").strip().lower()
    if not image:
        if image_format:
            raise ValueError("image_format needs an image")
        return "", "qcow2"
    if not os.path.isabs(image) or "\0" in image:
        raise ValueError(f"image {image!r} must be an absolute path (on the hypervisor hosts)")
    if image_format and image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}")
    return image, image_format or "qcow2"


def load_local(path: str | Path) -> list[CatalogEntry]:
    """Parse the local catalog; ConfigError names the file, the section and the key on a bad value."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                       default_section="__defaults__")
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the local catalog {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid INI file: {str(exc).splitlines()[0]}") from None
    entries = []
    for name in parser.sections():
        where = f"{path}, [{name}]: "
        section = parser[name]
        unknown = set(section) - LOCAL_KEYS
        if unknown:
            raise ConfigError(f"{where}unknown key(s) {', '.join(sorted(unknown))}")
        try:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
                raise ValueError("the profile name must be letters, digits, '.', '_' or '-'")
            virt_type = section.get("virt_type", "kvm").strip().lower()
            if virt_type not in VIRT_TYPES:
                raise ValueError(f"virt_type must be one of {', '.join(VIRT_TYPES)}")
            image, image_format = _image(section)
            boot = section.get("boot", "disk" if image else "kernel").strip().lower()
            if boot not in BOOTS:
                raise ValueError(f"boot must be one of {', '.join(BOOTS)}")
            if boot == "disk" and not image:
                raise ValueError("boot = disk needs an image (the disk to boot)")
            entry = CatalogEntry(
                name=name, kind="local", virt_type=virt_type, boot=boot,
                ram_mb=_positive(section.get("ram_mb", "512"), "ram_mb"),
                vcpus=_positive(section.get("vcpus", "1"), "vcpus"),
                disk_gb=_positive(section.get("disk_gb", "0"), "disk_gb", zero_ok=True),
                description=section.get("description", "").strip(),
                kernel=section.get("kernel", "").strip(), initrd=section.get("initrd", "").strip(),
                cmdline=" ".join(section.get("cmdline", "").split()),
                network=parse_network(section.get("network", "user")),
                phonehome=_bool(section.get("phonehome", "no")), image=image, image_format=image_format,
            )
            if boot == "kernel" and not entry.kernel:
                raise ValueError("boot = kernel needs a kernel (and usually an initrd)")
            # Every placeholder must be one we fill in: fail at start, not at checkout.
            entry.cmdline.format_map({key: "x" for key in CMDLINE_FIELDS})
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{where}cmdline uses an unknown placeholder {exc}; "
                              f"known: {', '.join('{' + f + '}' for f in CMDLINE_FIELDS)}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}{exc}") from None
        entries.append(entry)
    return entries


# -- Cobbler's objects as catalog entries --------------------------------------------------------

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
        return _positive(value, "size", zero_ok=zero_ok)
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


# -- the catalog ---------------------------------------------------------------------------------

@dataclass
class _LocalFile:
    path: Path
    mtime: float = -1.0
    entries: list[CatalogEntry] = field(default_factory=list)
    error: str = ""


class Catalog:
    """The catalog a checkout picks from; a Component of the server (``ctx.catalog``)."""

    def __init__(self, config: Config, cobbler: Any = None) -> None:
        self.config = config
        self.cobbler = cobbler
        self.ttl = config.catalog_ttl
        self._view: CatalogView | None = None
        self._retry_at = 0.0  # after a failed refresh, serve the stale view until then
        self._refreshing: asyncio.Future[CatalogView] | None = None
        self._local = _LocalFile(Path(config.local_catalog)) if cobbler is None else None

    @property
    def source(self) -> str:
        return "local" if self.cobbler is None else "cobbler"

    async def start(self) -> None:
        if self._local is not None:
            # A malformed file stops the server with a message; a missing one only leaves the catalog empty.
            if self._local.path.exists():
                self._reload_local(strict=True)
            else:
                log.warning("no local catalog at %s: nothing can be checked out until it exists",
                            self._local.path)

    async def stop(self) -> None:
        self._view = None

    # -- local -----------------------------------------------------------------------------------
    def _reload_local(self, strict: bool = False) -> None:
        local = self._local
        assert local is not None
        try:
            mtime = os.stat(local.path).st_mtime
        except OSError as exc:
            local.entries, local.error, local.mtime = [], f"cannot read {local.path}: {exc.strerror}", -1.0
            return
        if mtime == local.mtime:
            return
        try:
            local.entries, local.error = load_local(local.path), ""
        except ConfigError as exc:
            if strict:
                raise
            # Keep what was good before; say why the edit was not taken.
            log.error("local catalog not reloaded: %s", exc.message)
            local.error = exc.message
        local.mtime = mtime

    # -- listing ---------------------------------------------------------------------------------
    async def entries(self) -> CatalogView:
        """The catalog, from the cache when it is younger than catalog_ttl."""
        if self._local is not None:
            self._reload_local()
            return CatalogView(list(self._local.entries), stale=bool(self._local.error), source="local",
                               error=self._local.error, fetched_at=time.time())
        view, now = self._view, time.monotonic()
        if view is not None and not view.stale and now - view.fetched_at < self.ttl:
            return view
        if view is not None and view.stale and now < self._retry_at:
            return view
        if self._refreshing is None:
            # One refresh at a time: concurrent callers share it.
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refresh_done)
        return await asyncio.shield(self._refreshing)

    def _refresh_done(self, _future: asyncio.Future[CatalogView]) -> None:
        self._refreshing = None

    def invalidate(self) -> None:
        self._view, self._retry_at = None, 0.0

    async def _refresh(self) -> CatalogView:
        try:
            profiles, images, distros, settings = await asyncio.gather(
                self.cobbler.list_profiles(), self.cobbler.list_images(), self.cobbler.list_distros(),
                self.cobbler.settings())
        except (CobblerError, BackendTimeout) as exc:
            old = self._view
            log.warning("catalog: %s; serving the %s", exc.message, "last good list" if old else "empty list")
            # Try again soon (not on every page view: a hanging Cobbler would cost each one the timeout).
            self._retry_at = time.monotonic() + min(self.ttl, RETRY_AFTER)
            self._view = CatalogView(old.entries if old else [], stale=True, source="cobbler", error=exc.message,
                                     fetched_at=old.fetched_at if old else 0.0)
            return self._view
        by_name = {p["name"]: p for p in profiles}
        distro_map = {d["name"]: d for d in distros}
        entries = [e for p in profiles if (e := profile_entry(p, by_name, distro_map, settings)) is not None]
        entries += [image_entry(i, settings) for i in images]
        entries.sort(key=lambda e: (e.kind, e.name))
        self._view = CatalogView(entries, stale=False, source="cobbler", fetched_at=time.monotonic())
        return self._view

    # -- one entry, fresh, for a checkout -----------------------------------------------------------
    async def resolve(self, target: str) -> CatalogEntry:
        """The entry ``target`` names, fresh from its source; ValidationError(field='target') when unknown.

        With Cobbler this is one or two calls, and it raises Cobbler's error (502 naming its URL) when Cobbler
        is unreachable, so a checkout never starts against a Cobbler that cannot take it.
        """
        if not isinstance(target, str) or not target.strip():
            raise ValidationError("target (a profile or image name) is required", field="target")
        kind, name = split_target(target.strip())
        if self._local is not None:
            self._reload_local()
            if kind in (None, "local"):
                for local in self._local.entries:
                    if local.name == name:
                        return local
            raise self._unknown(target)
        entry: CatalogEntry | None = None
        if kind in (None, "profile"):
            entry = await self._cobbler_profile(name)
        if entry is None and kind in (None, "image"):
            image = await self.cobbler.get_image(name, resolved=True)
            if image is not None:
                entry = image_entry(image, {})
        if entry is None:
            raise self._unknown(target)
        return entry

    async def _cobbler_profile(self, name: str) -> CatalogEntry | None:
        try:
            data = await self.cobbler.blended_profile(name)
        except CobblerError as exc:
            if "profile not found" in exc.details.get("fault", ""):
                return None
            raise
        return blended_entry(data)

    def _unknown(self, target: str) -> ValidationError:
        where = "Cobbler profile or image" if self.cobbler is not None else "profile in the local catalog"
        return ValidationError(f"unknown {where} {target!r}", field="target", details={"target": target})
