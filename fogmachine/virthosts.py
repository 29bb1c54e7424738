"""``virthosts.conf``: the hypervisor hosts, one ``name, libvirt-uri, virt-type`` a line.

The file is the operator's source of truth and is synced into the ``hosts``
table at start and by ``fogmachine hosts sync``. A host that leaves the file is
disabled while guests still live on it (nothing is lost) and deleted once it
has none.

A ``test:`` URI with a relative path (``test:demo/alpha.xml``) is resolved
against the file's directory into libvirt's absolute form
(``test:///ABS/demo/alpha.xml``), so the shipped demo works from any checkout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, Host, Step
from fogmachine.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch only: "$" lets a final "\n" in
URI_RE = re.compile(r"[a-z][a-z0-9+.-]*:\S*")
VIRT_TYPES = ("qemu", "kvm", "xen", "lxc", "test")


@dataclass(frozen=True)
class HostEntry:
    name: str
    uri: str
    virt_type: str


def resolve_uri(uri: str, base_dir: Path) -> str:
    if uri.startswith("test:") and not uri.startswith("test:/") and not uri.startswith("test+"):
        return f"test://{(base_dir / uri[len('test:'):]).resolve()}"
    return uri


def parse(path: str | Path) -> list[HostEntry]:
    """Parse the file; a malformed line raises ConfigError with the file and line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read virthosts file {path}: {exc.strerror}") from None
    entries: list[HostEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}, line {number}"
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3:
            raise ConfigError(f"{where}: expected 'name, libvirt-uri, virt-type', found {len(parts)} field(s)")
        name, uri, virt_type = parts
        if not NAME_RE.fullmatch(name):
            raise ConfigError(f"{where}: host name {name!r} must be letters, digits, '.', '_' or '-'")
        if not URI_RE.fullmatch(uri):
            raise ConfigError(f"{where}: {uri!r} is not a libvirt URI (e.g. qemu+ssh://host/system)")
        virt_type = virt_type.lower()
        if virt_type not in VIRT_TYPES:
            raise ConfigError(f"{where}: virt type {virt_type!r} is not one of {', '.join(VIRT_TYPES)}")
        if name in seen:
            raise ConfigError(f"{where}: host {name!r} is already defined on line {seen[name]}")
        seen[name] = number
        entries.append(HostEntry(name, resolve_uri(uri, path.parent), virt_type))
    return entries


def guests_live_on(host_id: Any) -> ColumnElement[bool]:
    """Whether Fogmachine's guests still live on the host: what keeps a host that left the file in the
    table, and watched (``host_id`` a value, or ``Host.id`` in a query over hosts)."""
    return exists().where(Guest.host_id == host_id, Guest.managed.is_(True), Guest.step != Step.RETIRED)


@dataclass
class SyncResult:
    added: list[str]
    updated: list[str]
    disabled: list[str]
    deleted: list[str]


def sync(session: Session, entries: list[HostEntry]) -> SyncResult:
    """Make the hosts table follow the file (see the module docstring)."""
    result = SyncResult([], [], [], [])
    existing = {h.name: h for h in session.scalars(select(Host))}
    wanted = {e.name: e for e in entries}
    for entry in entries:
        host = existing.get(entry.name)
        if host is None:
            session.add(Host(name=entry.name, uri=entry.uri, virt_type=entry.virt_type, enabled=True,
                             in_config=True))
            result.added.append(entry.name)
        elif (host.uri, host.virt_type, host.in_config) != (entry.uri, entry.virt_type, True):
            host.uri, host.virt_type = entry.uri, entry.virt_type
            if not host.in_config:
                host.in_config = True
                host.enabled = True
            result.updated.append(entry.name)
    for name, host in existing.items():
        if name in wanted:
            continue
        if session.scalar(select(guests_live_on(host.id))):
            if host.in_config or host.enabled:
                host.in_config = False
                host.enabled = False
                result.disabled.append(name)
        else:
            for guest in session.scalars(select(Guest).where(Guest.host_id == host.id)):
                if guest.managed:
                    guest.host_id = None  # retired history keeps its row
                else:
                    session.delete(guest)
            session.delete(host)
            result.deleted.append(name)
    session.flush()
    return result
