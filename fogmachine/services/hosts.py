"""Hosts as people see them: capacity, state, and switching a host off for maintenance.

A disabled host keeps its guests running and reachable; it only stops taking
new ones (placement skips it). The flag survives restarts and ``hosts sync``:
the virthosts file says which hosts exist, administrators say which take work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine import placement
from fogmachine.db.models import Host
from fogmachine.errors import Conflict, NotFound
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.timestamps import iso_utc


def display_state(host: Host) -> str:
    """up, down or unknown, or disabled when an administrator switched it off."""
    return "disabled" if not host.enabled else host.state


def _percent(part: float, whole: float) -> int:
    if whole <= 0:
        return 0
    return max(0, min(100, round(100 * part / whole)))


def host_to_dict(host: Host, cpu_overcommit: float, used: placement.Usage) -> dict[str, Any]:
    """A host's state and capacity as the dashboard, the live feed and the API show it.

    Free memory and free vCPUs are placement's (``placement.free_on``): the host's memory, and its
    CPUs times ``cpu_overcommit``, minus what the guests on it hold (``used``, from ``usage``), so a
    guest of the size shown free fits. What the hypervisor itself reports free is given apart, as
    ``hypervisor_free_memory_mb``, for operators; nothing decides by it.
    """
    vcpu_capacity = placement.vcpu_capacity(host, cpu_overcommit)
    free_mb, free_vcpus = placement.free_on(host, used, cpu_overcommit)
    return {
        "name": host.name,
        "virt_type": host.virt_type,
        "state": host.state,
        "display_state": display_state(host),
        "enabled": host.enabled,
        "in_config": host.in_config,
        "state_reason": host.state_reason,
        "total_memory_mb": host.total_memory_mb,
        "free_memory_mb": free_mb,
        "placed_memory_mb": used.ram_mb,
        "memory_used_pct": _percent(host.total_memory_mb - free_mb, host.total_memory_mb),
        "hypervisor_free_memory_mb": host.free_memory_mb,
        "committed_memory_mb": host.committed_memory_mb,
        "cpus": host.cpus,
        "vcpu_capacity": vcpu_capacity,
        "placed_vcpus": used.vcpus,
        "committed_vcpus": host.committed_vcpus,
        "vcpus_free": free_vcpus,
        "cpu_used_pct": _percent(vcpu_capacity - free_vcpus, vcpu_capacity),
        "guest_count": host.guest_count,
        "last_seen_at": iso_utc(host.last_seen_at),
    }


def usage(session: Session, hosts: list[Host]) -> dict[int, placement.Usage]:
    """What the guests on each of ``hosts`` hold, counted as placement counts it (one query)."""
    return placement.usage_by_host(session, [h.id for h in hosts])


def host_dicts(session: Session, hosts: list[Host], cpu_overcommit: float) -> list[dict[str, Any]]:
    """``host_to_dict`` of each host, with what its guests hold read in one query."""
    used = usage(session, hosts)
    return [host_to_dict(h, cpu_overcommit, used.get(h.id, placement.Usage())) for h in hosts]


@dataclass(frozen=True)
class Capacity:
    """The cloud's capacity over the hosts that take new guests (enabled and up)."""

    hosts_total: int
    hosts_usable: int
    memory_total_mb: int
    memory_free_mb: int
    vcpu_capacity: int
    vcpus_free: int
    guests: int

    @property
    def memory_used_pct(self) -> int:
        return _percent(self.memory_total_mb - self.memory_free_mb, self.memory_total_mb)

    @property
    def cpu_used_pct(self) -> int:
        return _percent(self.vcpu_capacity - self.vcpus_free, self.vcpu_capacity)


def list_hosts(session: Session) -> list[Host]:
    """Every host, by name. Any logged-in user may see hosts; their guests are filtered elsewhere."""
    return list(session.scalars(select(Host).order_by(Host.name)))


def get_host(session: Session, host_name: str) -> Host:
    """One host by name (any logged-in user may see hosts), or NotFound."""
    host = session.scalar(select(Host).where(Host.name == host_name))
    if host is None:
        raise NotFound(f"no host named {host_name}")
    return host


def capacity(hosts: list[Host], cpu_overcommit: float, used: Mapping[int, placement.Usage]) -> Capacity:
    """The cloud's totals over the hosts that take guests, free as placement counts it (``usage``)."""
    usable = [h for h in hosts if h.enabled and h.state == "up"]
    free = [placement.free_on(h, used.get(h.id, placement.Usage()), cpu_overcommit) for h in usable]
    return Capacity(
        hosts_total=len(hosts),
        hosts_usable=len(usable),
        memory_total_mb=sum(h.total_memory_mb for h in usable),
        memory_free_mb=sum(mb for mb, _ in free),
        vcpu_capacity=sum(placement.vcpu_capacity(h, cpu_overcommit) for h in usable),
        vcpus_free=sum(vcpus for _, vcpus in free),
        guests=sum(h.guest_count for h in hosts),
    )


def set_enabled(session: Session, actor: Actor, host_name: str, enabled: bool) -> Host:
    """Enable a host, or disable it for maintenance (administrators only)."""
    actor.require_write()
    actor.require_admin()
    host = session.scalar(select(Host).where(Host.name == host_name).with_for_update())
    if host is None:
        raise NotFound(f"no host named {host_name}")
    if enabled and not host.in_config:
        raise Conflict(f"host {host.name} is no longer in virthosts.conf; add it there to enable it")
    host.enabled = enabled
    audit.record(session, actor, "host.enable" if enabled else "host.disable", object_type="host",
                 object_id=host.id, object_name=host.name)
    return host
