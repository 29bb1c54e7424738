"""After its install, a guest that booted its installer's kernel is switched to boot from its disk.

Direct kernel boot is how an installer runs here (the distro's kernel and
initrd with the autoinstall URL on the command line, as Cobbler's koan does
it). Left that way, the guest would run its installer again at every boot and
never reach the system it installed. So when the guest phones home for the
first time, its domain's persistent definition loses ``<kernel>``,
``<initrd>`` and ``<cmdline>`` and boots its disk instead. Only the persistent
definition changes: the running guest is not disturbed, and its next boot
starts the installed system. Guests without a disk Fogmachine made, and
domains that do not boot a kernel, are left as they are.

This runs in the background once the phone-home has been answered: a slow or
failing host must never fail the guest's phone-home (its installer would
retry it or give up). A failure is logged, written to the guest's
``step_reason`` (the guest stays ready) and audited, for its owner or an
admin to see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import Guest, Step
from fogmachine.errors import FogmachineError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import provisioner
from fogmachine.virt.domainxml import boot_from_disk

log = logging.getLogger(__name__)

ACTOR = Actor.system("provisioning")
NOT_SWITCHED = "installed, but its domain could not be switched to boot from its disk"


@dataclass(frozen=True)
class Installed:
    """The facts of a guest that has just phoned home, copied out of its row."""

    guest_id: int
    uuid: str
    name: str
    host: str
    domain_name: str

    @classmethod
    def of(cls, guest: Guest) -> Installed | None:
        """The guest as a candidate for the switch; None when it has no disk Fogmachine made (nothing to
        boot from) or no host. Whether its domain boots a kernel is read from the domain itself."""
        if not guest.volume_path or guest.host is None or not guest.domain_name:
            return None
        return cls(guest.id, str(guest.uuid), guest.name, guest.host.name, guest.domain_name)


def schedule(ctx: Context, target: Installed) -> None:
    """Switch ``target`` in the background (the server lets it finish when stopping)."""
    provisioner(ctx).follow_up(switch(ctx, target))


async def switch(ctx: Context, target: Installed) -> bool:
    """Make the domain boot from its disk from its next boot on; True when its definition was changed."""
    try:
        if ctx.hosts is None:
            return False
        conn = ctx.hosts.get(target.host)
        changed: bool = await conn.redefine(target.domain_name, boot_from_disk, label=target.name)
    except FogmachineError as exc:
        await _record_failure(ctx, target, exc.message)
        return False
    except Exception as exc:
        log.exception("switching guest %s to boot from its disk failed", target.name)
        await _record_failure(ctx, target, f"internal error: {type(exc).__name__}; the server log has the details")
        return False
    if changed:
        log.info("guest %s is installed: its domain on %s boots from its disk from its next boot on",
                 target.name, target.host)
        await _write(ctx, target, "ok", "its next boot starts from its disk, not the installer's kernel")
    return changed


async def _record_failure(ctx: Context, target: Installed, message: str) -> None:
    reason = f"{NOT_SWITCHED} ({message}); its next boot runs the installer again"
    log.warning("guest %s: %s", target.name, reason)
    await _write(ctx, target, "failed", reason)


async def _write(ctx: Context, target: Installed, result: str, message: str) -> None:
    try:
        await ctx.db.run(_note, target, result, message, lock=True)
    except FogmachineError as exc:
        log.error("guest %s: could not record the switch to disk boot (%s): %s", target.name, message, exc.message)


def _note(session: Session, target: Installed, result: str, message: str) -> None:
    audit.record(session, ACTOR, "guest.diskboot", object_type="guest", object_id=target.guest_id,
                 object_name=target.name, result=result, message=message)
    if result == "ok":
        return
    guest = session.get(Guest, target.guest_id)
    # The UUID check: the row may have been deleted and its id reused meanwhile.
    if guest is not None and guest.uuid == target.uuid and guest.step == Step.READY:
        guest.step_reason = message
