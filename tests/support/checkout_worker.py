"""A second Fogmachine process for the no-overcommit tests: a server plus a burst of checkouts.

    python -m tests.support.checkout_worker '{"settings": {...}, "user": "alice", "names": [...], ...}'

It starts the real server (same database, same hosts as the test's own), prints
``ready``, waits for a line on stdin (so both processes fire together), checks
the names out concurrently through the checkout service (guests of ``target``,
or environments of ``template``), waits for the provisioning, and prints one
JSON line: which were placed (a guest's host, or an environment's guests and
their hosts), how many were refused with 409, any other error, and the
domains its hosts now hold.

``race`` runs it from a test; ``shared_settings`` are the settings both
processes start from.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from fogmachine import config as configmod
from fogmachine.app import Server
from fogmachine.context import Context
from fogmachine.db.models import Environment, User
from fogmachine.errors import NoCapacity
from fogmachine.services import checkout as co
from fogmachine.services.actor import Actor
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment

ROOT = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")


def shared_settings(make_config: Callable[..., configmod.Config], hosts: dict[str, Any], catalog: Path,
                    url: str) -> dict[str, str]:
    """Raw settings for a server over test-driver ``hosts`` with the local ``catalog`` on database ``url``:
    the test's own server is made from them, and the worker's (with a data dir of its own)."""
    config = make_config(hosts=hosts, local_catalog=str(catalog), database_connection=url, db_threads="8")
    return {"data_dir": config.data_dir, "virthosts": config.virthosts, "listen_port": "0",
            "local_catalog": str(catalog), "database_connection": url, "db_threads": "8"}


async def race(spec: dict[str, Any], mine: Callable[[], Awaitable[T]], timeout: float = 300) -> tuple[T, Any]:
    """Start the worker with ``spec``, then fire its burst and ``mine()`` (this process's) together.
    Returns what ``mine()`` returned and the worker's JSON answer."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.checkout_worker", json.dumps(spec), cwd=str(ROOT),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert worker.stdout is not None and worker.stdin is not None
        line = await asyncio.wait_for(worker.stdout.readline(), 120)
        assert line.strip() == b"ready", line + (await worker.stderr.read() if worker.stderr else b"")
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
        here = asyncio.ensure_future(mine())
        out, err = await asyncio.wait_for(worker.communicate(), timeout)
        result = await here
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, err.decode()[-3000:]
    return result, json.loads(out.decode().strip().splitlines()[-1])


def _checkout(ctx: Context, actor: Actor, spec: dict[str, Any]) -> Callable[[str], Awaitable[Any]]:
    """One checkout of the burst, by name, and what its answer reports of it."""
    if spec.get("template"):
        async def environment(name: str) -> dict[str, str]:
            made = await checkout_environment(ctx, actor, EnvironmentRequest(spec["template"], name, 1, "count test"))
            return {g.name: g.host.name for g in made.guests if g.host is not None}

        return environment

    async def guest(name: str) -> str:
        made = await co.checkout(ctx, actor, co.CheckoutRequest(name, spec["target"], 1, "count test"))
        assert made.host is not None
        return made.host.name

    return guest


async def _settled(ctx: Context, environments: list[str], deadline: float = 120) -> None:
    """This process's provisioning done, and each environment it claimed past its last tier's start (its
    tiers start here, one after the other, as each gets ready)."""
    end = time.monotonic() + deadline
    while True:
        await ctx.environments.wait()
        await ctx.provisioner.wait()
        steps = ctx.db.run_sync(lambda s: list(s.scalars(select(Environment.step).where(
            Environment.name.in_(environments)))))
        if all(step != "provisioning" for step in steps) or time.monotonic() > end:
            return
        await asyncio.sleep(0.1)


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    config = configmod.load(None, environ={}, **spec["settings"])
    server = Server(config)
    await server.start()
    ctx = server.ctx
    assert ctx is not None
    try:
        user_id = ctx.db.run_sync(lambda s: s.scalar(select(User.id).where(User.username == spec["user"])))
        actor = Actor(user_id, spec["user"])
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        one = _checkout(ctx, actor, spec)
        results = await asyncio.gather(*(one(n) for n in spec["names"]), return_exceptions=True)
        await _settled(ctx, [n for n, r in zip(spec["names"], results, strict=True)
                             if not isinstance(r, BaseException)] if spec.get("template") else [])
        placed = {n: r for n, r in zip(spec["names"], results, strict=True) if not isinstance(r, BaseException)}
        refused = sum(isinstance(r, NoCapacity) for r in results)
        errors = [f"{type(r).__name__}: {r}" for r in results
                  if isinstance(r, BaseException) and not isinstance(r, NoCapacity)]
        assert ctx.hosts is not None
        domains = {h.name: sorted(d.name for d in await h.list_domains()) for h in ctx.hosts.all()}
        return {"placed": placed, "refused": refused, "errors": errors, "domains": domains}
    finally:
        await server.stop()


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
