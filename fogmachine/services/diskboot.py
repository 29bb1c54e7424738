"""After its install, a guest is finished off: it boots from its disk, and Cobbler forgets its token.

Direct kernel boot is how an installer runs here (the distro's kernel and
initrd with the autoinstall URL on the command line, as Cobbler's koan does
it). Left that way, the guest would run its installer again at every boot and
never reach the system it installed. So when the guest phones home for the
first time, its domain's persistent definition loses ``<kernel>``,
``<initrd>`` and ``<cmdline>`` and boots its disk instead. Only the persistent
definition changes: the running guest is not disturbed, and its next boot
starts the installed system. Guests without a disk Fogmachine made, and
domains that do not boot a kernel, are left as they are.

Then Cobbler's record of the guest loses its phone-home token (the value of
``fogmachine_token`` in its autoinstall_meta is blanked, the key kept so that
reconciliation still knows the system as Fogmachine's): Cobbler serves the
rendered kickstart to anyone who asks, and it must no longer carry a token.
A network-booted system also gets ``netboot_enabled`` off, as Cobbler's
``pxe_just_once`` does, or it would install again at its next boot. The
catalog source does this (``ctx.catalog.installed``,
``catalog/cobbler_source.py``).

This runs in the background once the phone-home has been answered: a slow or
failing host must never fail the guest's phone-home (its installer would
retry it or give up). What fails is tried again until it is done, because a
guest that still boots its installer reinstalls itself at its next boot: the
row's ``diskboot_pending`` and ``cobbler_token_pending`` say what is left
(durably: a restarted server goes on with it), and the retries come with the
guest's later phone-homes, every ``diskboot_retry_interval`` seconds (a
periodic task) and as soon as the guest's host comes back up. Until the switch
is done the guest's ``step_reason`` carries the warning (audited once per
distinct reason), and its phone-home token stays valid (its next boot is an
install); once done, the warning is cleared and the token's grace starts.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import Guest, Host, Step, utcnow
from fogmachine.errors import FogmachineError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.virt.domainxml import boot_from_disk

log = logging.getLogger(__name__)

ACTOR = Actor.system("provisioning")
NOT_SWITCHED = "installed, but its domain could not be switched to boot from its disk"


@dataclass(frozen=True)
class Pending:
    """What is left to finish for one installed guest, copied out of its row."""

    guest_id: int
    uuid: str
    name: str
    host: str | None
    domain_name: str | None
    diskboot: bool
    cobbler_system: str  # "" when Cobbler's record needs nothing

    @classmethod
    def of(cls, guest: Guest) -> Pending | None:
        if guest.step != Step.READY or not guest.managed or not (guest.diskboot_pending or
                                                                 guest.cobbler_token_pending):
            return None
        return cls(guest.id, str(guest.uuid), guest.name, guest.host.name if guest.host is not None else None,
                   guest.domain_name, guest.diskboot_pending,
                   guest.cobbler_system if guest.cobbler_token_pending else "")


def mark_installed(guest: Guest, now: dt.datetime, grace_seconds: float) -> None:
    """At the first phone-home (in its transaction): the token's grace starts, and the switch to disk boot
    is pending when the guest has a disk Fogmachine made on a host (whether its domain boots a kernel at
    all is read from the domain itself, when the switch is tried)."""
    guest.phonehome_until = now + dt.timedelta(seconds=grace_seconds)
    guest.diskboot_pending = bool(guest.volume_path and guest.host_id is not None and guest.domain_name)


def schedule(ctx: Context, guest_id: int) -> None:
    """Finish ``guest_id`` in the background (the server lets it finish when stopping)."""
    ctx.provisioner.follow_up(finish(ctx, guest_id))


def schedule_host(ctx: Context, host_name: str) -> None:
    """The host came (back) up: finish what waited for it, in the background."""
    ctx.provisioner.follow_up(retry_all(ctx, host_name))


async def retry_all(ctx: Context, host_name: str | None = None) -> int:
    """Finish every installed guest with work left (on ``host_name`` only, when given); how many are done."""
    ids = await ctx.db.run(_pending_ids, host_name)
    done = 0
    for guest_id in ids:
        done += await finish(ctx, guest_id)
    return done


def _pending_ids(session: Session, host_name: str | None) -> list[int]:
    query = select(Guest.id).where(Guest.managed.is_(True), Guest.step == Step.READY,
                                   or_(Guest.diskboot_pending.is_(True), Guest.cobbler_token_pending.is_(True)))
    if host_name is not None:
        query = query.join(Host, Guest.host_id == Host.id).where(Host.name == host_name)
    return list(session.scalars(query.order_by(Guest.id)))


async def finish(ctx: Context, guest_id: int) -> bool:
    """Do what is left for ``guest_id``; True when nothing is left. One attempt per guest at a time in this
    process (a phone-home, the periodic retry and a host coming up may all ask at once), and none while the
    guest is being torn down here."""
    if ctx.guest_work.busy(guest_id):  # being finished, or torn down (services/guestwork.py)
        return False
    async with ctx.guest_work.hold(guest_id):
        try:
            target = await ctx.db.run(_read, guest_id)
            if target is None:
                return True
            if target.diskboot and not await switch(ctx, target):
                return False  # Cobbler keeps the token meanwhile: the guest's next boot is an install
            if target.cobbler_system:
                return await _forget_token(ctx, target)
            return True
        except FogmachineError as exc:  # the database is away: the next retry comes
            log.warning("guest %s: finishing its install must wait: %s", guest_id, exc.message)
            return False


def _read(session: Session, guest_id: int) -> Pending | None:
    guest = session.get(Guest, guest_id)
    return Pending.of(guest) if guest is not None else None


async def switch(ctx: Context, target: Pending) -> bool:
    """Make the domain boot from its disk from its next boot on; True when that is done (or not needed)."""
    try:
        if ctx.hosts is None or target.host is None or target.domain_name is None:
            raise FogmachineError("its host is not known")
        conn = ctx.hosts.get(target.host)
        changed = bool(await conn.redefine(target.domain_name, boot_from_disk, label=target.name))
    except FogmachineError as exc:
        await _write(ctx, _switch_failed, target, exc.message)
        return False
    except Exception as exc:
        log.exception("switching guest %s to boot from its disk failed", target.name)
        await _write(ctx, _switch_failed, target,
                     f"internal error: {type(exc).__name__}; the server log has the details")
        return False
    if changed:
        log.info("guest %s is installed: its domain on %s boots from its disk from its next boot on",
                 target.name, target.host)
    await _write(ctx, _switched, target, changed, float(ctx.config.phonehome_grace_seconds))
    return True


async def _write(ctx: Context, fn: Any, target: Pending, *args: Any) -> None:
    try:
        await ctx.db.run(fn, target, *args, lock=True)
    except FogmachineError as exc:
        log.error("guest %s: could not record how finishing its install went: %s", target.name, exc.message)


def _own_row(session: Session, target: Pending) -> Guest | None:
    guest = session.scalar(select(Guest).where(Guest.id == target.guest_id).with_for_update())
    # The UUID check: the row may have been deleted and its id reused meanwhile.
    if guest is None or guest.uuid != target.uuid or guest.step != Step.READY:
        return None
    return guest


def _switched(session: Session, target: Pending, changed: bool, grace_seconds: float) -> None:
    guest = _own_row(session, target)
    if guest is None:
        return
    was_warned = guest.step_reason.startswith(NOT_SWITCHED)
    guest.diskboot_pending = False
    # The install is finished only now: the token's grace counts from here.
    until = utcnow() + dt.timedelta(seconds=grace_seconds)
    if guest.phonehome_until is None or guest.phonehome_until < until:
        guest.phonehome_until = until
    if was_warned:
        guest.step_reason = ""
    if changed or was_warned:
        audit.record(session, ACTOR, "guest.diskboot", object_type="guest", object_id=target.guest_id,
                     object_name=target.name, message="its next boot starts from its disk, not the installer's kernel")


def _switch_failed(session: Session, target: Pending, message: str) -> None:
    reason = f"{NOT_SWITCHED} ({message}); its next boot runs the installer again"
    guest = _own_row(session, target)
    if guest is None or guest.step_reason == reason:
        return  # the same failure again: already said (the retries go on)
    log.warning("guest %s: %s", target.name, reason)
    guest.step_reason = reason
    audit.record(session, ACTOR, "guest.diskboot", object_type="guest", object_id=target.guest_id,
                 object_name=target.name, result="failed", message=reason)


async def _forget_token(ctx: Context, target: Pending) -> bool:
    """Blank the token in Cobbler's record of the guest (and stop its netboot); True when done."""
    catalog = ctx.catalog
    try:
        done = catalog is not None and await catalog.installed(target.cobbler_system)
    except FogmachineError as exc:
        log.warning("guest %s: could not blank its phone-home token in Cobbler (retried later): %s",
                    target.name, exc.message)
        return False
    if not done:  # the catalog source keeps no records
        log.warning("guest %s: Cobbler system %s still carries its phone-home token, but no Cobbler is "
                    "configured now", target.name, target.cobbler_system)
        return False
    await _write(ctx, _token_forgotten, target)
    log.info("guest %s: Cobbler's system %s no longer carries its phone-home token", target.name,
             target.cobbler_system)
    return True


def _token_forgotten(session: Session, target: Pending) -> None:
    guest = session.scalar(select(Guest).where(Guest.id == target.guest_id).with_for_update())
    if guest is not None and guest.uuid == target.uuid:
        guest.cobbler_token_pending = False
