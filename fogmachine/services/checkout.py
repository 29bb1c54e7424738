"""Checking a guest out: the one way the pages, the API and scripts make a guest.

``checkout`` does what must be decided before the caller gets an answer:
validate the request, ask the catalog's source (fresh) for the profile or
image, place the guest and claim its capacity in the SAME transaction that
inserts its row. Then it returns the row at once (the API answers 202) and the
rest runs in the background, each step written to ``guest.step``:

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

No Cobbler ``sync``: Cobbler 3.3's ``save_system`` already writes the one
system's boot files (and DHCP entry, when Cobbler manages DHCP). Direct kernel
boot needs nothing from sync at all.

The phone-home token is random, shown to the guest only (through Cobbler's
autoinstall_meta or the kernel command line) and stored as a SHA-256 hash.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
import uuid as uuidmod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fogmachine import placement
from fogmachine.catalog import CatalogEntry
from fogmachine.catalog.source import CatalogSource, Registration
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.db.models import Guest, GuestState, Host, Step, TargetKind, utcnow
from fogmachine.errors import FogmachineError, NoCapacity, PermissionDenied, ValidationError
from fogmachine.services import audit, diskimages, leases, teardown
from fogmachine.services.actor import Actor
from fogmachine.services.reservations import validate_days
from fogmachine.services.tokens import hash_token

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")  # always fullmatch: "$" lets a final "\n" in
MAX_PURPOSE = 2000
MAC_PREFIX = "52:54:00"
EXTRAS_KEY = "provisioning"
# The kernel argument that carries the autoinstall URL, per Cobbler distro breed (as koan does it).
AUTOINSTALL_ARG = {"redhat": "ks", "suse": "autoyast", "debian": "url", "ubuntu": "url"}


@dataclass(frozen=True)
class CheckoutRequest:
    name: str
    target: str
    days: Any
    purpose: str


# -- validation ------------------------------------------------------------------------------------

def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            "name must be a DNS label: 1 to 63 lower-case letters, digits or '-', starting with a letter "
            "and not ending with '-'", field="name")
    return name


def validate_purpose(purpose: Any) -> str:
    if not isinstance(purpose, str) or not purpose.strip():
        raise ValidationError("purpose is required: say what the guest is for", field="purpose")
    text: str = purpose.strip()
    if len(text) > MAX_PURPOSE:
        raise ValidationError(f"purpose must be at most {MAX_PURPOSE} characters", field="purpose")
    return text


def validate(req: CheckoutRequest, config: Config) -> tuple[str, int, str]:
    """(name, days, purpose), or ValidationError naming the first bad field."""
    name = validate_name(req.name)
    days = validate_days(req.days, config.max_days)
    purpose = validate_purpose(req.purpose)
    return name, days, purpose


def new_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def autoinstall_base(config: Config) -> str:
    """Cobbler's svc URL as guests see it: ``cobbler_autoinstall_url``, or derived from ``cobbler_url``."""
    if config.cobbler_autoinstall_url:
        return config.cobbler_autoinstall_url.rstrip("/")
    from urllib.parse import urlsplit

    parts = urlsplit(config.cobbler_url)
    return f"{parts.scheme}://{parts.hostname}/cblr/svc/op"


def autoinstall_url(config: Config, system: str) -> str:
    return f"{autoinstall_base(config)}/autoinstall/system/{system}"


def phonehome_url(config: Config, mac: str, token: str, name: str) -> str:
    return f"{config.server_url}/guest/{mac}/set?" + urlencode({"token": token, "hostname": name})


def kernel_cmdline(config: Config, entry: CatalogEntry, name: str, mac: str, token: str) -> str:
    """The kernel command line: the profile's own options plus, with Cobbler, where the autoinstall file is."""
    if entry.kind == TargetKind.LOCAL:
        return entry.cmdline.format_map({"name": name, "mac": mac, "server": config.server_url,
                                         "phonehome_url": phonehome_url(config, mac, token, name)})
    url = autoinstall_url(config, name)
    breed = entry.breed.lower()
    if breed in ("debian", "ubuntu"):
        extra = f"auto-install/enable=true priority=critical url={url} hostname={name}"
    else:
        extra = f"{AUTOINSTALL_ARG.get(breed, 'autoinstall')}={url}"
    return f"{entry.cmdline} {extra}".strip()


# -- the claim: one transaction -------------------------------------------------------------------

def _name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(Guest.id).where(Guest.live_name == name)) is not None


