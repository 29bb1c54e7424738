"""The provisioning engine: a claimed guest's steps in the background, and their undo.

Each step is written to ``guest.step`` (overlapped with the host call it
announces):

    registering  the guest's record with the catalog source, when it keeps one (Cobbler:
                 the system, with the phone-home server and token in autoinstall_meta)
    defining     a volume where the host has a storage pool (an overlay of the profile's
                 disk image, see ``diskimages``), then the domain
    booting      starting it
    installing   waiting for the guest's phone-home (``/guest/<mac>/set``)
    ready        (or ``failed`` with the reason in ``step_reason``)

Nothing is left half-made: when a step fails, what the earlier steps made is
torn down by ``teardown.release_each``, as for a deleted guest (domain
destroyed and undefined, volume deleted, Cobbler system removed); the guest is
marked failed, with whatever could not be removed still on its row, and its
capacity is released (placement does not count failed guests). If the guest
row disappears while the steps run (the owner deleted it), the steps tear
down what they made and stop.

``Provisioner`` holds the running steps, one task per guest, so that the
server can wait for them (or undo them) when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine import placement
from fogmachine.catalog import CatalogEntry
from fogmachine.catalog.source import Registration
from fogmachine.context import Context
from fogmachine.db.models import Guest, GuestState, Step
from fogmachine.errors import FogmachineError
from fogmachine.services import audit, diskimages, teardown
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.bootline import kernel_cmdline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    guest_id: int
    name: str
    host: str
    host_type: str
    mac: str
    uuid: str
    entry: CatalogEntry
    token: str
    record: str  # the guest's record with the catalog source ("" when it keeps none); the row's cobbler_system
    # A guest of an environment: its tier's variables (to its installer), and the environment to move on
    # (services/environments/engine.py) once this guest is ready or has failed.
    variables: Mapping[str, str] = field(default_factory=dict)
    environment_id: int | None = None


class _Gone(Exception):
    """The guest row was deleted (or retired) while it was being provisioned."""


def _own_row(session: Session, job: Job) -> Guest | None:
    """The job's guest row, or None when it is gone. The UUID check matters: SQLite reuses the id of a
    deleted row, and the hosts' resync may have made a mirror row for our domain under that id."""
    guest = session.scalar(select(Guest).where(Guest.id == job.guest_id).with_for_update())
    if guest is None or not guest.managed or guest.uuid != job.uuid:
        return None
    return guest


def _advance(session: Session, job: Job, step: Step | None, **fields: Any) -> None:
    guest = _own_row(session, job)
    if guest is None or guest.step in (Step.FAILED, Step.RETIRED):
        raise _Gone()
    for key, value in fields.items():
        setattr(guest, key, value)
    if step is not None and guest.step == Step.READY:
        return  # the guest phoned home before this step was written: it stays ready
    if step is not None:
        guest.step = step
        guest.step_reason = ""


def _fail(session: Session, job: Job, reason: str, left: teardown.Holdings) -> bool:
    guest = _own_row(session, job)
    if guest is None:
        return False
    guest.step = Step.FAILED
    guest.step_reason = reason
    guest.state = GuestState.UNDEFINED
    guest.phonehome_token_hash = ""
    guest.worker = ""
    # What could not be cleaned up stays on the row, so deleting the guest tries again (and
    # reconciliation removes a domain left behind: a failed guest's domain is an orphan).
    guest.cobbler_system = left.cobbler_system
    guest.volume_path = left.volume_path
    guest.domain_name = left.domain_name  # None: no domain of it on its host (never made, or removed)
    audit.record(session, Actor.system("provisioning"), "guest.provision", object_type="guest",
                 object_id=guest.id, object_name=guest.name, result="failed", message=reason)
    return True


@dataclass
class _Made:
    """What the steps have made so far: on failure, ``teardown.release_each`` removes it, the same
    teardown that deleting, retiring and reconciling use."""

    job: Job
    cobbler_system: str = ""
    volume_path: str = ""
    domain: bool = False

    def holdings(self) -> teardown.Holdings:
        return teardown.Holdings(self.job.name, self.job.host, self.job.name if self.domain else None,
                                 self.volume_path, self.cobbler_system)

    async def tear_down(self, ctx: Context) -> tuple[teardown.Holdings, str]:
        """What is left, and a sentence on what could not be removed ("" when nothing)."""
        try:
            left, failures = await teardown.release_each(ctx, self.holdings())
        except Exception as exc:  # a bug must not keep the guest from being marked failed
            log.exception("tearing down guest %s failed", self.job.name)
            return self.holdings(), f"could not tear down: internal error {type(exc).__name__}"
        return left, f"could not {'; '.join(map(str, failures))}" if failures else ""


async def _overlapped(ctx: Context, job: Job, step: Step, action: Awaitable[Any],
                      made: Callable[[], None] = lambda: None) -> Any:
    """Run ``action`` while the row is moved to ``step``: the row says what is happening, and the database
    write costs no wait of its own. ``made`` records what the action made before the write's answer is
    read, so a guest deleted meanwhile (``_Gone``) still gets it torn down."""
    write = asyncio.ensure_future(ctx.db.run(_advance, job, step, lock=True))
    try:
        result = await action
    except BaseException:
        await asyncio.gather(write, return_exceptions=True)
        raise
    made()
    await write
    return result


