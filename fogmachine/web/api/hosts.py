"""Hosts: every logged-in user may look; administrators switch them on and off for maintenance."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fogmachine.services import hosts
from fogmachine.services.actor import Actor
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj

HOST_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
TAG = "hosts"

HOST = Obj("Host", (
    Field("name", "string", "the name from virthosts.conf"),
    Field("virt_type", "string", "qemu, kvm, xen, lxc or test"),
    Field("state", "string", "reachability as libvirt last reported it", enum=("unknown", "up", "down")),
    Field("display_state", "string", "state, or disabled when an administrator switched the host off",
          enum=("unknown", "up", "down", "disabled")),
    Field("enabled", "boolean", "false: the host takes no new guests (maintenance)"),
    Field("in_config", "boolean", "false: the host left virthosts.conf and is kept while guests live on it"),
    Field("state_reason", "string", "why the host is down or unknown"),
    Field("total_memory_mb", "integer", minimum=0, maximum=2**53),
    Field("free_memory_mb", "integer", "what placement can still give guests: total memory minus what every "
          "guest on the host holds (not failed or retired, running or not)", minimum=0, maximum=2**53),
    Field("placed_memory_mb", "integer", "what the guests on the host hold", minimum=0, maximum=2**53),
    Field("memory_used_pct", "integer", "100 x (total - free) / total", minimum=0, maximum=100),
    Field("hypervisor_free_memory_mb", "integer", "what the hypervisor itself reports free (for operators; "
          "placement does not use it)", minimum=0, maximum=2**53),
    Field("committed_memory_mb", "integer", "memory of the running domains, as libvirt reports it",
          minimum=0, maximum=2**53),
    Field("cpus", "integer", minimum=0),
    Field("vcpu_capacity", "integer", "physical CPUs times cpu_overcommit", minimum=0),
    Field("placed_vcpus", "integer", "vCPUs the guests on the host hold", minimum=0),
    Field("committed_vcpus", "integer", "vCPUs of the running domains, as libvirt reports them", minimum=0),
    Field("vcpus_free", "integer", "vcpu_capacity minus placed_vcpus: what placement can still give",
          minimum=0),
    Field("cpu_used_pct", "integer", minimum=0, maximum=100),
    Field("guest_count", "integer", minimum=0),
    Field("last_seen_at", "datetime", "when the host last answered", nullable=True),
), closed=False)
HOST_LIST = Obj("HostList", (Field("hosts", "array", items=HOST),), closed=False)


def _list(session: Session, overcommit: float) -> list[dict[str, Any]]:
    return hosts.host_dicts(session, hosts.list_hosts(session), overcommit)


def _get(session: Session, name: str, overcommit: float) -> dict[str, Any]:
    return hosts.host_dicts(session, [hosts.get_host(session, name)], overcommit)[0]


def _set_enabled(session: Session, actor: Actor, name: str, enabled: bool, overcommit: float) -> dict[str, Any]:
    return hosts.host_dicts(session, [hosts.set_enabled(session, actor, name, enabled)], overcommit)[0]


class HostsHandler(ApiHandler):
    api = {"get": Op("List hosts", TAG, "Every host with its state and capacity, by name.", response=HOST_LIST)}

    async def get(self) -> None:
        self.write_json({"hosts": await self.ctx.db.run(_list, self.ctx.config.cpu_overcommit)})


class HostHandler(ApiHandler):
    api = {"get": Op("Show a host", TAG, response=HOST)}

    async def get(self, host_name: str) -> None:
        self.write_json(await self.ctx.db.run(_get, host_name, self.ctx.config.cpu_overcommit))


class HostSwitchHandler(ApiHandler):
    """Enable or disable; which one is fixed per route by ``enabled``."""

    api = {"post": Op("Enable or disable a host", TAG, response=HOST, admin=True)}

    def initialize(self, enabled: bool) -> None:
        self.enabled = enabled

    async def post(self, host_name: str) -> None:
        self.write_json(await self.ctx.db.run(_set_enabled, self.actor, host_name, self.enabled,
                                              self.ctx.config.cpu_overcommit))


ENABLE_DOC = {"post": Op("Enable a host: it takes new guests again", TAG, response=HOST, admin=True, errors=(409,))}
DISABLE_DOC = {"post": Op("Disable a host for maintenance: its guests keep running, it takes no new ones", TAG,
                          response=HOST, admin=True)}


class HostEnableHandler(HostSwitchHandler):
    api = ENABLE_DOC


class HostDisableHandler(HostSwitchHandler):
    api = DISABLE_DOC


default_handlers = [
    (r"/api/v1/hosts", HostsHandler),
    (rf"/api/v1/hosts/(?P<host_name>{HOST_NAME})", HostHandler),
    (rf"/api/v1/hosts/(?P<host_name>{HOST_NAME})/enable", HostEnableHandler, {"enabled": True}),
    (rf"/api/v1/hosts/(?P<host_name>{HOST_NAME})/disable", HostDisableHandler, {"enabled": False}),
]