def _unique_mac(session: Session) -> str:
    for _ in range(20):
        mac = new_mac()
        if session.scalar(select(Guest.id).where(Guest.mac == mac)) is None:
            return mac
    raise RuntimeError("could not find a free MAC address in 20 tries")


def _claim(session: Session, actor: Actor, config: Config, name: str, entry: CatalogEntry, days: int,
           purpose: str, token_hash: str, worker: str, record: str, unfit: Mapping[str, str]) -> Guest:
    demand = placement.Demand(entry.ram_mb, entry.vcpus, entry.virt_type)
    hosts = placement.lock_hosts(session)  # from here on, checkouts take turns
    if _name_taken(session, name):
        raise ValidationError(f"a guest named {name} already exists", field="name")
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    # A host that already has a domain of this name (someone else's) cannot take ours.
    clashing = {h for h in session.scalars(select(Guest.host_id).where(Guest.domain_name == name)) if h is not None}
    candidates = placement.rooms(hosts, usage, demand, config.cpu_overcommit, excluded=clashing, unfit=unfit)
    chosen = placement.choose(candidates, config.placement_policy)
    if chosen is None:
        raise NoCapacity(placement.no_room_message(demand, candidates), details={
            "requested": {"ram_mb": demand.ram_mb, "vcpus": demand.vcpus, "virt_type": demand.virt_type},
            "most_free": placement.most_free(candidates, demand),
            "hosts": {r.name: r.reason for r in candidates}})
    host = next(h for h in hosts if h.id == chosen.host_id)
    guest = Guest(
        name=name, live_name=name, domain_name=name, managed=True, owner_id=actor.user_id, host_id=host.id,
        target=entry.name, target_kind=entry.kind, ram_mb=entry.ram_mb, vcpus=entry.vcpus, disk_gb=entry.disk_gb,
        purpose=purpose, expires_at=utcnow() + dt.timedelta(days=days), state=GuestState.UNDEFINED,
        step=Step.REGISTERING if record else Step.DEFINING, uuid=str(uuidmod.uuid4()),
        mac=_unique_mac(session), phonehome_token_hash=token_hash, worker=worker,
        # Recorded before the record exists: reconciliation removes Fogmachine-made records no guest names.
        cobbler_system=record,
        # The record will carry the phone-home token until the install is finished (diskboot).
        cobbler_token_pending=bool(record),
    )
    session.add(guest)
    session.flush()
    audit.record(session, actor, "guest.checkout", object_type="guest", object_id=guest.id, object_name=name,
                 message=f"{entry.kind} {entry.name} on {host.name} for {days} day(s): "
                         f"{entry.ram_mb} MiB, {entry.vcpus} vCPU(s)")
    guest.host = host
    return guest


def _claim_or_explain(session: Session, *args: Any) -> Guest:
    try:
        with session.begin_nested():
            return _claim(session, *args)
    except IntegrityError:
        # Defence in depth: the unique live_name column is the database's own guard against a twin.
        name = args[3]
        if _name_taken(session, name):
            raise ValidationError(f"a guest named {name} already exists", field="name") from None
        raise


def _record_refusal(session: Session, actor: Actor, name: str, target: str, message: str) -> None:
    audit.record(session, actor, "guest.checkout", object_type="guest", object_name=name, result="refused",
                 message=f"{target}: {message}")


# -- the public entry points ----------------------------------------------------------------------

def _catalog(ctx: Context) -> CatalogSource:
    assert ctx.catalog is not None, "the server attaches the catalog at start"
    return ctx.catalog


async def checkout(ctx: Context, actor: Actor, req: CheckoutRequest) -> Guest:
    """Validate, place and claim; return the new guest (step registering or defining) and provision it
    in the background. Raises ValidationError (400), NoCapacity (409) or the catalog's backend error (502)."""
    actor.require_write()
    if actor.user_id is None:
        raise PermissionDenied("a guest needs an owner: check out as a user")
    name, days, purpose = validate(req, ctx.config)
    catalog = _catalog(ctx)
    entry = await catalog.resolve(req.target)
    unfit = await diskimages.hosts_without_pool(ctx, entry)
    token = secrets.token_urlsafe(32)
    worker = ctx.extras.setdefault("process_id", leases.new_process_id())
    record = catalog.record_for(name)
    try:
        guest = await ctx.db.run(_claim_or_explain, actor, ctx.config, name, entry, days, purpose,
                                 hash_token(token), worker, record, unfit, lock=True)
    except NoCapacity as exc:
        await ctx.db.run(_record_refusal, actor, name, entry.name, exc.message)
        raise
    assert guest.host is not None  # _claim always places the guest on a host
    job = Job(guest.id, name, guest.host.name, guest.host.virt_type, guest.mac or "", str(guest.uuid), entry, token,
              record)
    provisioner(ctx).spawn(guest.id, _provision(ctx, job))
    return guest


