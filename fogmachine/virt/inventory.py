"""What a host holds, read in as few libvirt calls as the data allows.

A full read of a host is ``getFreeMemory`` plus ONE ``getAllDomainStats``
(state of every domain, running or not); the domain objects it returns carry
name, UUID and id without further calls. Domain XML (MACs, VNC port, memory,
the Fogmachine mark) is fetched only for domains that are new or whose id
changed since the last read: the VNC port and the live XML only change when a
domain starts or stops (which gives it a new id), not when it is paused or
resumed, and a redefinition sends a DEFINED event that drops the cached entry.
Over a network every XMLDesc is a round trip of its own (bench/virt_network.py),
so the pause a user asked for costs its host no XML read at the next resync.
Facts that only change with the machine itself (total memory, CPUs,
hypervisor version) are read once per connection.

Everything here is blocking and runs on a call thread (``virt.callthreads``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libvirt

from fogmachine.states import GuestState
from fogmachine.virt.domainxml import parse_domain_xml

MIB = 1024 * 1024
STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: GuestState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: GuestState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: GuestState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: GuestState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: GuestState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: GuestState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: GuestState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: GuestState.SUSPENDED,
}
EVENT_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "DEFINED",
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "UNDEFINED",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "STARTED",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "SUSPENDED",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "RESUMED",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "STOPPED",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "SHUTDOWN",
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "PMSUSPENDED",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "CRASHED",
}


@dataclass(frozen=True)
class DomainInfo:
    """One domain as Fogmachine keeps it: libvirt state plus what its XML says."""

    name: str
    uuid: str
    state: str
    domain_id: int  # -1 when not running
    memory_mb: int
    current_memory_mb: int
    vcpus: int
    macs: tuple[str, ...]
    vnc_port: int | None
    guest_id: int | None
    disks: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.domain_id >= 0

    @property
    def mac(self) -> str | None:
        return self.macs[0] if self.macs else None


@dataclass(frozen=True)
class StaticFacts:
    """Read once per connection."""

    total_memory_mb: int
    cpus: int
    hypervisor_type: str
    hypervisor_version: str


@dataclass(frozen=True)
class HostFacts:
    total_memory_mb: int
    free_memory_mb: int
    cpus: int
    committed_memory_mb: int
    committed_vcpus: int
    guest_count: int
    hypervisor_type: str
    hypervisor_version: str


@dataclass(frozen=True)
class HostSnapshot:
    facts: HostFacts
    domains: tuple[DomainInfo, ...]
    reported_free_mb: int = 0  # what the host said (0: nothing), kept to compute the facts again (``with_domains``)

    def same_as(self, other: HostSnapshot | None, free_slack_mb: int) -> bool:
        """Equal for the database's purposes: free memory may wobble within ``free_slack_mb``."""
        if other is self:
            return True
        if other is None or self.domains != other.domains:
            return False
        a, b = self.facts, other.facts
        if abs(a.free_memory_mb - b.free_memory_mb) > free_slack_mb:
            return False
        return a == HostFacts(**{**b.__dict__, "free_memory_mb": a.free_memory_mb})


def format_version(number: int) -> str:
    """libvirt's 7002022 as 7.2.22."""
    if number <= 0:
        return ""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def read_static(conn: libvirt.virConnect) -> StaticFacts:
    info = conn.getInfo()  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
    return StaticFacts(
        total_memory_mb=int(info[1]),
        cpus=int(info[2]),
        hypervisor_type=conn.getType(),
        hypervisor_version=format_version(conn.getVersion()),
    )


