"""Which host takes a new guest.

The rules are pure functions over host rows and what their guests use, so they
are tested without a database. The two database functions at the end lock the
candidate hosts and sum their guests inside the caller's transaction: the
checkout claims capacity in the same transaction that inserts the guest row,
so two checkouts, even in two processes sharing MariaDB or PostgreSQL, can
never both take the last room on a host (``SELECT ... FOR UPDATE`` on the host
rows; on SQLite the caller takes the write lock at BEGIN).

What counts as used: every guest on the host that is not failed or retired,
whatever its power state (a shut-off guest can be started again any time) and
whether or not it is still being provisioned or waiting for its environment's
earlier tiers (an environment claims every tier's capacity at once); domains
Fogmachine found but did not create count too.

Several guests placed together (an environment's, ``place_group``) go one by
one, each seeing what the ones before it took, with anti-affinity as one more
reason a host cannot take a guest. Memory is not overcommitted; vCPUs are, by
``cpu_overcommit`` per physical CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, Host, HostState, Step

RELEASED_STEPS = (Step.FAILED, Step.RETIRED)

# Which host virt types run a guest of each virt type. A kvm host also runs plain
# qemu guests; the test driver simulates any hypervisor (demo and tests).
COMPATIBLE = {
    "kvm": {"kvm"},
    "qemu": {"qemu", "kvm"},
    "xen": {"xen"},
    "lxc": {"lxc"},
    "test": set(),
}


@dataclass(frozen=True)
class Demand:
    ram_mb: int
    vcpus: int
    virt_type: str


@dataclass(frozen=True)
class Usage:
    ram_mb: int = 0
    vcpus: int = 0
    guests: int = 0


@dataclass(frozen=True)
class Room:
    """One host's answer to a demand: what it has free and whether the guest fits (and if not, why)."""

    host_id: int
    name: str
    free_ram_mb: int
    free_vcpus: int
    fits: bool
    reason: str = ""


def compatible(host_virt_type: str, guest_virt_type: str) -> bool:
    return host_virt_type == "test" or host_virt_type in COMPATIBLE.get(guest_virt_type, set())


def domain_type(host_virt_type: str, guest_virt_type: str) -> str:
    """The libvirt domain type for a guest on a host: the host's own when it is test or kvm."""
    if host_virt_type in ("test", "kvm"):
        return host_virt_type
    return guest_virt_type


def usage_of(guests: Iterable[Any]) -> dict[int, Usage]:
    """Sum RAM and vCPUs of the guests that hold capacity, per host id."""
    totals: dict[int, list[int]] = {}
    for guest in guests:
        if guest.host_id is None or guest.step in RELEASED_STEPS:
            continue
        t = totals.setdefault(guest.host_id, [0, 0, 0])
        t[0] += guest.ram_mb or 0
        t[1] += guest.vcpus or 0
        t[2] += 1
    return {host_id: Usage(*t) for host_id, t in totals.items()}


def vcpu_capacity(host: Any, cpu_overcommit: float) -> int:
    return int(host.cpus * cpu_overcommit)


def free_on(host: Any, used: Usage, cpu_overcommit: float) -> tuple[int, int]:
    """(MiB, vCPUs) free on ``host``: THE definition of free, the one placement decides with and every
    page, the API and the CLI show. Memory: the host's total minus every guest that holds capacity
    (``used``); what the hypervisor itself reports free is not it (libvirt's test driver reports a few
    MiB, a real host counts its page cache as used and guests that are shut off as free)."""
    return (max(0, host.total_memory_mb - used.ram_mb), max(0, vcpu_capacity(host, cpu_overcommit) - used.vcpus))


def room_on(host: Any, used: Usage, demand: Demand, cpu_overcommit: float, *,
            excluded: bool = False, unfit: str = "") -> Room:
    """``unfit``: why the host cannot take this guest whatever its room (no storage pool for a disk image)."""
    free_ram, free_vcpus = free_on(host, used, cpu_overcommit)
    reason = ""
    if not host.enabled:
        reason = "disabled"
    elif host.state != HostState.UP:
        reason = f"host is {host.state}"
    elif not compatible(host.virt_type, demand.virt_type):
        reason = f"{host.virt_type} host cannot run a {demand.virt_type} guest"
    elif excluded:
        reason = "a domain of that name already exists there"
    elif unfit:
        reason = unfit
    elif host.total_memory_mb <= 0 or host.cpus <= 0:
        reason = "capacity not known yet"
    elif free_ram < demand.ram_mb:
        reason = f"{free_ram} MiB free"
    elif free_vcpus < demand.vcpus:
        reason = f"{free_vcpus} vCPUs free"
    return Room(host.id, host.name, free_ram, free_vcpus, fits=not reason, reason=reason)


def rooms(hosts: Iterable[Any], usage: Mapping[int, Usage], demand: Demand, cpu_overcommit: float,
          excluded: Iterable[int] = (), unfit: Mapping[str, str] | None = None) -> list[Room]:
    """One Room per host; ``unfit`` maps host names to why they cannot take this guest at all."""
    skip, unfit = set(excluded), unfit or {}
    return [room_on(h, usage.get(h.id, Usage()), demand, cpu_overcommit, excluded=h.id in skip,
                    unfit=unfit.get(h.name, "")) for h in hosts]


def choose(candidates: Iterable[Room], policy: str) -> Room | None:
    """spread: the most free memory (guests spread out); pack: the least free memory that fits (hosts fill up).

    Ties go to more free vCPUs (spread) or fewer (pack), then to the name, so the choice is stable.
    """
    fitting = [r for r in candidates if r.fits]
    if not fitting:
        return None
    if policy == "pack":
        return min(fitting, key=lambda r: (r.free_ram_mb, r.free_vcpus, r.name))
    return min(fitting, key=lambda r: (-r.free_ram_mb, -r.free_vcpus, r.name))