def _preview(session: Session, config: Config, entry: CatalogEntry, unfit: Mapping[str, str]) -> dict[str, Any]:
    demand = placement.Demand(entry.ram_mb, entry.vcpus, entry.virt_type)
    hosts = list(session.scalars(select(Host).order_by(Host.name)))
    usage = placement.usage_by_host(session, [h.id for h in hosts])
    candidates = placement.rooms(hosts, usage, demand, config.cpu_overcommit, unfit=unfit)
    chosen = placement.choose(candidates, config.placement_policy)
    return {
        "target": entry.to_dict(),
        "host": chosen.name if chosen else None,
        "fits": chosen is not None,
        "reason": "" if chosen else placement.no_room_message(demand, candidates),
        "policy": config.placement_policy,
        "hosts": [{"name": r.name, "free_ram_mb": r.free_ram_mb, "free_vcpus": r.free_vcpus, "fits": r.fits,
                   "reason": r.reason} for r in candidates],
    }


async def preview(ctx: Context, actor: Actor, target: str) -> dict[str, Any]:
    """Which host would take ``target`` now, or why none can (nothing is claimed)."""
    if actor.user_id is None and not actor.is_admin:
        raise PermissionDenied("log in to preview a checkout")
    entry = await _catalog(ctx).resolve(target)
    unfit = await diskimages.hosts_without_pool(ctx, entry)
    return await ctx.db.run(_preview, ctx.config, entry, unfit)


# -- the background steps -------------------------------------------------------------------------

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


async def _provision(ctx: Context, job: Job) -> None:
    made = _Made(job)
    entry, config = job.entry, ctx.config
    try:
        if job.record:
            await _register(ctx, job, made)
        conn = ctx.hosts.get(job.host)
        disk_path = await diskimages.make_disk(conn, job.name, entry)
        if disk_path:
            made.volume_path = disk_path
            await ctx.db.run(_advance, job, None, volume_path=disk_path, lock=True)
        from fogmachine.virt.domainxml import DomainSpec, build_domain_xml

        spec = DomainSpec(
            name=job.name, uuid=job.uuid, memory_mb=entry.ram_mb, vcpus=entry.vcpus,
            domain_type=placement.domain_type(job.host_type, entry.virt_type), mac=job.mac, network=entry.network,
            disk_path=disk_path, boot=entry.boot,
            kernel=entry.kernel or None, initrd=entry.initrd or None,
            cmdline=kernel_cmdline(config, entry, job.name, job.mac, job.token) if entry.boot == "kernel" else "",
            serial_log=f"{config.console_log_dir.rstrip('/')}/{job.name}.log" if config.console_log_dir else None,
            guest_id=job.guest_id,
        )
        define = conn.define(build_domain_xml(spec))

        def defined() -> None:
            made.domain = True

        if job.record:  # the row was made at "registering"
            await _overlapped(ctx, job, Step.DEFINING, define, defined)
        else:
            await define  # the row was made at "defining"
            defined()
        await _overlapped(ctx, job, Step.BOOTING, conn.start(job.name))
        final = Step.INSTALLING if entry.phonehome else Step.READY
        await ctx.db.run(_advance, job, final, state=GuestState.RUNNING, worker="", lock=True)
        log.info("guest %s started on %s; %s", job.name, job.host,
                 "waiting for its phone-home" if entry.phonehome else "ready")
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
    await _catalog(ctx).register(Registration(job.name, job.mac, job.token, job.entry))
    made.cobbler_system = job.record


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
    else:
        log.info("guest %s failed (%s) after its row went; torn down", job.name, reason)


# -- the running provisioning tasks -----------------------------------------------------------------

class Provisioner:
    """The background provisioning tasks of this process; a Component, so the server waits for them.

    ``tasks`` are the checkouts' steps, one per guest being provisioned (reconciliation leaves those
    guests alone); ``follow_ups`` is work after provisioning, such as switching an installed guest to boot
    from its disk, which the server also lets finish when it stops.
    """

    def __init__(self, ctx: Context, stop_timeout: float = 30.0) -> None:
        self.ctx = ctx
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


def provisioner(ctx: Context) -> Provisioner:
    found = ctx.extras.get(EXTRAS_KEY)
    if found is None:
        found = ctx.extras[EXTRAS_KEY] = Provisioner(ctx)
    return found
