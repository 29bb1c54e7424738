"""What a host holds, read in as few libvirt calls as the data allows.

A full read of a host is ``getFreeMemory`` plus ONE ``getAllDomainStats``
(state of every domain, running or not); the domain objects it returns carry
name, UUID and id without further calls. Domain XML (MACs, VNC port, memory,
the Fogmachine mark) is fetched only for domains that are new or whose
(id, state) changed since the last read: the VNC port and the live XML only
change when a domain starts or stops, and a redefinition sends a DEFINED event
that drops the cached entry. Facts that only change with the machine itself
(total memory, CPUs, hypervisor version) are read once per connection.

Everything here is blocking and runs on the host's executor thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from fogmachine.db.models import GuestState
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

    def same_as(self, other: HostSnapshot | None, free_slack_mb: int) -> bool:
        """Equal for the database's purposes: free memory may wobble within ``free_slack_mb``."""
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
    """What each domain's XML said, per UUID, valid while the domain's (id, state) stays the same.

    Holds the finished ``DomainInfo`` so an unchanged domain costs two local
    calls (UUID, id) and a dict lookup per read, and unchanged snapshots
    compare equal by identity. Shared between the executor thread (reads,
    fills) and the IOLoop (drops an entry when an event says the domain
    changed); every operation is a single dict operation, atomic under the GIL.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, int], DomainInfo]] = {}

    def get(self, uuid: str, key: tuple[int, int]) -> DomainInfo | None:
        entry = self._entries.get(uuid)
        return entry[1] if entry is not None and entry[0] == key else None

    def put(self, uuid: str, key: tuple[int, int], info: DomainInfo) -> None:
        self._entries[uuid] = (key, info)

    def drop(self, uuid: str) -> None:
        self._entries.pop(uuid, None)

    def keep_only(self, uuids: set[str]) -> None:
        for uuid in [u for u in list(self._entries) if u not in uuids]:
            self._entries.pop(uuid, None)

    def clear(self) -> None:
        self._entries.clear()


def domain_info(dom: libvirt.virDomain, state_code: int, cache: XmlCache | None = None) -> DomainInfo:
    """DomainInfo for ``dom`` in ``state_code``; one XMLDesc call unless the cache holds it."""
    uuid = dom.UUIDString()
    domain_id = dom.ID()
    key = (domain_id, state_code)
    if cache is not None:
        cached = cache.get(uuid, key)
        if cached is not None:
            return cached
    parsed = parse_domain_xml(dom.XMLDesc(0))
    info = DomainInfo(
        name=dom.name(),
        uuid=uuid,
        state=STATES.get(state_code, GuestState.NOSTATE),
        domain_id=domain_id,
        memory_mb=parsed.memory_mb,
        current_memory_mb=parsed.current_memory_mb,
        vcpus=parsed.vcpus,
        macs=parsed.macs,
        vnc_port=parsed.vnc_port,
        guest_id=parsed.guest_id,
    )
    if cache is not None:
        cache.put(uuid, key, info)
    return info


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


def read_snapshot(conn: libvirt.virConnect, static: StaticFacts, cache: XmlCache) -> HostSnapshot:
    """Everything a resync needs from one host (see the module docstring for the calls made)."""
    try:
        free_mb = int(conn.getFreeMemory()) // MIB
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            raise
        free_mb = 0
    domains: list[DomainInfo] = []
    for dom, state in _domain_states(conn):
        try:
            domains.append(domain_info(dom, state, cache))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined between the two calls
                raise
    domains.sort(key=lambda d: d.name)
    cache.keep_only({d.uuid for d in domains})
    return HostSnapshot(facts=compute_facts(static, free_mb, domains), domains=tuple(domains))


def compute_facts(static: StaticFacts, reported_free_mb: int, domains: list[DomainInfo]) -> HostFacts:
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