def most_free(candidates: Iterable[Room], demand: Demand) -> dict[str, Any]:
    """The most memory and the most vCPUs any usable host of the right type has free (for the 409)."""
    usable = [r for r in candidates if r.fits or r.reason.endswith(" free")]
    if not usable:
        return {"ram_mb": 0, "vcpus": 0, "host": None}
    best = max(usable, key=lambda r: (r.free_ram_mb, r.free_vcpus))
    return {"ram_mb": best.free_ram_mb, "vcpus": max(r.free_vcpus for r in usable), "host": best.name}


def no_room_message(demand: Demand, candidates: list[Room]) -> str:
    best = most_free(candidates, demand)
    asked = f"{demand.ram_mb} MiB and {demand.vcpus} vCPU(s) ({demand.virt_type})"
    if best["host"] is None:
        # Hosts of the right type that cannot take it for another reason: say which and why.
        why = [f"{r.name}: {r.reason}" for r in candidates
               if r.reason and not r.reason.startswith(("disabled", "host is ")) and "cannot run" not in r.reason]
        if why:
            return f"no host can take {asked}: {'; '.join(why)}"
        return f"no host can take {asked}: no enabled, reachable host runs {demand.virt_type} guests"
    return (f"no host has room for {asked}; the most any host has free is {best['ram_mb']} MiB "
            f"(on {best['host']}) and {best['vcpus']} vCPU(s)")


# -- several guests placed together ------------------------------------------------------------------

def grown(usage: Mapping[int, Usage], host_id: int, demand: Demand) -> dict[int, Usage]:
    """``usage`` with one more guest of ``demand`` on ``host_id``: what a group's later members see of the
    earlier ones, which are not rows yet when the group is placed."""
    before = usage.get(host_id, Usage())
    return {**usage, host_id: Usage(before.ram_mb + demand.ram_mb, before.vcpus + demand.vcpus, before.guests + 1)}


@dataclass(frozen=True)
class Member:
    """One guest of a group placed together: what it needs and which hosts cannot take it.

    ``apart``: members with the same non-empty ``apart`` go to distinct hosts (a tier's anti-affinity; the
    text names the group in the refusal, "tier web"). ``excluded``: ids of hosts that already have a
    domain of its name. ``unfit``: host name -> why it cannot take this guest at all (``rooms``).
    """

    demand: Demand
    apart: str = ""
    excluded: frozenset[int] = frozenset()
    unfit: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupPlacement:
    """Where each member goes (``chosen``, in the members' order), or the first member no host can take
    (``refused``, its index) with that member's rooms as they were then (``candidates``, for the 409)."""

    chosen: tuple[Room, ...]
    refused: int | None = None
    candidates: tuple[Room, ...] = ()


def apart_reason(group: str) -> str:
    return f"takes another guest of {group} (anti-affinity)"


def place_group(hosts: Sequence[Any], usage: Mapping[int, Usage], members: Sequence[Member],
                cpu_overcommit: float, policy: str) -> GroupPlacement:
    """Place every member in order, or say which one fits nowhere.

    Each member goes where ``choose`` puts it given the usage the members before it added (``grown``) and
    the hosts its ``apart`` group already took. Greedy, without backtracking: the order is the caller's
    (an environment's tiers, which is also the order a user reads the refusal in), and each member is placed
    by the same rule as a guest of its own. It can refuse a group that another arrangement would fit (a
    large guest after small ones took the roomiest host, or ``pack`` filling the host an anti-affinity
    group needed); searching every arrangement grows exponentially with the group, under the hosts' locks.
    """
    used: dict[int, Usage] = dict(usage)
    taken: dict[str, set[str]] = {}  # apart group -> names of the hosts its members went to
    chosen: list[Room] = []
    for index, member in enumerate(members):
        unfit = dict(member.unfit)
        for host_name in taken.get(member.apart, set()):  # "" (no group) is never a key
            unfit.setdefault(host_name, apart_reason(member.apart))
        candidates = rooms(hosts, used, member.demand, cpu_overcommit, excluded=member.excluded, unfit=unfit)
        room = choose(candidates, policy)
        if room is None:
            return GroupPlacement(tuple(chosen), index, tuple(candidates))
        chosen.append(room)
        used = grown(used, room.host_id, member.demand)
        if member.apart:
            taken.setdefault(member.apart, set()).add(room.name)
    return GroupPlacement(tuple(chosen))


# -- inside the caller's transaction ---------------------------------------------------------------

def lock_hosts(session: Session) -> list[Host]:
    """The hosts that may take guests, locked until the transaction ends (always in id order: no deadlock)."""
    query = (select(Host).where(Host.enabled.is_(True), Host.state == HostState.UP)
             .order_by(Host.id).with_for_update())
    return list(session.scalars(query))


def usage_by_host(session: Session, host_ids: Iterable[int]) -> dict[int, Usage]:
    ids = list(host_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Guest.host_id, func.coalesce(func.sum(Guest.ram_mb), 0), func.coalesce(func.sum(Guest.vcpus), 0),
               func.count())
        .where(Guest.host_id.in_(ids), Guest.step.not_in([s.value for s in RELEASED_STEPS]))
        .group_by(Guest.host_id)
    )
    return {host_id: Usage(int(ram), int(vcpus), int(count)) for host_id, ram, vcpus, count in rows
            if host_id is not None}

