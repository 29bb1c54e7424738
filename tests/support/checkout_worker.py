"""A second Fogmachine process for the no-overcommit test: a server plus a burst of checkouts.

    python -m tests.support.checkout_worker '{"settings": {...}, "user": "alice", "names": [...]}'

It starts the real server (same database, same hosts as the test's own), prints
``ready``, waits for a line on stdin (so both processes fire together), checks
the names out concurrently through the checkout service, waits for the
provisioning, and prints one JSON line: which were placed (and where), how many
were refused with 409, any other error, and the domains its hosts now hold.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from sqlalchemy import select

from fogmachine import config as configmod
from fogmachine.app import Server
from fogmachine.db.models import User
from fogmachine.errors import NoCapacity
from fogmachine.services import checkout as co
from fogmachine.services.actor import Actor


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

        async def one(name: str) -> Any:
            return await co.checkout(ctx, actor, co.CheckoutRequest(name, spec["target"], 1, "count test"))

        results = await asyncio.gather(*(one(n) for n in spec["names"]), return_exceptions=True)
        await ctx.provisioner.wait()
        placed = {r.name: r.host.name for r in results if not isinstance(r, BaseException)}
        refused = sum(isinstance(r, NoCapacity) for r in results)
        errors = [f"{type(r).__name__}: {r}" for r in results
                  if isinstance(r, BaseException) and not isinstance(r, NoCapacity)]
        domains = {h.name: sorted(d.name for d in await h.list_domains()) for h in ctx.hosts.all()}
        return {"placed": placed, "refused": refused, "errors": errors, "domains": domains}
    finally:
        await server.stop()


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
