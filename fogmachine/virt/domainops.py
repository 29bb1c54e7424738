"""The blocking libvirt calls on one domain that a HostConnection runs on a call thread.

Each takes the connection first (``CallThreads.submit(fn, conn, *args)``) and
lets ``libvirt.libvirtError`` through: ``HostConnection._call`` translates it
with the action and the guest's name, which only it knows.

``act`` is a user's action in the round trips it needs: the look-up (which
also gives the domain's id), its state, the operation, and the domain's XML
only when the operation started or stopped it (a new VNC port, a new live
XML). What the operation leaves the domain in is libvirt's to say: starting,
resuming and destroying are done when the call returns, pausing too; only a
shutdown or reboot request depends on the guest, and for those the state is
read once more. Over a 2 ms link a pause went from 8 round trips (a fresh
read with XML, a second look-up, then a resync of the whole host with XML) to
3 (bench/virt_network.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from fogmachine.states import GuestState
from fogmachine.virt.inventory import STATES, DomainInfo, domain_info

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
    """Undefine ``dom`` with the fullest cleanup its driver knows.

    A failure that carries no libvirt error at all (CI saw "virDomainUndefineFlags() failed" and nothing
    more, once, under many concurrent deletes: the thread's last error was reset before the binding read
    it) says nothing of what happened, so the host is asked: a domain that is gone is undefined; one that
    is still there is tried once more.
    """
    last: libvirt.libvirtError | None = None
    for flags in UNDEFINE_FLAGS:
        for attempt in (1, 2):
            try:
                dom.undefineFlags(flags) if flags else dom.undefine()
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() is None:
                    if not _still_defined(dom):
                        return
                    if attempt == 1:
                        continue
                    raise
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                last = exc
                break
    assert last is not None
    raise last


def _still_defined(dom: libvirt.virDomain) -> bool:
    try:
        dom.connect().lookupByUUIDString(dom.UUIDString())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise
    return True


def redefine(conn: libvirt.virConnect, name: str, edit: Callable[[str], str | None]) -> bool:
    dom = lookup(conn, name)
    xml = edit(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
    if xml is None:
        return False
    conn.defineXML(xml)
    return True


@dataclass(frozen=True)
class Acted:
    """What ``act`` found and did: the domain before, and after unless ``refused``."""

    uuid: str
    state: str  # before the operation
    domain_id: int  # before the operation
    refused: str | None = None  # why the operation was not made (what ``refuse`` said)
    after_state: str | None = None
    after_id: int | None = None
    after: DomainInfo | None = None  # read anew when the domain started or stopped


def act(conn: libvirt.virConnect, name: str, op: Callable[[libvirt.virDomain], Any], leaves: int | None,
        refuse: Callable[[str], str | None] | None) -> Acted:
    """Look ``name`` up, read its state, let ``refuse`` veto, do ``op``; see the module docstring.

    ``leaves`` is the libvirt state the operation leaves the domain in, None when the guest decides.
    """
    dom = lookup(conn, name)
    uuid, domain_id = dom.UUIDString(), dom.ID()
    state = STATES.get(dom.state()[0], GuestState.NOSTATE)
    problem = refuse(state) if refuse is not None else None
    if problem:
        return Acted(uuid, state, domain_id, refused=problem)
    op(dom)
    code = dom.state()[0] if leaves is None else leaves
    after_state = STATES.get(code, GuestState.NOSTATE)
    # The remote driver updates the handle's id on create and destroy; a guest that shut down is inactive.
    after_id = -1 if code == libvirt.VIR_DOMAIN_SHUTOFF else dom.ID()
    after = None
    if (after_id >= 0) != (domain_id >= 0) or (after_id >= 0 and after_id != domain_id):
        after = domain_info(dom, code, uuid, after_id)
    return Acted(uuid, state, domain_id, after_state=after_state, after_id=after_id, after=after)
