"""Notices to owners: expiry warnings, "your guest is ready", "your guest was retired".

Each notice is first recorded as a ``GuestNotice`` row whose unique
(guest, kind) pair makes it go out exactly once, even when two processes look
at the same guest at once; only the process whose insert succeeded sends it.
A message that cannot be delivered has its row removed, so the next run tries
again while the notice is still due.

Warnings: of the configured thresholds (``warn_hours``, default 72, 24 and 1
hours before expiry) only the most imminent one that is due is sent; larger
ones passed at the same time are recorded as skipped, so a one-day checkout
does not get a "3 days left" mail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from fogmachine.config import Config
from fogmachine.db.models import Guest, GuestNotice, Step, utcnow
from fogmachine.notify import Mail, Mailer


@dataclass(frozen=True)
class Pending:
    notice_id: int
    mail: Mail


def warn_kind(hours: float) -> str:
    return f"warn-{hours:g}h"


def _claim(session: Session, guest_id: int, kind: str, delivered: bool = False) -> int | None:
    try:
        with session.begin_nested():
            notice = GuestNotice(guest_id=guest_id, kind=kind, delivered=delivered)
            session.add(notice)
            session.flush()
    except IntegrityError:
        return None
    return notice.id


def skip_retired_mail(session: Session, guest_id: int) -> None:
    """A deleted guest is retired too (its row stays as history), but nobody must be told that its
    reservation ended: the "retired" notice is recorded as done, so ``collect`` never mails it."""
    _claim(session, guest_id, "retired", delivered=True)


def _left(expires_at: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0, int((expires_at - now).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} day(s) {hours} hour(s)"
    return f"{hours} hour(s) {rest // 60} minute(s)" if hours else f"{rest // 60} minute(s)"


def _when(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "never"


def ready_mail(guest: Guest, base: str) -> Mail:
    assert guest.owner is not None
    return Mail(guest.owner.email, f"[Fogmachine] {guest.name} is ready",
                f"Your guest {guest.name} is ready.\n\nIP: {guest.ip}\nHostname: {guest.hostname}\n"
                f"Expires: {_when(guest.expires_at)}\n\n{base}/\n")


def retired_mail(guest: Guest, base: str) -> Mail:
    assert guest.owner is not None
    return Mail(guest.owner.email, f"[Fogmachine] {guest.name} was retired",
                f"Your guest {guest.name} reached the end of its reservation and was retired: "
                f"powered off and removed.\n\nPurpose: {guest.purpose}\n\n{base}/\n")


def warning_mail(guest: Guest, base: str, now: dt.datetime) -> Mail:
    assert guest.owner is not None and guest.expires_at is not None
    left = _left(guest.expires_at, now)
    return Mail(guest.owner.email, f"[Fogmachine] {guest.name} expires in {left}",
                f"Your guest {guest.name} expires at {_when(guest.expires_at)}, in {left}.\n"
                f"It will then be powered off and removed. Extend it from the dashboard or with\n"
                f"  curl -X POST -H 'Authorization: Bearer TOKEN' -H 'Content-Type: application/json' "
                f"-d '{{\"days\": 1}}' {base}/api/v1/guests/{guest.id}/extend\n\n{base}/\n")


def collect(session: Session, config: Config, now: dt.datetime | None = None) -> list[Pending]:
    """Record the notices due now and return the mails to send for them."""
    now = now or utcnow()
    base = config.server_url
    recent = now - dt.timedelta(days=1)
    horizon = now + dt.timedelta(hours=max(config.warn_hours, default=0))
    live = Guest.step != Step.RETIRED
    candidates = list(session.scalars(
        select(Guest).options(joinedload(Guest.owner)).where(
            Guest.managed.is_(True), Guest.owner_id.is_not(None),
            (live & (Guest.expires_at <= horizon))
            | ((Guest.step == Step.READY) & ~exists().where(GuestNotice.guest_id == Guest.id,
                                                              GuestNotice.kind == "ready"))
            | (~live & (Guest.retired_at >= recent)),
        )
    ).unique())
    ids = [g.id for g in candidates]
    existing: set[tuple[int, str]] = set(session.execute(
        select(GuestNotice.guest_id, GuestNotice.kind).where(GuestNotice.guest_id.in_(ids))
    )) if ids else set()
    pending: list[Pending] = []

    def claim(guest: Guest, kind: str, mail: Mail | None) -> None:
        if (guest.id, kind) in existing:
            return
        notice_id = _claim(session, guest.id, kind, delivered=mail is None)
        if notice_id is not None and mail is not None:
            pending.append(Pending(notice_id, mail))

    for guest in candidates:
        owner = guest.owner
        assert owner is not None
        if guest.step == Step.RETIRED:
            if owner.notify_expiry:
                claim(guest, "retired", retired_mail(guest, base))
            continue
        if guest.step == Step.READY and owner.notify_ready:
            claim(guest, "ready", ready_mail(guest, base))
        if guest.expires_at is None or guest.expires_at <= now or not owner.notify_expiry:
            continue
        due = [h for h in config.warn_hours if guest.expires_at - now <= dt.timedelta(hours=h)]
        if not due:
            continue
        nearest = min(due)
        for hours in due:
            claim(guest, warn_kind(hours), warning_mail(guest, base, now) if hours == nearest else None)
    return pending


def _mark(session: Session, notice_id: int, delivered: bool) -> None:
    if delivered:
        session.execute(update(GuestNotice).where(GuestNotice.id == notice_id).values(delivered=True))
    else:
        session.execute(delete(GuestNotice).where(GuestNotice.id == notice_id))


async def run(db, config: Config, mailer: Mailer) -> int:  # type: ignore[no-untyped-def]
    """One pass: record what is due, send it, keep what was delivered. Returns mails sent."""
    pending = await db.run(collect, config)
    sent = 0
    for item in pending:
        if not mailer.enabled or not item.mail.to:
            await db.run(_mark, item.notice_id, True)  # recorded, nowhere to send: done
            continue
        ok = await mailer.send(item.mail)
        await db.run(_mark, item.notice_id, ok)
        sent += ok
    return sent
