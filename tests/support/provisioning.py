"""Helpers for checkout tests: a running server with hosts, a catalog file and a user to act as."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import AuditEvent, Guest, Host, Step, User
from fogmachine.services.actor import Actor

FINAL_STEPS = (Step.READY, Step.FAILED, Step.INSTALLING)


def write_catalog(path: Path, profiles: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, values in profiles.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


async def start_with_catalog(start_server: Callable[..., Any], make_config: Callable[..., Any], catalog: Path,
                             profiles: dict[str, dict[str, Any]], hosts: dict[str, Any], database_url: str,
                             **settings: str) -> Any:
    """A running server over ``hosts`` (test driver) with a local catalog of ``profiles``, and alice, a user
    to check out as (``srv.alice``)."""
    write_catalog(catalog, profiles)
    settings.setdefault("database_connection", database_url)
    srv = await start_server(make_config(hosts=hosts, local_catalog=str(catalog), **settings))
    srv.alice = add_user(srv.ctx, "alice")
    return srv


def add_user(ctx: Context, username: str, *, admin: bool = False, email: str = "") -> Actor:
    def add(session: Session) -> int:
        user = User(username=username, is_admin=admin, email=email or f"{username}@example.org")
        session.add(user)
        session.flush()
        return user.id

    return Actor(ctx.db.run_sync(add), username, is_admin=admin)


def guest(ctx: Context, guest_id: int) -> Guest | None:
    return ctx.db.run_sync(lambda s: s.get(Guest, guest_id))


def guests(ctx: Context) -> list[Guest]:
    return ctx.db.run_sync(lambda s: list(s.scalars(select(Guest).where(Guest.managed.is_(True))
                                                     .order_by(Guest.id))))


def count_guests(ctx: Context) -> int:
    return ctx.db.run_sync(lambda s: s.scalar(select(func.count()).select_from(Guest)
                                              .where(Guest.managed.is_(True))))


def host_row(ctx: Context, name: str) -> Host:
    return ctx.db.run_sync(lambda s: s.scalar(select(Host).where(Host.name == name)))


def audit_actions(ctx: Context, name: str) -> list[tuple[str, str]]:
    return ctx.db.run_sync(lambda s: [(e.action, e.result) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.object_name == name).order_by(AuditEvent.id))])


async def settle(ctx: Context) -> None:
    """Wait until this process's background provisioning steps are done."""
    await ctx.provisioner.wait()


async def wait_for(read: Callable[[], Any], predicate: Callable[[Any], bool], deadline: float = 60.0) -> Any:
    """Poll ``read()`` until ``predicate`` holds (the deadline only stops a broken build from hanging)."""
    end = time.monotonic() + deadline
    value = read()
    while not predicate(value) and time.monotonic() < end:
        await asyncio.sleep(0.1)
        value = read()
    return value


@dataclass
class Domains:
    """What a host's libvirt says, read through Fogmachine's own connection."""

    ctx: Context

    async def names(self, host: str) -> set[str]:
        return {d.name for d in await self.ctx.hosts.get(host).list_domains()}

    async def get(self, host: str, name: str) -> Any:
        for info in await self.ctx.hosts.get(host).list_domains():
            if info.name == name:
                return info
        return None
