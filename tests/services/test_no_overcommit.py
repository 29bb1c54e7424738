"""No overcommit, counted: 200 concurrent checkouts against room for 100 on 10 test-driver hosts.

Exactly 100 placed and 100 refused with 409, no host holding more than it has,
and no record or domain for a refused checkout; on SQLite, MariaDB and
PostgreSQL, and with two Fogmachine processes sharing one MariaDB or
PostgreSQL database (the capacity claim is one transaction with row locks).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fogmachine.config import Config
from fogmachine.db.models import Guest, Host, Step
from fogmachine.errors import NoCapacity
from fogmachine.services import checkout as co
from tests.support import checkout_worker, databases
from tests.support import provisioning as pv

HOSTS = {f"n{i:02d}": {"cpus": 16, "memory_mb": 5120} for i in range(10)}  # 10 guests of 512 MiB each
PROFILES = {"unit": {"virt_type": "kvm", "ram_mb": 512, "vcpus": 1, "boot": "network", "network": "user"}}


def _settings(make_config: Callable[..., Config], tmp_path: Path, url: str) -> dict[str, str]:
    return checkout_worker.shared_settings(make_config, HOSTS, pv.write_catalog(tmp_path / "catalog.conf", PROFILES),
                                           url)


def _check_database(ctx: Any, placed: dict[str, str]) -> None:
    rows = ctx.db.run_sync(lambda s: [(g.name, g.host_id, g.ram_mb, g.step) for g in
                                      s.scalars(select(Guest).where(Guest.managed.is_(True)))])
    assert sorted(r[0] for r in rows) == sorted(placed)  # no record for a refused checkout
    assert all(step == Step.READY for *_, step in rows), Counter(step for *_, step in rows)
    hosts = ctx.db.run_sync(lambda s: {h.id: (h.name, h.total_memory_mb) for h in s.scalars(select(Host))})
    per_host = Counter()
    for _name, host_id, ram, _step in rows:
        per_host[host_id] += ram
    for host_id, used in per_host.items():
        name, total = hosts[host_id]
        assert used <= total, f"host {name} overcommitted: {used} of {total} MiB"
    assert sorted(Counter(hosts[h][0] for _n, h, _r, _s in rows).values()) == [10] * 10
    # The database itself agrees (one query, independent of the code above).
    count = ctx.db.run_sync(lambda s: s.scalar(select(func.count()).select_from(Guest)
                                               .where(Guest.managed.is_(True))))
    assert count == 100


async def _burst(ctx: Any, actor: Any, names: list[str]) -> tuple[dict[str, str], int, list[str]]:
    results = await asyncio.gather(*(co.checkout(ctx, actor, co.CheckoutRequest(n, "unit", 1, "count test"))
                                     for n in names), return_exceptions=True)
    placed = {r.name: r.host.name for r in results if not isinstance(r, BaseException)}
    refused = sum(isinstance(r, NoCapacity) for r in results)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)
              and not isinstance(r, NoCapacity)]
    return placed, refused, errors


async def test_200_concurrent_checkouts_for_100_places(make_config: Callable[..., Config],
                                                        start_server: Callable[..., Any], tmp_path: Path,
                                                        database_url: str) -> None:
    settings = _settings(make_config, tmp_path, database_url)
    srv = await start_server(make_config(hosts=HOSTS, **{k: v for k, v in settings.items()
                                                          if k not in ("data_dir", "virthosts")}))
    alice = pv.add_user(srv.ctx, "alice")
    placed, refused, errors = await _burst(srv.ctx, alice, [f"g{i:03d}" for i in range(200)])
    await pv.settle(srv.ctx)
    assert errors == []
    assert (len(placed), refused) == (100, 100)
    _check_database(srv.ctx, placed)
    domains = set()
    for host in HOSTS:
        domains |= await pv.Domains(srv.ctx).names(host)
    assert domains == set(placed)  # and no domain for a refused one


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
async def test_two_processes_sharing_one_database(make_config: Callable[..., Config],
                                                  start_server: Callable[..., Any], tmp_path: Path,
                                                  backend: str) -> None:
    with databases.fresh_database(backend, tmp_dir=str(tmp_path)) as url:
        settings = _settings(make_config, tmp_path, url)
        srv = await start_server(make_config(hosts=HOSTS, **{k: v for k, v in settings.items()
                                                              if k not in ("data_dir", "virthosts")}))
        alice = pv.add_user(srv.ctx, "alice")
        spec = {"settings": {**settings, "data_dir": str(tmp_path / "data-b")}, "user": "alice", "target": "unit",
                "names": [f"b{i:03d}" for i in range(100)]}
        (placed, refused, errors), theirs = await checkout_worker.race(
            spec, lambda: _burst(srv.ctx, alice, [f"a{i:03d}" for i in range(100)]))
        await pv.settle(srv.ctx)
        assert errors == [] and theirs["errors"] == []
        both = {**placed, **theirs["placed"]}
        assert (len(both), refused + theirs["refused"]) == (100, 100)
        # Both really competed (neither took everything before the other started).
        print(f"split: this process {len(placed)}, the other {len(theirs['placed'])}")
        assert placed and theirs["placed"]
        _check_database(srv.ctx, both)
        domains = set()
        for host in HOSTS:
            domains |= await pv.Domains(srv.ctx).names(host)
        for names in theirs["domains"].values():
            domains |= set(names)
        assert domains == set(both)