async def provision(ctx: Context, job: Job) -> None:
    made = _Made(job)
    entry, config = job.entry, ctx.config
    try:
        if job.record:
            await _register(ctx, job, made)
        conn = ctx.need_hosts().get(job.host)
        disk_path = await diskimages.make_disk(conn, job.name, entry)
        if disk_path:
            made.volume_path = disk_path
            await ctx.db.run(_advance, job, None, volume_path=disk_path, lock=True)
        from fogmachine.virt.domainxml import DomainSpec, build_domain_xml, new_vnc_password

        spec = DomainSpec(
            name=job.name, uuid=job.uuid, memory_mb=entry.ram_mb, vcpus=entry.vcpus,
            domain_type=placement.domain_type(job.host_type, entry.virt_type), mac=job.mac, network=entry.network,
            disk_path=disk_path, boot=entry.boot,
            kernel=entry.kernel or None, initrd=entry.initrd or None,
            cmdline=kernel_cmdline(config, entry, job.name, job.mac, job.token, job.variables)
            if entry.boot == "kernel" else "",
            serial_log=f"{config.console_log_dir.rstrip('/')}/{job.name}.log" if config.console_log_dir else None,
            vnc_listen=config.vnc_listen, vnc_password=new_vnc_password(), guest_id=job.guest_id,
        )
        define = conn.define(build_domain_xml(spec))

        def defined() -> None:
            made.domain = True

        if job.record:  # the row was made at "registering"
            await _overlapped(ctx, job, Step.DEFINING, define, defined)
        else:
            await define  # the row was made at "defining"
            defined()
        # Started as a user's start is (``act``): a host read that began before the start ended (the define's
        # resync, still on its way) cannot then write "shutoff" over the "running" written just below.
        await _overlapped(ctx, job, Step.BOOTING, conn.act(job.name, "start", label=job.name))
        final = Step.INSTALLING if entry.phonehome else Step.READY
        await ctx.db.run(_advance, job, final, state=GuestState.RUNNING, worker="", lock=True)
        log.info("guest %s started on %s; %s", job.name, job.host,
                 "waiting for its phone-home" if entry.phonehome else "ready")
        if not entry.phonehome:
            _environment_moves(ctx, job)
    except _Gone:
        _, trouble = await made.tear_down(ctx)
        log.info("guest %s was deleted while being provisioned; torn down%s", job.name,
                 f", but {trouble}" if trouble else "")
    except asyncio.CancelledError:
        # The server is stopping: tear down (shielded from the cancellation), mark failed, then let it end.
        await asyncio.shield(_give_up(ctx, made, "Fogmachine stopped while the guest was being provisioned"))
        raise
    except FogmachineError as exc:
        await _give_up(ctx, made, exc.message)
    except Exception as exc:
        log.exception("provisioning guest %s failed", job.name)
        await _give_up(ctx, made, f"internal error: {type(exc).__name__}; the server log has the details")


async def _register(ctx: Context, job: Job, made: _Made) -> None:
    await ctx.need_catalog().register(Registration(job.name, job.mac, job.token, job.entry, job.variables))
    made.cobbler_system = job.record


def _environment_moves(ctx: Context, job: Job) -> None:
    """A guest of an environment is ready or failed: the environment may move on (its next tier, or its end)."""
    if job.environment_id is not None:
        from fogmachine.services.environments import engine  # environments build on checkout, not the reverse

        engine.poke(ctx, job.environment_id)


async def _give_up(ctx: Context, made: _Made, reason: str) -> None:
    job = made.job
    left, trouble = await made.tear_down(ctx)
    if trouble:
        reason = f"{reason} (cleanup incomplete: {trouble})"
    try:
        marked = await ctx.db.run(_fail, job, reason, left, lock=True)
    except FogmachineError as exc:
        log.error("guest %s failed (%s) and could not be marked failed: %s", job.name, reason, exc.message)
        return
    except Exception:  # a bug: said in the log, not lost in the task (nobody awaits its exception)
        log.exception("guest %s failed (%s) and could not be marked failed", job.name, reason)
        return
    if marked:
        log.warning("guest %s failed: %s", job.name, reason)
        _environment_moves(ctx, job)
    else:
        log.info("guest %s failed (%s) after its row went; torn down", job.name, reason)


# -- the running provisioning tasks -----------------------------------------------------------------

class Provisioner:
    """The background provisioning tasks of this process; a Component, so the server waits for them.

    ``tasks`` are the checkouts' steps, one per guest being provisioned (reconciliation leaves those
    guests alone); ``follow_ups`` is work after provisioning, such as switching an installed guest to boot
    from its disk, which the server also lets finish when it stops.
    """

    def __init__(self, stop_timeout: float = 30.0) -> None:
        self.stop_timeout = stop_timeout
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.follow_ups: set[asyncio.Task[Any]] = set()

    def spawn(self, guest_id: int, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks[guest_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(guest_id, None))
        return task

    def follow_up(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.follow_ups.add(task)
        task.add_done_callback(self.follow_ups.discard)
        return task

    async def wait(self, guest_id: int | None = None) -> None:
        """Wait until the given guest's provisioning, or every provisioning and follow-up, has finished."""
        tasks = [self.tasks[guest_id]] if guest_id in self.tasks else [] if guest_id is not None \
            else [*self.tasks.values(), *self.follow_ups]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        pending = [*self.tasks.values(), *self.follow_ups]
        if not pending:
            return
        _done, still = await asyncio.wait(pending, timeout=self.stop_timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
