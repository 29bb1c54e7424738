"""The blocking libvirt calls on one domain that a HostConnection runs on a call thread.

Each takes the connection first (``CallThreads.submit(fn, conn, *args)``) and
lets ``libvirt.libvirtError`` through: ``HostConnection._call`` translates it
with the action and the guest's name, which only it knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt

from fogmachine.virt.inventory import DomainInfo, domain_info

# Tried in order, the fullest cleanup first: a driver that does not know a flag refuses the call with
# INVALID_ARG or NO_SUPPORT, and the next, smaller set is tried.
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA,
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA,
    0,
)


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain:
    return conn.lookupByName(name)


def lookup_info(conn: libvirt.virConnect, name: str) -> DomainInfo:
    dom = lookup(conn, name)
    return domain_info(dom, dom.state()[0])


def on_domain(conn: libvirt.virConnect, name: str, op: Callable[[libvirt.virDomain], Any]) -> None:
    op(lookup(conn, name))


def define(conn: libvirt.virConnect, xml: str) -> DomainInfo:
    dom = conn.defineXML(xml)
    return domain_info(dom, dom.state()[0])


def undefine(dom: libvirt.virDomain) -> None:
    last: libvirt.libvirtError | None = None
    for flags in UNDEFINE_FLAGS:
        try:
            dom.undefineFlags(flags) if flags else dom.undefine()
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            last = exc
    assert last is not None
    raise last


def redefine(conn: libvirt.virConnect, name: str, edit: Callable[[str], str | None]) -> bool:
    dom = lookup(conn, name)
    xml = edit(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
    if xml is None:
        return False
    conn.defineXML(xml)
    return True
