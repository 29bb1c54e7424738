"""The guest list's serialized answers, cached by the version of the guests table.

Listing 1,000 guests costs tens of milliseconds of ORM loading and JSON
encoding, while the list changes far less often than scripts and dashboards
poll it. So each answer (per visibility and filter) is kept as bytes together
with the version of the data it was built from, and served again while that
version holds.

The version has two parts:

* a counter of this process's own commits that touched guests (SQLAlchemy
  session events on the database's session factory): exact, whatever the
  clock or the database's timestamp resolution;
* a fingerprint of the table in one cheap indexed query: row count, highest
  id, newest ``updated_at``. It catches changes made by other Fogmachine
  processes sharing the database. It is read at most every
  ``FINGERPRINT_TTL`` seconds (0.1 s) and shared by the requests in between:
  a database round trip on a thread costs about as much as sending the whole
  list, so reading it per request would halve the throughput. Another
  process's change therefore shows within 0.1 s; this process's own, at once.

The fingerprint misses a change only when a writer stamps ``updated_at`` no
later than the newest stamp already there: within the same second on MariaDB
(DATETIME keeps whole seconds) or from a process whose clock runs behind. So
an answer built while the newest change is younger than ``RECENT_S`` is not
reused: such changes are caught as long as clocks agree to within that much.

An answer also carries an ETag derived from it, so a poller sending
If-None-Match gets a 304 without the body, and Tornado need not hash 300 KB
per request to make one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from fogmachine.db.models import Guest, utcnow
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter, guest_to_dict, list_guests
from fogmachine.web.base import to_json

if TYPE_CHECKING:
    from fogmachine.db.session import Database

RECENT_S = 3.0
FINGERPRINT_TTL = 0.1
MAX_BYTES = 64 * 1024 * 1024

Fingerprint = tuple[int, int, dt.datetime | None]


def fingerprint(session: Session) -> Fingerprint:
    row = session.execute(select(func.count(), func.max(Guest.id), func.max(Guest.updated_at))).one()
    return int(row[0]), int(row[1] or 0), row[2]


@dataclass(frozen=True)
class Answer:
    version: tuple[int, Fingerprint]
    body: bytes
    etag: str
    built_at: dt.datetime


def _build(session: Session, actor: Actor, flt: GuestFilter) -> tuple[Fingerprint, bytes]:
    # The fingerprint first: a change landing between the two reads makes the
    # body newer than its version, never older, so the next request rebuilds.
    print_ = fingerprint(session)
    guests, total = list_guests(session, actor, flt)
    payload = {"guests": [guest_to_dict(g) for g in guests], "total": total, "offset": flt.offset,
               "limit": flt.limit}
    return print_, to_json(payload).encode()


def _visibility(actor: Actor) -> tuple[Any, ...]:
    return ("admin",) if actor.is_admin else ("user", actor.user_id)


def _touches_guests(session: Session) -> bool:
    return any(isinstance(o, Guest) for o in (*session.new, *session.dirty, *session.deleted))


class GuestListCache:
    def __init__(self, db: Database, max_bytes: int = MAX_BYTES, recent_s: float = RECENT_S,
                 fingerprint_ttl: float = FINGERPRINT_TTL) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.recent_s = recent_s
        self.fingerprint_ttl = fingerprint_ttl
        self.local_version = 0
        self.fingerprints = 0
        self._print: tuple[float, Fingerprint] | None = None
        self._reading: asyncio.Future[Fingerprint] | None = None
        self._answers: OrderedDict[tuple[Any, ...], Answer] = OrderedDict()
        self._bytes = 0
        self._building: dict[tuple[Any, ...], asyncio.Future[Answer]] = {}
        self.hits = 0
        self.builds = 0
        self._watch(db)

    def _watch(self, db: Database) -> None:
        factory = db.sessionmaker

        @event.listens_for(factory, "after_flush")
        def _note(session: Session, _context: Any) -> None:
            if _touches_guests(session):
                session.info["fm_guests_changed"] = True

        @event.listens_for(factory, "do_orm_execute")
        def _bulk(state: Any) -> None:
            if (state.is_update or state.is_delete or state.is_insert) and any(
                    m.class_ is Guest for m in state.all_mappers):
                state.session.info["fm_guests_changed"] = True

        @event.listens_for(factory, "after_commit")
        def _bump(session: Session) -> None:
            if session.info.pop("fm_guests_changed", False):
                self.local_version += 1

        @event.listens_for(factory, "after_rollback")
        def _forget(session: Session) -> None:
            session.info.pop("fm_guests_changed", None)

    def _settled(self, print_: Fingerprint, now: dt.datetime) -> bool:
        newest = print_[2]
        return newest is None or (now - newest).total_seconds() >= self.recent_s

    async def fingerprint(self) -> Fingerprint:
        """The table's fingerprint, read at most every ``fingerprint_ttl`` seconds, one read at a time."""
        known = self._print
        if known is not None and time.monotonic() - known[0] < self.fingerprint_ttl:
            return known[1]
        if self._reading is not None:
            return await asyncio.shield(self._reading)
        future: asyncio.Future[Fingerprint] = asyncio.get_running_loop().create_future()
        self._reading = future
        started = time.monotonic()  # the memo ages from the read's start: it may miss what commits during it
        try:
            print_ = await self.db.run(fingerprint)
            self.fingerprints += 1
            self._print = (started, print_)
            future.set_result(print_)
            return print_
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._reading = None

    async def get(self, actor: Actor, flt: GuestFilter) -> Answer:
        key = (*_visibility(actor), flt)
        local = self.local_version
        print_ = await self.fingerprint()
        found = self._answers.get(key)
        if found is not None and found.version == (local, print_) and self._settled(print_, found.built_at):
            self._answers.move_to_end(key)
            self.hits += 1
            return found
        build_key = (key, local, print_)
        pending = self._building.get(build_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._building[build_key] = future
        try:
            built_print, body = await self.db.run(_build, actor, flt)
            answer = Answer((local, built_print), body, '"' + hashlib.sha1(body).hexdigest() + '"', utcnow())
            self.builds += 1
            self._store(key, answer)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._building[build_key]

    def _store(self, key: tuple[Any, ...], answer: Answer) -> None:
        old = self._answers.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        if len(answer.body) > self.max_bytes:
            return
        self._answers[key] = answer
        self._bytes += len(answer.body)
        while self._bytes > self.max_bytes:
            _, evicted = self._answers.popitem(last=False)
            self._bytes -= len(evicted.body)
