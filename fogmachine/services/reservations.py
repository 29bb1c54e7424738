"""Leases: extending a reservation.

Extend adds N days to the guest's *current* expiry (not to now), and never
beyond ``max_lease_days`` after the guest was created. A retired guest cannot
be extended.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from fogmachine.config import Config
from fogmachine.db.models import Guest, Step, utcnow
from fogmachine.errors import Conflict, ValidationError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.services.guests import get_guest


def validate_days(days: object, maximum: int, field: str = "days") -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        try:
            days = int(str(days))
        except ValueError:
            raise ValidationError(f"{field} must be a whole number of days", field=field) from None
    if not 1 <= days <= maximum:
        raise ValidationError(f"{field} must be between 1 and {maximum}", field=field)
    return days


def extended(name: str, expires_at: dt.datetime | None, created_at: dt.datetime, days: int,
             max_lease_days: int) -> dt.datetime:
    """The expiry ``days`` later than ``expires_at`` (or now), or ValidationError (field ``days``) when that
    passes the longest lease after ``created_at``: one rule for a guest's lease and an environment's."""
    current = expires_at or utcnow()
    new_expiry = current + dt.timedelta(days=days)
    limit = created_at + dt.timedelta(days=max_lease_days)
    if new_expiry > limit:
        room = max(0, (limit - current).days)
        raise ValidationError(
            f"extending {name} by {days} days would pass the longest lease of {max_lease_days} days; "
            f"at most {room} more day(s) are possible", field="days", details={"max_extension_days": room})
    return new_expiry


def extend(session: Session, config: Config, actor: Actor, guest_id: int, days: object) -> Guest:
    actor.require_write()
    guest = get_guest(session, actor, guest_id, for_update=True)
    try:
        days = validate_days(days, config.max_days)
    except ValidationError as exc:  # said beside one guest of a list, or read in a log: name which
        raise ValidationError(f"{guest.name}: {exc.message}", field="days") from None
    if guest.step == Step.RETIRED or not guest.managed:
        raise Conflict(f"guest {guest.name} is retired and cannot be extended")
    new_expiry = extended(guest.name, guest.expires_at, guest.created_at, days, config.max_lease_days)
    guest.expires_at = new_expiry
    audit.record(session, actor, "guest.extend", object_type="guest", object_id=guest.id, object_name=guest.name,
                 message=f"+{days} days, now expires {new_expiry:%Y-%m-%d %H:%M} UTC")
    return guest
