"""The registry of periodic tasks: started with the server, stopped on shutdown.

Each task is a coroutine run by a Tornado ``PeriodicCallback`` with jitter (so
several processes started together do not hit the database in lockstep). An
exclusive task runs only while this process holds its lease in the database,
so when several Fogmachine processes share MariaDB or PostgreSQL each task
runs in one of them at a time; a process that dies stops renewing its
heartbeat and loses its task leases when the heartbeat expires (15 s), not
when each lease would (three intervals).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tornado.ioloop

from fogmachine.context import Context
from fogmachine.services import leases

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 15.0
STOP_WAIT = 30.0  # seconds a stop waits for the tasks under way before cancelling them
# How often the checkouts of a process whose heartbeat stopped are looked for (reconcile.fix_interrupted).
# With the heartbeat's 15 s, a crashed process's checkouts are failed and cleaned 15 to 35 s after the crash.
INTERRUPTED_INTERVAL = HEARTBEAT_TTL


@dataclass
class PeriodicTask:
    name: str
    interval: float
    run: Callable[[], Awaitable[object]]
    exclusive: bool = True
    jitter: float = 0.1
    runs: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)

    @property
    def lease_ttl(self) -> float:
        # Long enough to survive a late run. A dead owner is replaced sooner: its lease ends with
        # its heartbeat (leases.try_acquire), HEARTBEAT_TTL after it stopped.
        return max(3 * self.interval, HEARTBEAT_TTL)


class TaskRegistry:
    """Holds the tasks; a Component of the server (start/stop)."""

    def __init__(self, ctx: Context, process_id: str | None = None) -> None:
        self.ctx = ctx
        self.process_id = process_id or ctx.process_id
        self.tasks: dict[str, PeriodicTask] = {}
        self._callbacks: list[tornado.ioloop.PeriodicCallback] = []
        self.on_stop: list[Callable[[], None]] = []
        # Tasks also run once soon after start, once ``settle`` (e.g. first contact with the hosts) is done.
        self.at_start: list[str] = []
        self.settle: Callable[[], Awaitable[object]] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()  # ticks under way (a stop waits for them)
        self.add(PeriodicTask(f"{leases.PROCESS_PREFIX}{self.process_id}", HEARTBEAT_INTERVAL, self._heartbeat,
                              exclusive=False, jitter=0.0))

    def add(self, task: PeriodicTask) -> None:
        if task.name in self.tasks:
            raise ValueError(f"periodic task {task.name} is registered twice")
        self.tasks[task.name] = task

    async def _heartbeat(self) -> None:
        name = f"{leases.PROCESS_PREFIX}{self.process_id}"
        await self.ctx.db.run_apart(leases.try_acquire, name, self.process_id, HEARTBEAT_TTL)

    async def run_once(self, name: str) -> bool:
        """Run one task now (if its lease allows); True when it ran. Used by the loop and tests."""
        task = self.tasks[name]
        if task.exclusive:
            held = await self.ctx.db.run(leases.try_acquire, f"task:{name}", self.process_id, task.lease_ttl)
            if not held:
                return False
        try:
            await task.run()
            task.runs += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            task.failures += 1
            log.exception("periodic task %s failed", name)
        return True

    def _tick(self, name: str) -> Callable[[], Awaitable[bool]]:
        async def tick() -> bool:
            """One turn of the task; True when it ran (False: another process holds its lease, or the
            database did not answer)."""
            current = asyncio.current_task()
            if current is not None:
                self._running.add(current)
            try:
                return await self.run_once(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # the lease query itself failed (database down): try next time
                log.warning("periodic task %s skipped: %s", name, "database unavailable", exc_info=False)
                return False
            finally:
                self._running.discard(current)

        return tick

    async def start(self) -> None:
        await self._heartbeat()
        for name, task in self.tasks.items():
            callback = tornado.ioloop.PeriodicCallback(self._tick(name), task.interval * 1000, jitter=task.jitter)
            callback.start()
            self._callbacks.append(callback)
        if self.at_start:
            self._start_task = asyncio.ensure_future(self._run_at_start())

    async def wait_started(self) -> None:
        """Wait until the tasks run at start have run (tests and tools use this)."""
        if self._start_task is not None:
            await asyncio.gather(self._start_task, return_exceptions=True)

    async def _run_at_start(self) -> None:
        """Run each start-up task once, after ``settle``. A task that could not run (its lease held by another
        process) is tried again every HEARTBEAT_INTERVAL until a dead holder's heartbeat has surely expired:
        restarted right after a crash, this process finds the dead one's leases still counting for up to
        HEARTBEAT_TTL, and without the retries the task's first run here would wait a whole interval (an
        hour with environment_interval = 3600: an environment killed between its tiers sat there; found by
        tests/system/test_env_faults.py). A live holder keeps its lease, and runs the task itself."""
        if self.settle is not None:
            await self.settle()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + HEARTBEAT_TTL + HEARTBEAT_INTERVAL
        pending = list(self.at_start)
        while True:
            pending = [name for name in pending if not await self._tick(name)()]
            if not pending or loop.time() > give_up:
                return
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def stop(self) -> None:
        for callback in self._callbacks:
            callback.stop()
        self._callbacks.clear()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            await asyncio.gather(self._start_task, return_exceptions=True)
        # A tick under way may be taking a lease right now, or running an exclusive task: released before it
        # ends, the lease would be taken again by it (found under load: the other process then could not
        # take the task for 15 s) or by another process while this one still runs the task.
        if self._running:
            _done, late = await asyncio.wait(set(self._running), timeout=STOP_WAIT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for hook in self.on_stop:
            hook()
        try:
            await self.ctx.db.run(self._release_all)
        except Exception:
            log.warning("could not release task leases at shutdown; they expire by themselves")

    def _release_all(self, session) -> None:  # type: ignore[no-untyped-def]
        """Release the heartbeat and the exclusive tasks' leases (the other tasks hold none)."""
        leases.release(session, f"{leases.PROCESS_PREFIX}{self.process_id}", self.process_id)
        for name, task in self.tasks.items():
            if task.exclusive:
                leases.release(session, f"task:{name}", self.process_id)


