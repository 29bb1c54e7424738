"""What a guest tells Fogmachine about itself after its install (the "phone-home").

The 2009 original trusted anyone who knew a guest's MAC. Here each guest gets
its own random token at checkout (Cobbler hands it to the installer through
``autoinstall_meta``); only its SHA-256 is stored, compared in constant time.
An unknown MAC and a wrong token get the same refusal, so the answer does not
tell which MACs exist, and nothing is changed.

The token is an installer's credential, and only that: it works while the
guest is being provisioned, and after its first phone-home for
``phonehome_grace_seconds`` more (so the same install may retry, or ask
``getuser`` after ``set``). While the switch to disk boot is still pending
(``diskboot``) the guest's next boot runs its installer again, so the window
stays open until that switch is done, then closes after the grace. A token
used outside its window gets 403, a log line and a ``guest.phonehome``
"refused" audit line with the caller's address; the token itself is never
logged or audited. A wrong token gets the log line only: an audit write for
known MACs alone would let the answer's timing tell which MACs exist.

The first phone-home means the install is done: a guest that booted its
installer's kernel is then switched to boot from its disk and its token is
blanked in Cobbler (``diskboot``), in the background, so the guest's request
never waits for its host or Cobbler.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import json
import logging
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import Guest, Step, utcnow
from fogmachine.errors import FogmachineError, PermissionDenied, ValidationError
from fogmachine.services import audit, diskboot
from fogmachine.services.actor import Actor
from fogmachine.services.tokens import hash_token

log = logging.getLogger(__name__)

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\.?")
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Steps at which a phone-home means "installed"; at ready the token works only within its window.
INSTALLING_STEPS = (Step.REGISTERING, Step.DEFINING, Step.BOOTING, Step.INSTALLING)
ACTOR_NAME = "phone-home"
WRONG = "unknown guest or wrong token"
EXPIRED = "this guest's phone-home token no longer works: it is only valid while the guest installs"


class Refused(PermissionDenied):
    """A refused phone-home; for a MAC Fogmachine knows, it also names the guest (for the audit line)."""

    def __init__(self, message: str, why: str, guest_id: int | None = None, guest_name: str = "") -> None:
        super().__init__(message)
        self.why = why
        self.guest_id = guest_id
        self.guest_name = guest_name


def window_open(guest: Guest, now: dt.datetime) -> bool:
    """Whether the guest's token may be used now (see the module's docstring)."""
    if guest.step in INSTALLING_STEPS:
        return True
    if guest.step != Step.READY:
        return False
    return guest.diskboot_pending or (guest.phonehome_until is not None and now < guest.phonehome_until)


def normalize_mac(mac: str) -> str | None:
    text = mac.strip().lower().replace("-", ":")
    return text if MAC_RE.fullmatch(text) else None


def _guest_by_token(session: Session, mac: str, token: str, remote_addr: str, for_update: bool,
                    now: dt.datetime) -> Guest:
    normalized = normalize_mac(mac)
    guest = None
    if normalized is not None and token:
        # The guests row alone: PostgreSQL refuses FOR UPDATE on the nullable side of an outer join, so
        # the owner (only getuser needs it) is loaded by itself afterwards, never joined into the lock.
        query = select(Guest).where(Guest.mac == normalized, Guest.managed.is_(True))
        if for_update:
            query = query.with_for_update(of=Guest)
        guest = session.scalars(query).first()
    expected = guest.phonehome_token_hash if guest is not None else ""
    # Compare even when the guest is unknown, so both refusals cost the same.
    matches = hmac.compare_digest(hash_token(token or ""), expected or "0" * 64)
    if guest is None or not expected or not matches:
        why = "unknown MAC" if guest is None else "wrong token"
        # repr: the MAC and the address are the client's text; the token is never logged.
        log.warning("phone-home refused for MAC %r from %r: %s", mac[:40], remote_addr or "?", why)
        # No guest named, so no audit line: a write only for known MACs would tell by its time which exist.
        raise Refused(WRONG, why)
    if not window_open(guest, now):
        why = f"token expired (guest is {guest.step})"
        log.warning("phone-home refused for guest %s (MAC %s) from %r: %s", guest.name, guest.mac,
                     remote_addr or "?", why)
        raise Refused(EXPIRED if guest.step == Step.READY else WRONG, why, guest.id, guest.name)
    return guest


def _record_refusal(session: Session, refused: Refused, remote_addr: str) -> None:
    audit.record(session, Actor(user_id=None, username=ACTOR_NAME, remote_addr=remote_addr), "guest.phonehome",
                 object_type="guest", object_id=refused.guest_id, object_name=refused.guest_name,
                 result="refused", message=refused.why)


async def _audited(ctx: Context, refused: Refused, remote_addr: str) -> None:
    """Audit the refusal of a right token outside its window, in a transaction of its own (the refused one
    rolled back). A wrong token or an unknown MAC has only its log line (see ``_guest_by_token``)."""
    if refused.guest_id is None:
        return
    try:
        await ctx.db.run(_record_refusal, refused, remote_addr)
    except FogmachineError as exc:  # the 403 stands even when the audit line cannot be written
        log.error("could not audit a refused phone-home for guest %s: %s", refused.guest_name, exc.message)


# What a guest may report as its address: the digits of an IPv4 or IPv6 address and, for a link-local
# IPv6 address, a zone id that is an interface name (Linux: at most 15 of these characters). Checked
# before ``ipaddress`` parses it, which takes any text at all after a '%'.
IP_MAX = 64  # the column's width
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]{1,15})?")
HOSTNAME_MAX = 253


def _clean_ip(ip: str) -> str:
    """The address in its canonical form; ValidationError (field ``ip``) for anything else.

    Nothing is stripped or repaired: a value with a newline, a NUL or other text is refused whole, and the
    message never repeats the client's text (it would land in logs and pages).
    """
    if not ip:
        return ""
    if len(ip) > IP_MAX or not _IP_CHARS.fullmatch(ip):
        raise ValidationError("ip must be an IPv4 or IPv6 address (an IPv6 zone id may only be an interface "
                              f"name), at most {IP_MAX} characters", field="ip")
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise ValidationError("ip is not a valid IPv4 or IPv6 address", field="ip") from None


def _clean_hostname(hostname: str) -> str:
    """The host name without a final dot; ValidationError (field ``hostname``) unless it is exactly a DNS name."""
    if not hostname:
        return ""
    if len(hostname) > HOSTNAME_MAX + 1 or not hostname.isascii() or not HOSTNAME_RE.fullmatch(hostname):
        raise ValidationError("hostname must be a DNS name: labels of letters, digits and '-' joined by '.', "
                              f"at most {HOSTNAME_MAX} characters", field="hostname")
    return hostname.rstrip(".")


async def announce(ctx: Context, mac: str, token: str, ip: str, hostname: str, remote_addr: str) -> Guest:
    """Record a phone-home; then finish the install in the background (disk boot, Cobbler) if need be."""
    grace = float(ctx.config.phonehome_grace_seconds)
    try:
        # lock: reads then writes; on SQLite the write lock must be held from BEGIN.
        guest = await ctx.db.run(_record_one, mac, token, ip, hostname, remote_addr, grace, lock=True)
    except Refused as refused:
        await _audited(ctx, refused, remote_addr)
        raise
    if guest.diskboot_pending or guest.cobbler_token_pending:
        diskboot.schedule(ctx, guest.id)
    if guest.environment_id is not None:  # its tier may be complete: the next one may start
        from fogmachine.services.environments import engine  # environments build on this module

        engine.poke(ctx, guest.environment_id)
    return guest


def _record_one(session: Session, mac: str, token: str, ip: str, hostname: str, remote_addr: str,
                grace: float) -> Guest:
    return _record(session, mac, token, ip, hostname, remote_addr, grace)[0]


def record_address(session: Session, mac: str, token: str, ip: str, hostname: str, remote_addr: str,
                   grace: float = 300.0) -> Guest:
    """The guest announced itself: keep its IP and hostname and mark it ready."""
    return _record(session, mac, token, ip, hostname, remote_addr, grace)[0]


def _record(session: Session, mac: str, token: str, ip: str, hostname: str, remote_addr: str,
            grace: float) -> tuple[Guest, bool]:
    """(the guest, whether this was its first phone-home)."""
    now = utcnow()
    guest = _guest_by_token(session, mac, token, remote_addr, True, now)
    ip, hostname = _clean_ip(ip), _clean_hostname(hostname)
    first = guest.step != Step.READY
    if ip:
        guest.ip = ip
    if hostname:
        guest.hostname = hostname
    if first:
        diskboot.mark_installed(guest, now, grace)
    guest.step = Step.READY
    if not guest.diskboot_pending:
        guest.step_reason = ""  # while the switch is pending, its warning stays
    audit.record(session, Actor(user_id=None, username=ACTOR_NAME, remote_addr=remote_addr),
                 "guest.ready" if first else "guest.phonehome", object_type="guest", object_id=guest.id,
                 object_name=guest.name, message=f"ip {guest.ip or '-'}, hostname {guest.hostname or '-'}")
    # Only validated values (and the address Tornado parsed, as repr) reach the log line.
    log.info("guest %s phoned home from %r: ip %s, hostname %s", guest.name, remote_addr, guest.ip, guest.hostname)
    return guest, first


async def owner(ctx: Context, mac: str, token: str, remote_addr: str) -> dict[str, Any]:
    """``owner_of`` for the getuser route, with a refusal audited."""
    try:
        return await ctx.db.run(owner_of, mac, token, remote_addr)
    except Refused as refused:
        await _audited(ctx, refused, remote_addr)
        raise


async def environment(ctx: Context, mac: str, token: str, remote_addr: str) -> dict[str, Any]:
    """``environment_of`` for the env route, with a refusal audited."""
    try:
        return await ctx.db.run(environment_of, mac, token, remote_addr)
    except Refused as refused:
        await _audited(ctx, refused, remote_addr)
        raise


def environment_of(session: Session, mac: str, token: str, remote_addr: str) -> dict[str, Any]:
    """The guest's environment, tier and variables (as its tier resolved them when it started), for its
    installer: the same token, in the same window, as the phone-home. A guest of no environment gets
    empty values, so one snippet serves every guest."""
    guest = _guest_by_token(session, mac, token, remote_addr, False, utcnow())
    env = guest.environment
    tier = ""
    if env is not None and guest.tier is not None:
        tiers = json.loads(env.spec or "{}").get("tiers") or []
        tier = str(tiers[guest.tier].get("name", "")) if guest.tier < len(tiers) else ""
    return {"environment": env.name if env is not None else "", "tier": tier, "index": guest.tier_index,
            "variables": json.loads(guest.env_vars) if guest.env_vars else {}}


def owner_of(session: Session, mac: str, token: str, remote_addr: str) -> dict[str, Any]:
    """The owner's username, e-mail and SSH key, for the installer to set up their account."""
    guest = _guest_by_token(session, mac, token, remote_addr, False, utcnow())
    user = guest.owner
    if user is None:
        return {"username": "", "email": "", "ssh_key": ""}
    return {"username": user.username, "email": user.email, "ssh_key": user.ssh_key}
