"""The environment engine: each tier starts once every guest of the tiers before it is ready.

An environment's claim (``claim``) placed and inserted every guest at once, each
waiting (``Step.WAITING``: capacity held, nothing made), with the environment at
tier -1. The engine moves it on, one decision at a time:

- every guest of its current tier is ready (tier -1 has none): the next tier's
  variables are rendered over what the earlier tiers' guests reported at
  phone-home (``variables.render``), each of its guests gets a phone-home token
  and those variables, and its provisioning starts, through the checkout's
  engine like any guest's; after the last tier the environment is ready;
- a guest of a tier that has started failed: the environment fails, the
  reason naming the guest and the step it failed at (a guest its owner
  deleted is no failure: the environment goes on without it); unless its owner asked to keep a failed
  environment, every guest it holds is deleted (``lifecycle.delete``, forced:
  the one teardown path); kept, only its waiting guests go (nothing of them exists);
- every guest of it is retired (deleted, or their common lease ended): the
  environment is retired too.

Who moves it. The process where something happened pokes it (``poke``: a
phone-home, a provisioning that ended), so a tier follows the one before it at
once. A periodic sweep (``sweep``, one process at a time) looks at every live
environment and catches what a poke could not: a phone-home answered by
another process, a server SIGKILLed between tiers, a teardown that must be
tried again. Each decision is read, then applied in one locked unit of work
that re-reads the environment and refuses a move it no longer allows, so two
processes, or a poke and the sweep, never start a tier twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.catalog import CatalogEntry
from fogmachine.context import Context
from fogmachine.db.models import Environment, Guest, GuestStep, Host, Step, TargetKind, utcnow
from fogmachine.errors import BackendError, DatabaseUnavailable, FogmachineError, ValidationError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.services.checkout.claim import Launch, apply_launch
from fogmachine.services.checkout.engine import Job, provision
from fogmachine.services.environments import spec as specs
from fogmachine.services.environments.facts import EnvFacts, GuestFacts, OwnerFacts
from fogmachine.services.tokens import hash_token

log = logging.getLogger(__name__)

PROVISIONING, READY, FAILED, RETIRED = "provisioning", "ready", "failed", "retired"
ACTOR = "environments"
# Decisions made in a row for one poke: a start, then nothing until its guests phone home; a failure, then
# its teardown; a bound, so that a bug cannot spin.
MAX_MOVES = 4


@dataclass(frozen=True)
class _Start:
    """Tier ``tier`` may start: its guests (id, name) and what its variables are rendered over."""

    tier: int
    spec: specs.TemplateSpec
    guests: tuple[tuple[int, str], ...]
    reported: dict[str, list[GuestFacts]]
    env: EnvFacts
    owner: OwnerFacts


@dataclass(frozen=True)
class _Fail:
    reason: str


@dataclass(frozen=True)
class _Mark:
    """The environment is ``step`` now (ready, retired), nothing else to do."""

    step: str


@dataclass(frozen=True)
class _TearDown:
    """A failed environment still holds guests it must let go of (their ids, the last tier's first)."""

    guest_ids: tuple[int, ...]


_Decision = _Start | _Fail | _Mark | _TearDown | None


class EnvironmentWork:
    """This process's moves of environments under way; a Component, so a stop waits for them.

    One asyncio lock per environment orders this process's moves of it (the database's lock orders
    them between processes)."""

    def __init__(self, stop_timeout: float = 30.0) -> None:
        self.stop_timeout = stop_timeout
        self._locks: dict[int, asyncio.Lock] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False

    def lock(self, env_id: int) -> asyncio.Lock:
        return self._locks.setdefault(env_id, asyncio.Lock())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._stopping:
            coro.close()  # the sweep after the next start picks it up
            return
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def wait(self) -> None:
        """Wait until every move under way has ended (tests, and ``stop``)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def start(self) -> None:
        self._stopping = False

    async def stop(self) -> None:
        self._stopping = True
        if not self._running:
            return
        _done, late = await asyncio.wait(set(self._running), timeout=self.stop_timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def poke(ctx: Context, env_id: int | None) -> None:
    """Something happened to a guest of environment ``env_id``: move it on, in the background."""
    if env_id is not None:
        ctx.environments.spawn(advance(ctx, env_id))


async def sweep(ctx: Context) -> int:
    """Move on every environment that is not retired (the periodic task); how many were looked at."""
    ids = await ctx.db.run(_live_ids)
    for env_id in ids:
        await advance(ctx, env_id)
    return len(ids)


def _live_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Environment.id).where(Environment.step != RETIRED).order_by(Environment.id)))


async def advance(ctx: Context, env_id: int) -> None:
    """Make every move the environment allows now, in this process's turn for it."""
    async with ctx.environments.lock(env_id):
        for _ in range(MAX_MOVES):
            try:
                decision = await ctx.db.run(_decide, env_id)
                if decision is None or not await _apply(ctx, env_id, decision):
                    return
            except asyncio.CancelledError:
                raise
            except FogmachineError as exc:  # the database or a backend is away: the sweep tries again
                log.warning("environment %s: could not move it on now: %s", env_id, exc.message)
                return
            except Exception:
                log.exception("environment %s: moving it on failed", env_id)
                return


# -- deciding ---------------------------------------------------------------------------------------

def _guests(session: Session, env_id: int) -> list[Guest]:
    return list(session.scalars(select(Guest).where(Guest.environment_id == env_id)
                                .order_by(Guest.tier, Guest.tier_index)))


def _failed_at(session: Session, guest: Guest) -> str:
    """The step a failed guest was at when it failed (its step history's last before ``failed``)."""
    steps = session.scalars(select(GuestStep.step).where(GuestStep.guest_id == guest.id)
                            .order_by(GuestStep.at.desc(), GuestStep.id.desc()).limit(5)).all()
    return next((s for s in steps if s not in (Step.FAILED, Step.RETIRED)), "")


def _broken(session: Session, env: Environment, guests: Sequence[Guest]) -> str | None:
    """Why the environment cannot become ready (a guest of a tier that has started failed), or None.

    A guest deleted by its owner (retired) is not a failure: the environment goes on without it (a later
    tier's variable that needs it then fails to render, and says so)."""
    for guest in guests:
        if guest.tier is None or guest.tier > env.tier or guest.step != Step.FAILED:
            continue
        at = _failed_at(session, guest)
        return (f"guest {guest.name} (tier {_tier_name(env, guest.tier)}) failed"
                f"{' at ' + at if at else ''}: {guest.step_reason or 'no reason given'}")
    return None


def _spec(env: Environment) -> specs.TemplateSpec:
    return specs.parse(json.loads(env.spec))


def _tier_name(env: Environment, tier: int) -> str:
    try:
        return _spec(env).tiers[tier].name
    except (ValueError, IndexError, FogmachineError):
        return str(tier)


def _decide(session: Session, env_id: int) -> _Decision:
    env = session.get(Environment, env_id)
    if env is None or env.step == RETIRED:
        return None
    guests = _guests(session, env_id)
    if env.step == PROVISIONING:
        why = _broken(session, env, guests)
        if why is not None:
            return _Fail(why)
    elif all(g.step == Step.RETIRED for g in guests):
        return _Mark(RETIRED)
    elif env.step == FAILED:
        holding = [g for g in guests if g.step != Step.RETIRED and (not env.keep_failed or g.step == Step.WAITING)]
        return _TearDown(tuple(g.id for g in reversed(holding))) if holding else None
    if env.step != PROVISIONING:
        return None
    spec = _spec(env)
    if any(g.step not in (Step.READY, Step.RETIRED) for g in guests if g.tier == env.tier):
        return None
    if env.tier + 1 >= len(spec.tiers):
        return _Mark(READY)
    nxt = env.tier + 1
    reported: dict[str, list[GuestFacts]] = {}
    for guest in guests:
        if guest.tier is not None and guest.tier < nxt and guest.step == Step.READY:
            reported.setdefault(spec.tiers[guest.tier].name, []).append(GuestFacts(
                name=guest.name, ip=guest.ip, hostname=guest.hostname, mac=guest.mac or ""))
    owner = env.owner
    return _Start(
        tier=nxt, spec=spec, guests=tuple((g.id, g.name) for g in guests if g.tier == nxt and g.step == Step.WAITING),
        reported=reported,
        env=EnvFacts(name=env.name, purpose=env.purpose, template=env.template_name),
        owner=OwnerFacts(username=owner.username if owner else "", email=owner.email if owner else ""))


# -- applying ---------------------------------------------------------------------------------------

async def _apply(ctx: Context, env_id: int, decision: _Decision) -> bool:
    """Apply one decision; True when another may follow at once."""
    if isinstance(decision, _Mark):
        await ctx.db.run(_mark, env_id, decision.step, lock=True)
        return False
    if isinstance(decision, _Fail):
        return bool(await ctx.db.run(_mark_failed, env_id, decision.reason, lock=True))
    if isinstance(decision, _TearDown):
        await _tear_down(ctx, env_id, decision.guest_ids)
        return False
    if isinstance(decision, _Start):
        return await _start_tier(ctx, env_id, decision)
    return False


def _locked(session: Session, env_id: int) -> Environment | None:
    return session.scalar(select(Environment).where(Environment.id == env_id).with_for_update())


def _record(session: Session, env: Environment, action: str, message: str, result: str = "ok") -> None:
    audit.record(session, Actor.system(ACTOR), action, object_type="environment", object_id=env.id,
                 object_name=env.name, result=result, message=message)


def _mark(session: Session, env_id: int, step: str) -> bool:
    env = _locked(session, env_id)
    if env is None or env.step == RETIRED or env.step == step:
        return False
    if step == READY and env.step != PROVISIONING:
        return False
    if step == RETIRED:
        if any(g.step != Step.RETIRED for g in _guests(session, env_id)):
            return False  # a guest came back to life meanwhile? (never): keep the environment
        env.live_name = None
        env.retired_at = utcnow()
        env.step_reason = env.step_reason or "all its guests are retired"
    env.step = step
    _record(session, env, f"environment.{step}", "every tier is ready" if step == READY else env.step_reason)
    log.info("environment %s is %s", env.name, step)
    return True


def _mark_failed(session: Session, env_id: int, reason: str) -> bool:
    env = _locked(session, env_id)
    if env is None or env.step != PROVISIONING:
        return False
    env.step, env.step_reason = FAILED, reason[:2000]
    _record(session, env, "environment.provision", reason, result="failed")
    log.warning("environment %s failed: %s", env.name, reason)
    return True


async def _tear_down(ctx: Context, env_id: int, guest_ids: Sequence[int]) -> None:
    """Delete the guests a failed environment still holds, later tiers first (lifecycle.delete, forced:
    the same teardown as any deleted guest; a part that cannot be removed is left to reconciliation)."""
    from fogmachine.services import lifecycle  # lifecycle knows no environments; this is its one caller here

    actor = Actor.system(ACTOR)
    for guest_id in guest_ids:
        try:
            await lifecycle.delete(ctx, actor, guest_id, force=True)
        except FogmachineError as exc:
            log.warning("environment %s: deleting guest %s: %s", env_id, guest_id, exc.message)


async def _start_tier(ctx: Context, env_id: int, start: _Start) -> bool:
    from fogmachine.services.environments import variables  # Jinja2, loaded when first needed (facts.py)

    tier = start.spec.tiers[start.tier]
    catalog = ctx.need_catalog()
    try:
        entry = await catalog.resolve(tier.target)
        values = variables.render(start.spec, start.tier, start.reported, start.env, start.owner)
        if entry.boot == "kernel" and entry.kind == TargetKind.LOCAL:
            _fit_for_cmdline(tier.name, values)
    except (BackendError, DatabaseUnavailable):  # the catalog source (or the database) is away: the sweep
        raise                                     # tries again; the tier is not lost for that
    except FogmachineError as exc:
        return bool(await ctx.db.run(
            _mark_failed, env_id, f"tier {tier.name} could not start: {exc.message}", lock=True))
    tokens = {guest_id: secrets.token_urlsafe(32) for guest_id, _name in start.guests}
    records = {guest_id: catalog.record_for(name) for guest_id, name in start.guests}
    begun = await ctx.db.run(_begin_tier, env_id, start.tier, entry, values,
                             {gid: hash_token(token) for gid, token in tokens.items()}, records, ctx.process_id,
                             lock=True)
    if not begun:  # None: the environment moved meanwhile (another process); []: its guests were all deleted
        return True  # either way, look again at once
    for guest_id, name, host, host_type, mac, uuid in begun:
        job = Job(guest_id, name, host, host_type, mac, uuid, entry, tokens[guest_id], records[guest_id],
                  variables=values, environment_id=env_id)
        ctx.provisioner.spawn(guest_id, provision(ctx, job))
    log.info("environment %s: tier %s (%d guest(s)) started", start.env.name, tier.name, len(begun))
    return False


def _fit_for_cmdline(tier: str, values: dict[str, str]) -> None:
    """A local entry's guests get their variables on the kernel command line (``bootline``), which has no way
    to carry a double quote inside a value."""
    for name, value in sorted(values.items()):
        if '"' in value:
            raise ValidationError(f"variable {name} of tier {tier} holds a double quote, which a kernel command "
                                  "line cannot carry", field=f"variables.{name}")


def _begin_tier(session: Session, env_id: int, tier: int, entry: CatalogEntry, values: dict[str, str],
                token_hashes: dict[int, str], records: dict[int, str],
                worker: str) -> list[tuple[int, str, str, str, str, str]] | None:
    """Tier ``tier``'s guests leave ``waiting`` (token, variables, record, worker), in one locked unit that
    re-checks that the tier before is ready; None when the environment moved meanwhile."""
    env = _locked(session, env_id)
    if env is None or env.step != PROVISIONING or env.tier != tier - 1:
        return None
    # The guests alone are locked: MariaDB has no FOR UPDATE OF, so a join would lock their hosts too, which
    # every checkout locks first (placement.lock_hosts): the other order, a deadlock.
    guests = list(session.scalars(select(Guest).where(Guest.environment_id == env_id)
                                  .order_by(Guest.tier, Guest.tier_index).with_for_update()))
    hosts = {h.id: h for h in session.scalars(select(Host).where(Host.id.in_({g.host_id for g in guests})))}
    if any(g.step not in (Step.READY, Step.RETIRED) for g in guests if g.tier == tier - 1):
        return None
    begun = []
    payload = json.dumps(values, sort_keys=True)
    for guest in guests:
        host = hosts.get(guest.host_id) if guest.host_id is not None else None
        if guest.tier != tier or guest.step != Step.WAITING or host is None:
            continue
        apply_launch(guest, Launch(token_hashes[guest.id], worker, records[guest.id]))
        guest.env_vars = payload
        begun.append((guest.id, guest.name, host.name, host.virt_type, guest.mac or "", str(guest.uuid)))
    env.tier = tier
    spec = _spec(env)
    _record(session, env, "environment.tier",
            f"tier {spec.tiers[tier].name} started: {len(begun)} guest(s)"
            + (f", variables {', '.join(sorted(values))}" if values else ""))
    return begun