def build_registry(ctx: Context) -> TaskRegistry:
    """The server's periodic tasks: expiry, notices, reconciliation, history and login-session purges."""
    from fogmachine.notify import Mailer
    from fogmachine.services import diskboot, expiry, notices, reconcile, sessions
    from fogmachine.services.environments import engine as environments

    registry = TaskRegistry(ctx)
    mailer = Mailer(ctx.config)
    registry.on_stop.append(mailer.close)
    config = ctx.config
    registry.add(PeriodicTask("expiry", config.expiry_interval, lambda: expiry.retire_expired(ctx)))
    registry.add(PeriodicTask("notices", config.notice_interval, lambda: notices.run(ctx.db, config, mailer)))
    registry.add(PeriodicTask("purge", 3600, lambda: expiry.purge_history(ctx)))
    lifetimes = sessions.Lifetimes.of(config)
    registry.add(PeriodicTask("sessions", 3600, lambda: ctx.db.run(sessions.purge, lifetimes)))
    registry.add(PeriodicTask("reconcile", config.reconcile_interval, lambda: reconcile.reconcile(ctx)))
    registry.add(PeriodicTask("interrupted", INTERRUPTED_INTERVAL, lambda: reconcile.fix_interrupted(ctx)))
    registry.at_start.append("reconcile")
    # Installed guests whose switch to disk boot (or token removal in Cobbler) failed: tried again until
    # done, also at start (a restart must not forget them) and as soon as their host answers again.
    registry.add(PeriodicTask("diskboot", config.diskboot_retry_interval, lambda: diskboot.retry_all(ctx)))
    registry.at_start.append("diskboot")
    # Environments: a tier whose guests got ready in another process, or before a restart, starts the next;
    # a failed one is torn down; one whose guests are all gone is retired. Also at start.
    registry.add(PeriodicTask("environments", config.environment_interval, lambda: environments.sweep(ctx)))
    registry.at_start.append("environments")
    hosts = ctx.hosts
    if hosts is not None:
        hosts.on_up.append(lambda host_name: diskboot.schedule_host(ctx, host_name))
        registry.settle = lambda: hosts.wait_settled(config.libvirt_connect_timeout * 2)
    return registry
