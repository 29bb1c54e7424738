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

An environment's guests share one lease: their notices of a kind go out as
ONE mail about the environment (its guests listed, the environment's extend
in it), each guest's notice still recorded, so the exactly-once rule holds
per guest. Its "ready" mail waits until the environment is ready (every
tier), not each guest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from fogmachine.config import Config
from fogmachine.db.models import Environment, Guest, GuestNotice, Step, utcnow
from fogmachine.notify import Mail, Mailer


@dataclass(frozen=True)
class Pending:
    notice_ids: tuple[int, ...]  # one per guest the mail is about (an environment's: all of them)
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


def _guest_lines(guests: list[Guest]) -> str:
    return "".join(f"  {g.name}: {g.ip or 'no address yet'}{' (' + g.hostname + ')' if g.hostname else ''}\n"
                   for g in sorted(guests, key=lambda g: (g.tier or 0, g.tier_index or 0, g.name)))


def environment_mail(env: Environment, kind: str, guests: list[Guest], base: str, now: dt.datetime) -> Mail:
    """The one mail about an environment's guests for a notice of ``kind`` (ready, retired, warn-...)."""
    assert env.owner is not None
    listed = _guest_lines(guests)
    if kind == "ready":
        return Mail(env.owner.email, f"[Fogmachine] environment {env.name} is ready",
                    f"Every tier of your environment {env.name} is ready.\n\nIts guests:\n{listed}\n"
                    f"Expires: {_when(env.expires_at)}\n\n{base}/environments/{env.id}\n")
    if kind == "retired":
        return Mail(env.owner.email, f"[Fogmachine] environment {env.name} was retired",
                    f"Your environment {env.name} reached the end of its reservation: its guests were powered "
                    f"off and removed.\n\n{listed}\nPurpose: {env.purpose}\n\n{base}/\n")
    expires = env.expires_at or guests[0].expires_at or now
    left = _left(expires, now)
    return Mail(env.owner.email, f"[Fogmachine] environment {env.name} expires in {left}",
                f"Your environment {env.name} expires at {_when(expires)}, in {left}.\n"
                f"Its guests will then be powered off and removed:\n{listed}\n"
                f"Extend it (all its guests) from the dashboard or with\n"
                f"  curl -X POST -H 'Authorization: Bearer TOKEN' -H 'Content-Type: application/json' "
                f"-d '{{\"days\": 1}}' {base}/api/v1/environments/{env.id}/extend\n\n{base}/\n")


def collect(session: Session, config: Config, now: dt.datetime | None = None) -> list[Pending]:
    """Record the notices due now and return the mails to send for them."""
    now = now or utcnow()
    base = config.server_url
    recent = now - dt.timedelta(days=1)
    horizon = now + dt.timedelta(hours=max(config.warn_hours, default=0))
    live = Guest.step != Step.RETIRED
    candidates = list(session.scalars(
        select(Guest).options(joinedload(Guest.owner), joinedload(Guest.environment).joinedload(Environment.owner))
        .where(
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
    # An environment's notices of a kind: its guests, and whether the kind is mailed (a skipped warning is not).
    grouped: dict[tuple[int, str], tuple[list[Guest], bool]] = {}

    def claim(guest: Guest, kind: str, mail: Mail | None) -> None:
        if (guest.id, kind) in existing:
            return
        if guest.environment is not None:
            members, mailed = grouped.get((guest.environment.id, kind), ([], False))
            grouped[(guest.environment.id, kind)] = ([*members, guest], mailed or mail is not None)
            return
        notice_id = _claim(session, guest.id, kind, delivered=mail is None)
        if notice_id is not None and mail is not None:
            pending.append(Pending((notice_id,), mail))

    for guest in candidates:
        owner = guest.owner
        assert owner is not None
        if guest.step == Step.RETIRED:
            if owner.notify_expiry:
                claim(guest, "retired", retired_mail(guest, base))
            continue
        env_ready = guest.environment is None or guest.environment.step == "ready"
        if guest.step == Step.READY and owner.notify_ready and env_ready:
            claim(guest, "ready", ready_mail(guest, base))
        if guest.expires_at is None or guest.expires_at <= now or not owner.notify_expiry:
            continue
        due = [h for h in config.warn_hours if guest.expires_at - now <= dt.timedelta(hours=h)]
        if not due:
            continue
        nearest = min(due)
        for hours in due:
            claim(guest, warn_kind(hours), warning_mail(guest, base, now) if hours == nearest else None)

    for (_env_id, kind), (members, mailed) in grouped.items():
        env = members[0].environment
        assert env is not None
        claimed = [n for n in (_claim(session, g.id, kind, delivered=not mailed) for g in members) if n is not None]
        if claimed and mailed and env.owner is not None:
            pending.append(Pending(tuple(claimed), environment_mail(env, kind, members, base, now)))
    return pending


def _mark(session: Session, notice_ids: tuple[int, ...], delivered: bool) -> None:
    if delivered:
        session.execute(update(GuestNotice).where(GuestNotice.id.in_(notice_ids)).values(delivered=True))
    else:
        session.execute(delete(GuestNotice).where(GuestNotice.id.in_(notice_ids)))


async def run(db, config: Config, mailer: Mailer) -> int:  # type: ignore[no-untyped-def]
    """One pass: record what is due, send it, keep what was delivered. Returns mails sent."""
    pending = await db.run(collect, config)
    sent = 0
    for item in pending:
        if not mailer.enabled or not item.mail.to:
            await db.run(_mark, item.notice_ids, True)  # recorded, nowhere to send: done
            continue
        ok = await mailer.send(item.mail)
        await db.run(_mark, item.notice_ids, ok)
        sent += ok
    return sent
