"""A database plus a running HostManager over test-driver (or real) hosts, without the web server.

The hypervisor layer's tests need hosts and rows, not pages; starting only
these keeps them independent of the rest of the server's components.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.app import open_database, prepare_database
from fogmachine.composition import build_context, release_context
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Guest, Host, User
from fogmachine.services.hostwatch import HostManager
from tests.support import testhosts

T = TypeVar("T")


@dataclass
class Fleet:
    ctx: Context
    hosts: HostManager

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.ctx.db.run(fn, *args)

    async def host_row(self, name: str) -> Host:
        return await self.db(lambda s: s.scalar(select(Host).where(Host.name == name)))

    async def guest_row(self, domain_name: str, host: str | None = None) -> Guest | None:
        def read(s: Session) -> Guest | None:
            query = select(Guest).where(Guest.domain_name == domain_name)
            if host is not None:
                query = query.join(Host, Guest.host_id == Host.id).where(Host.name == host)
            return s.scalar(query)

        return await self.db(read)

    async def add_user(self, username: str, *, admin: bool = False) -> int:
        def add(s: Session) -> int:
            user = User(username=username, is_admin=admin)
            s.add(user)
            s.flush()
            return user.id

        return await self.db(add)

    async def wait_for(self, read: Callable[[], Any], predicate: Callable[[Any], bool],
                       deadline: float = 10.0) -> Any:
        """Poll ``await read()`` until ``predicate`` holds; the last value either way.

        The deadline only keeps a broken build from hanging: how fast things
        happen is measured by the benchmarks, not asserted here.
        """
        end = time.monotonic() + deadline
        value = await read()
        while not predicate(value) and time.monotonic() < end:
            await asyncio.sleep(0.02)
            value = await read()
        return value


@pytest.fixture
async def fleet() -> AsyncIterator[Callable[[Config], Any]]:
    """``await fleet(config)`` -> Fleet with the schema, the hosts synced and watched; stopped afterwards."""
    started: list[Fleet] = []

    async def start(config: Config) -> Fleet:
        db = open_database(config)
        await asyncio.get_running_loop().run_in_executor(None, prepare_database, config, db)
        manager = HostManager(config, db)
        ctx = build_context(config, db, hosts=manager)
        await manager.start()
        running = Fleet(ctx, manager)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.hosts.stop()
        release_context(running.ctx)
        running.ctx.db.dispose()


def write_pool_host(directory: Path, name: str, pool_dir: Path, **kwargs: Any) -> str:
    """A test-driver host file with a 'default' directory pool (the driver keeps volumes in memory)."""
    uri = testhosts.write_host(directory, name, **kwargs)
    path = Path(uri[len("test://"):])
    node = ET.fromstring(path.read_text())
    pool = ET.SubElement(node, "pool", type="dir")
    ET.SubElement(pool, "name").text = "default"
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = str(pool_dir)
    path.write_text(ET.tostring(node, encoding="unicode"))
    return uri
