"""The environment tests' server: two test-driver hosts and the local catalog, on each of the three databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Environment, EnvTemplate
from fogmachine.services.environments import spec as specmod
from fogmachine.services.environments.claim import EnvironmentRequest
from tests.support import provisioning as pv

UNIT = {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "boot": "network", "network": "user"}
PROFILES = {
    "unit": UNIT,
    "big": {**UNIT, "ram_mb": 6144, "vcpus": 2},
    "vm-xen": {**UNIT, "virt_type": "xen"},
    # A guest that phones home: its kernel command line carries the URL with its token (and its tier's variables).
    "announce": {**UNIT, "boot": "kernel", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img",
                 "cmdline": "console=ttyS0 fm.hostname={name} fm.phonehome={phonehome_url}", "phonehome": "yes"},
}
TWO_HOSTS = {"h1": {"cpus": 4, "memory_mb": 8192}, "h2": {"cpus": 4, "memory_mb": 8192}}
# The example: a database, then two web servers on distinct hosts.
DB_AND_WEB = {"tiers": [{"name": "db", "target": "unit"},
                        {"name": "web", "target": "unit", "count": 2, "anti_affinity": True}]}


def add_template(ctx: Context, name: str, spec: dict[str, Any], owner_id: int | None = None) -> int:
    """A template row as the templates service stores it: the spec, validated, as JSON."""
    stored = json.dumps(specmod.parse(spec).to_dict())

    def add(session: Any) -> int:
        row = EnvTemplate(name=name, description="", owner_id=owner_id, spec=stored)
        session.add(row)
        session.flush()
        return row.id

    return ctx.db.run_sync(add)


def count_environments(ctx: Context) -> int:
    return ctx.db.run_sync(lambda s: s.scalar(select(func.count()).select_from(Environment)))


def env_req(name: str = "lab1", template: str = "db-and-web", days: Any = 3, purpose: str = "testing",
            keep_failed: Any = False) -> EnvironmentRequest:
    return EnvironmentRequest(template=template, name=name, days=days, purpose=purpose, keep_failed=keep_failed)


@pytest.fixture
async def cloud(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                database_url: str):
    """A server on each of the three databases with the template db-and-web (shared): claiming an
    environment is a write."""

    async def start(hosts: dict[str, Any] | None = None, **settings: str) -> Any:
        srv = await pv.start_with_catalog(start_server, make_config, tmp_path / "catalog.conf", PROFILES,
                                          hosts if hosts is not None else TWO_HOSTS, database_url, **settings)
        add_template(srv.ctx, "db-and-web", DB_AND_WEB)
        return srv

    return start