class XmlCache:
    """What each domain's XML said, per UUID, valid while the domain's id stays the same.

    Holds the finished ``DomainInfo`` so that an unchanged domain costs two
    local calls (UUID, id) per read; and the last snapshot with the (UUID, id,
    state) of every domain in it, so that a read of an unchanged host returns
    that very snapshot (equal by identity, nothing rebuilt or sorted).

    Filled on the call thread that reads the host; emptied of a domain on the
    IOLoop when an event says it changed. A read hands in everything it learnt
    at the end (``commit``), and it is kept only if nothing was dropped since
    the read began (``generation``): otherwise a read that fetched a domain's
    XML just before a redefinition would put the old XML back after the event
    took it out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self.entries: dict[str, tuple[int, DomainInfo]] = {}  # uuid: (domain id, what it was read as)
        # (uuid, id, state) per domain in libvirt's order, reported free MiB, the snapshot made of them.
        self.last: tuple[list[tuple[str, int, int]], int, HostSnapshot] | None = None

    def commit(self, generation: int, entries: dict[str, tuple[int, DomainInfo]],
               last: tuple[list[tuple[str, int, int]], int, HostSnapshot] | None) -> None:
        with self._lock:
            if generation == self.generation:
                self.entries, self.last = entries, last

    def drop(self, uuid: str) -> None:
        with self._lock:
            self.generation += 1
            self.entries.pop(uuid, None)
            self.last = None

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.entries = {}
            self.last = None


def domain_info(dom: libvirt.virDomain, state_code: int, uuid: str | None = None,
                domain_id: int | None = None) -> DomainInfo:
    """DomainInfo for ``dom`` in ``state_code``, from its XML (one XMLDesc call)."""
    parsed = parse_domain_xml(dom.XMLDesc(0))
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString() if uuid is None else uuid,
        state=STATES.get(state_code, GuestState.NOSTATE),
        domain_id=dom.ID() if domain_id is None else domain_id,
        memory_mb=parsed.memory_mb,
        current_memory_mb=parsed.current_memory_mb,
        vcpus=parsed.vcpus,
        macs=parsed.macs,
        vnc_port=parsed.vnc_port,
        guest_id=parsed.guest_id,
        disks=parsed.disks,
    )


def _domain_states(conn: libvirt.virConnect) -> list[tuple[libvirt.virDomain, int]]:
    """(domain, state) for every domain: one call where the driver has bulk stats."""
    try:
        stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        return [(dom, st.get("state.state", libvirt.VIR_DOMAIN_NOSTATE)) for dom, st in stats]
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            raise
    result = []
    for dom in conn.listAllDomains(0):
        try:
            result.append((dom, int(dom.state()[0])))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return result


def _free_memory_mb(conn: libvirt.virConnect) -> int:
    try:
        return int(conn.getFreeMemory()) // MIB
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            raise
        return 0


def read_snapshot(conn: libvirt.virConnect, static: StaticFacts, cache: XmlCache) -> HostSnapshot:
    """Everything a resync needs from one host (see the module docstring for the calls made)."""
    generation = cache.generation
    free_mb = _free_memory_mb(conn)
    listed = _domain_states(conn)
    keys = [(dom.UUIDString(), dom.ID(), state) for dom, state in listed]
    last = cache.last
    if last is not None and last[0] == keys:  # no domain changed: the XML-derived part is the same
        if last[1] == free_mb:
            return last[2]
        domains = last[2].domains
        entries = cache.entries
        complete = True
    else:
        known = cache.entries
        entries = {}
        found: list[DomainInfo] = []
        complete = True
        for (dom, state), (uuid, domain_id, _) in zip(listed, keys, strict=True):
            entry = known.get(uuid)
            if entry is not None and entry[0] == domain_id:
                info = entry[1]
                name = STATES.get(state, GuestState.NOSTATE)
                if info.state != name:  # paused or resumed: the XML is the same
                    info = dataclasses.replace(info, state=name)
            else:
                try:
                    info = domain_info(dom, state, uuid, domain_id)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined between the two calls
                        raise
                    complete = False
                    continue
            entries[uuid] = (domain_id, info)
            found.append(info)
        found.sort(key=lambda d: d.name)
        domains = tuple(found)
    snapshot = HostSnapshot(facts=compute_facts(static, free_mb, domains), domains=domains, reported_free_mb=free_mb)
    # Incomplete: the keys name a domain that is not in the snapshot, so they may not stand for it.
    cache.commit(generation, entries, (keys, free_mb, snapshot) if complete else None)
    return snapshot


def with_domains(snapshot: HostSnapshot, static: StaticFacts, changed: Mapping[str, DomainInfo]) -> HostSnapshot:
    """``snapshot`` with the domains of those UUIDs as given, its facts computed again; itself when it has none.

    How an action's outcome, read with the action's own calls, reaches the database without a read of the
    whole host (``HostConnection.act``).
    """
    if not any(d.uuid in changed for d in snapshot.domains):
        return snapshot
    domains = tuple(sorted((changed.get(d.uuid, d) for d in snapshot.domains), key=lambda d: d.name))
    return HostSnapshot(compute_facts(static, snapshot.reported_free_mb, domains), domains,
                        snapshot.reported_free_mb)


def compute_facts(static: StaticFacts, reported_free_mb: int, domains: Sequence[DomainInfo]) -> HostFacts:
    """Host facts from the static ones and the domain list.

    Free memory is what the hypervisor reports. libvirt's test driver reports 0
    for a custom host file, and so may a driver without the call; then free is
    total minus the memory of running domains, the same figure a real host's
    free memory approximates for placement.
    """
    running = [d for d in domains if d.active]
    committed_mb = sum(d.current_memory_mb for d in running)
    free_mb = reported_free_mb if reported_free_mb > 0 else max(0, static.total_memory_mb - committed_mb)
    return HostFacts(
        total_memory_mb=static.total_memory_mb,
        free_memory_mb=free_mb,
        cpus=static.cpus,
        committed_memory_mb=committed_mb,
        committed_vcpus=sum(d.vcpus for d in running),
        guest_count=len(domains),
        hypervisor_type=static.hypervisor_type,
        hypervisor_version=static.hypervisor_version,
    )
