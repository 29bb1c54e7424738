"""What a guest tells Fogmachine about itself after its install (the "phone-home").

The 2009 original trusted anyone who knew a guest's MAC. Here each guest gets
its own random token at checkout (Cobbler hands it to the installer through
``autoinstall_meta``); only its SHA-256 is stored, compared in constant time.
An unknown MAC and a wrong token get the same refusal, so the answer does not
tell which MACs exist, and nothing is changed.

The first phone-home means the install is done: a guest that booted its
installer's kernel is then switched to boot from its disk (``diskboot``), in
the background, so the guest's request never waits for its host.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.context import Context
from fogmachine.db.models import Guest, Step
from fogmachine.errors import PermissionDenied, ValidationError
from fogmachine.services import audit, diskboot
from fogmachine.services.actor import Actor
from fogmachine.services.tokens import hash_token

log = logging.getLogger(__name__)

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# Steps at which a phone-home means "installed": later ones (ready) just update the address.
ACCEPTING = (Step.REGISTERING, Step.DEFINING, Step.BOOTING, Step.INSTALLING, Step.READY)


def normalize_mac(mac: str) -> str | None:
    text = mac.strip().lower().replace("-", ":")
    return text if MAC_RE.match(text) else None


def _guest_by_token(session: Session, mac: str, token: str, remote_addr: str, for_update: bool) -> Guest:
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
    if guest is None or not expected or not matches or guest.step not in ACCEPTING:
        why = "unknown MAC" if guest is None else "wrong token" if not matches or not expected \
            else f"guest is {guest.step}"
        # repr: the MAC and the address are the client's text; the token is never logged.
        log.warning("phone-home refused for MAC %r from %r: %s", mac[:40], remote_addr or "?", why)
        raise PermissionDenied("unknown guest or wrong token")
    return guest


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
    """Record a phone-home; after the first, switch the guest to disk boot if it booted a kernel."""
    # lock: reads then writes; on SQLite the write lock must be held from BEGIN.
    guest, installed = await ctx.db.run(_record_installed, mac, token, ip, hostname, remote_addr, lock=True)
    if installed is not None:
        diskboot.schedule(ctx, installed)
    return guest


def _record_installed(session: Session, mac: str, token: str, ip: str, hostname: str,
                      remote_addr: str) -> tuple[Guest, diskboot.Installed | None]:
    guest, first = _record(session, mac, token, ip, hostname, remote_addr)
    return guest, diskboot.Installed.of(guest) if first else None


def record_address(session: Session, mac: str, token: str, ip: str, hostname: str, remote_addr: str) -> Guest:
    """The guest announced itself: keep its IP and hostname and mark it ready."""
    return _record(session, mac, token, ip, hostname, remote_addr)[0]


def _record(session: Session, mac: str, token: str, ip: str, hostname: str, remote_addr: str) -> tuple[Guest, bool]:
    """(the guest, whether this was its first phone-home)."""
    guest = _guest_by_token(session, mac, token, remote_addr, for_update=True)
    ip, hostname = _clean_ip(ip), _clean_hostname(hostname)
    first = guest.step != Step.READY
    if ip:
        guest.ip = ip
    if hostname:
        guest.hostname = hostname
    guest.step = Step.READY
    guest.step_reason = ""
    audit.record(session, Actor(user_id=None, username="phone-home", remote_addr=remote_addr),
                 "guest.ready" if first else "guest.phonehome", object_type="guest", object_id=guest.id,
                 object_name=guest.name, message=f"ip {guest.ip or '-'}, hostname {guest.hostname or '-'}")
    # Only validated values (and the address Tornado parsed, as repr) reach the log line.
    log.info("guest %s phoned home from %r: ip %s, hostname %s", guest.name, remote_addr, guest.ip, guest.hostname)
    return guest, first


def owner_of(session: Session, mac: str, token: str, remote_addr: str) -> dict[str, Any]:
    """The owner's username, e-mail and SSH key, for the installer to set up their account."""
    guest = _guest_by_token(session, mac, token, remote_addr, for_update=False)
    owner = guest.owner
    if owner is None:
        return {"username": "", "email": "", "ssh_key": ""}
    return {"username": owner.username, "email": owner.email, "ssh_key": owner.ssh_key}
