"""The database poller of live updates: it reads what changed and fans it out to the open pages.

Why the database and not in-process events: several Fogmachine processes may
share one database, and a change made by any of them (a libvirt event seen by
process B, a phone-home answered by process C, a CLI command) must reach a
page served by process A. So each process runs ONE poller (``LiveFeed``) that
reads what changed and fans it out over WebSockets to its own browsers; the
database pays one small query per process per interval, not one per browser.

How changes are found:

* Hosts are few (tens): every poll reads them all and diffs them.
* Guests are many: every poll reads the rows whose ``updated_at`` falls in a
  window reaching ``overlap_s`` back from now, plus the ids of all live guests
  (to see deletions). The window overlaps the previous one on purpose:
  MariaDB's DATETIME has one-second resolution, a transaction commits a little
  after it stamped ``updated_at``, and another machine's clock may lag a
  little. Rows seen again are diffed by content, so an overlap costs a few
  rows read twice, never a duplicate message.
* Every ``full_scan_s`` a full read of live guests catches anything a
  window missed (a clock skewed by more than the overlap, a transaction held
  open longer than it) and re-checks the subscribed users (disabled, demoted)
  and their login sessions (a socket whose session was logged out, from any
  process, is closed).

When: every ``interval_s`` (0.4 s) for what other processes wrote, and at
once when THIS process commits a change to guests or hosts (``commits.py``:
session hooks on the database's session factory wake the poll loop). Wakes
coalesce: a wake polls at once, and however many commits land during a poll,
one more poll follows it, no sooner than ``min_gap_s`` (20 ms) after it, so
a burst of writes cannot keep a database thread busy with the feed's reads. A commit to users
or login sessions makes the next poll a full one, which re-checks who may
still listen: a logout closes that page's socket at once.

Who gets what: a user's socket receives only their own managed guests; an
administrator's receives every guest; everyone receives host states (any
logged-in user may see the hosts page).

The guest page's socket (``/live?guest=ID``) also follows that one guest: the
page's sentence, reason, ssh line and steps (``payloads.page_payload``), read
with its row whenever a poll reads the row (it changed) and, for a page just
opened, after its snapshot. Pages are read only for guests some socket
follows, and sent only to a socket whose user may see the guest, by the same
rule as the rows: another user's guest page says nothing of it. A full read
reads every followed page again, so a change the window missed, or a guest
deleted outright, is caught there too.

At about 420 lines this is one thing: one poll, from what it asks the database
(which depends on the cache and on who subscribes) to what each subscriber is
sent (which depends on what the read found); ``_read`` could live apart, but
its arguments are the feed's state and nothing else uses it.

How a socket ends: ``SESSION_ENDED`` (4001) only when its user was disabled
or its login session ended, which the page takes as final ("log in");
``GOING_AWAY`` (1001) when the feed stops with the server, after which the
page reconnects to the next server and resynchronises from its snapshot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from fogmachine.db.models import Guest, Host, Step, User, utcnow
from fogmachine.services import guestview, sessions
from fogmachine.services.hosts import host_dicts
from fogmachine.web.live.commits import PEOPLE, CommitWatch
from fogmachine.web.live.payloads import Messages, guest_payload, page_payload

if TYPE_CHECKING:
    from fogmachine.context import Context

log = logging.getLogger(__name__)

# WebSocket close codes and reasons a page acts on (static/live.js).
SESSION_ENDED = (4001, "session ended")  # final: the page says to log in again
GOING_AWAY = (1001, "server going away")  # the page reconnects with backoff


@dataclass
class Snapshot:
    """What one poll read from the database."""

    hosts: list[dict[str, Any]]
    guests: list[dict[str, Any]]
    live_ids: set[int] | None  # None: the same live guests as the cache, plus new ones read
    stamps: dict[int, dt.datetime]  # updated_at of each guest read
    users: dict[int, tuple[bool, bool]] = field(default_factory=dict)  # id -> (active, admin)
    live_sessions: set[int] = field(default_factory=set)  # of the subscribers' sessions, those not ended
    pages: dict[int, dict[str, Any]] = field(default_factory=dict)  # followed guests read, as their pages show them


def _guests(condition: Any) -> Any:
    return select(Guest).options(joinedload(Guest.owner), joinedload(Guest.host)).where(condition)


def _load(session: Session, condition: Any, followed: frozenset[int] = frozenset(),
          pages: dict[int, dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], dict[int, dt.datetime]]:
    """The rows ``condition`` picks; of those whose page a socket follows, their page into ``pages``."""
    guests, stamps = [], {}
    for guest in session.scalars(_guests(condition)).unique():
        guests.append(guest_payload(guest))
        stamps[guest.id] = guest.updated_at
        if pages is not None and guest.id in followed:
            pages[guest.id] = page_payload(guest, guestview.status_parts(session, guest))
    return guests, stamps


def _read(session: Session, since: dt.datetime | None, known: dict[int, dt.datetime] | None, user_ids: list[int],
          overcommit: float, digest: tuple[int, int] = (-1, -1), session_ids: tuple[int, ...] = (),
          lifetimes: sessions.Lifetimes | None = None, followed: frozenset[int] = frozenset(),
          reread: frozenset[int] = frozenset()) -> Snapshot:
    """A window read (``since``): the rows stamped since then, retired ones included (they leave
    the pages), and the ids of the live guests only when their count and sum differ from
    ``digest`` (the cache's): a deletion changes them, and reading 20,000 ids every 0.4 s would
    cost more than the rest of the poll. A full read: the stamp of every live guest, and the rows
    whose stamp differs from ``known`` (loading and serializing every row costs ~50 times a
    window read); it also catches the rare deletion plus insertion that keeps count and sum.
    Either read also gives the page of each ``followed`` guest whose row it read, and of each in
    ``reread`` (a page just opened, or every followed page on a full read) whether its row changed
    or not; a guest that no longer exists has none."""
    pages: dict[int, dict[str, Any]] = {}
    hosts = host_dicts(session, list(session.scalars(select(Host).order_by(Host.name))), overcommit)
    live_ids: set[int] | None
    if since is not None:
        guests, stamps = _load(session, Guest.updated_at >= since, followed, pages)
        count, total = session.execute(select(func.count(), func.coalesce(func.sum(Guest.id), 0))
                                       .where(Guest.step != Step.RETIRED)).one()
        live_ids = None
        if (int(count), int(total)) != digest:
            live_ids = set(session.scalars(select(Guest.id).where(Guest.step != Step.RETIRED)))
    else:
        current = dict(session.execute(select(Guest.id, Guest.updated_at).where(Guest.step != Step.RETIRED)).all())
        live_ids = set(current)
        stale = [gid for gid, stamp in current.items() if (known or {}).get(gid) != stamp]
        guests, stamps = [], {}
        for start in range(0, len(stale), 500):
            more, more_stamps = _load(session, Guest.id.in_(stale[start:start + 500]), followed, pages)
            guests += more
            stamps.update(more_stamps)
    users: dict[int, tuple[bool, bool]] = {}
    if user_ids:
        for uid, active, admin in session.execute(
                select(User.id, User.is_active, User.is_admin).where(User.id.in_(user_ids))):
            users[uid] = (active, admin)
    live_sessions = sessions.still_alive(session, session_ids, lifetimes) if session_ids and lifetimes else set()
    unread = sorted(reread - pages.keys())
    if unread:
        for guest in session.scalars(_guests(Guest.id.in_(unread))).unique():
            pages[guest.id] = page_payload(guest, guestview.status_parts(session, guest))
    return Snapshot(hosts, guests, live_ids, stamps, users, live_sessions, pages)


class Subscriber:
    """One open page. ``send`` must not block; it gets one message, already JSON (``_fan_out``)."""

    def __init__(self, user_id: int, is_admin: bool, session_id: int | None = None,
                 guest_page: int | None = None) -> None:
        self.user_id = user_id
        self.is_admin = is_admin
        self.session_id = session_id
        self.guest_page = guest_page  # the guest whose page this is, if it is one; its page follows it
        # The snapshot is owed after the first poll numbered above this; None once sent.
        self.snapshot_after: int | None = None

    def may_see(self, guest: dict[str, Any]) -> bool:
        return self.is_admin or (guest.get("managed", True) and guest.get("owner_id") == self.user_id)

    def send(self, text: str) -> None:
        raise NotImplementedError

    def close(self, code: int, reason: str) -> None:
        """End the subscription's connection: ``SESSION_ENDED`` when the user behind it was disabled or
        their session ended, ``GOING_AWAY`` when the server stops."""


class LiveFeed:
    """The one database poller of this process, and its subscribers (a server Component)."""

    def __init__(self, ctx: Context, *, interval_s: float = 0.4, overlap_s: float = 3.0,
                 full_scan_s: float = 10.0, min_gap_s: float = 0.02) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.overlap_s = overlap_s
        self.full_scan_s = full_scan_s
        self.hosts: dict[str, dict[str, Any]] = {}
        self.guests: dict[int, dict[str, Any]] = {}
        self.stamps: dict[int, dt.datetime] = {}  # updated_at of each cached guest, for the full scan
        # The pages of the guests some socket follows, as last read; kept only while followed (a guest no
        # socket followed during a read may have changed unread), so a page new to the cache is read afresh.
        self.pages: dict[int, dict[str, Any]] = {}
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_full = 0.0
        self._last_end = 0.0  # when the poll loop's last poll ended (monotonic)
        self._polls_started = 0
        self._failing = False
        self.polls = 0
        self.wakes = 0  # commits of this process that woke the poll loop (coalesced ones included)
        self.started = False  # once started, /live takes sockets (before, it answers 503)
        self._wake: asyncio.Event | None = None
        self._full_owed = False  # a commit to users or sessions: the next poll re-checks the subscribers
        self._watch: CommitWatch | None = None

    async def start(self) -> None:
        self.started = True
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()

        def woken(kinds: frozenset[str]) -> None:
            """On the committing thread: hand the wake to the IOLoop (an Event is not thread-safe)."""
            try:
                loop.call_soon_threadsafe(self._woken, wake, PEOPLE in kinds)
            except RuntimeError:
                pass  # the loop is closed: nobody listens any more

        self._watch = CommitWatch(self.ctx.db.sessionmaker, woken)
        await self.poll_once(full=True)
        self._task = asyncio.create_task(self._run(), name="fogmachine-live-feed")

    def _woken(self, wake: asyncio.Event, people: bool) -> None:
        self.wakes += 1
        self._full_owed = self._full_owed or people
        wake.set()

    async def stop(self) -> None:
        """Take the commit hooks off, end the poll loop, and close every socket as going away: the
        pages reconnect to whichever server answers next, their sessions being still good."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a cancel of stop() itself still raises
            self._task = None
        self._wake = None
        self.started = False
        for sub in list(self.subscribers):
            sub.close(*GOING_AWAY)
        self.subscribers.clear()

    async def _next_turn(self) -> None:
        """Wait for the poll interval to pass or a commit's wake, whichever comes first."""
        wake = self._wake
        if wake is None:
            await asyncio.sleep(self.interval_s)
            return
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as the wake
            # completes (CPython gh-86296), and stop()'s cancel was lost that way: the loop polled on and
            # the server's stop waited for it forever (found by a CI run, 3 of 4 workers hung).
            async with asyncio.timeout(self.interval_s):
                await wake.wait()
        except TimeoutError:
            return
        # Woken: at once, unless the last poll ended less than ``min_gap_s`` ago (a burst of commits
        # must not keep a database thread busy with back-to-back reads); commits landing meanwhile join.
        rest = self._last_end + self.min_gap_s - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        wake.clear()  # a wake after this is owed a poll of its own: it may have missed this one's read

    async def _run(self) -> None:
        while True:
            await self._next_turn()
            full = self._full_owed or time.monotonic() - self._last_full >= self.full_scan_s
            self._full_owed = False
            try:
                await self.poll_once(full=full)
                self._last_end = time.monotonic()
                if self._failing:
                    log.info("live updates: the database answers again")
                    self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A database outage must not kill the feed; say so once, not every 0.4 s.
                if not self._failing:
                    log.warning("live updates paused: %s", exc)
                    self._failing = True
                await asyncio.sleep(min(5.0, self.interval_s * 10))

    async def poll_once(self, *, full: bool = False) -> None:
        """Read the changes, update the cache, send each subscriber what it may see."""
        self._polls_started += 1
        poll = self._polls_started
        since = None if full else utcnow() - dt.timedelta(seconds=self.overlap_s)
        # A full read re-checks the subscribers there are now; one that subscribes while it runs is not
        # in its answer, and must not be taken for a disabled user or an ended session.
        checked = list(self.subscribers) if full else []
        user_ids = sorted({s.user_id for s in checked})
        known = dict(self.stamps) if full else None  # a copy: the read runs on another thread
        digest = (len(self.guests), sum(self.guests))
        session_ids = tuple(sorted({s.session_id for s in checked if s.session_id is not None}))
        followed = frozenset(s.guest_page for s in self.subscribers if s.guest_page is not None)
        reread = followed if full else followed - self.pages.keys()
        snap = await self.ctx.db.run(_read, since, known, user_ids, self.ctx.config.cpu_overcommit, digest,
                                     session_ids, sessions.Lifetimes.of(self.ctx.config), followed, reread)
        self.stamps.update(snap.stamps)
        live_ids = snap.live_ids
        if live_ids is None:
            live_ids = set(self.guests) | {g["id"] for g in snap.guests if g["step"] != Step.RETIRED}
        self.polls += 1
        if full:
            self._last_full = time.monotonic()
            self._recheck_users(checked, snap.users, snap.live_sessions)
        changed_hosts = []
        seen_hosts = set()
        for host in snap.hosts:
            seen_hosts.add(host["name"])
            if self.hosts.get(host["name"]) != host:
                self.hosts[host["name"]] = host
                changed_hosts.append(host)
        for name in set(self.hosts) - seen_hosts:
            del self.hosts[name]
        # (before, after) pairs: a page that could see ``before`` but may not see ``after`` (SQLite
        # reuses the id of a deleted last row; an owner could change) is told the guest is gone.
        changed_guests: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
        for guest in snap.guests:
            gid = guest["id"]
            if guest["step"] == Step.RETIRED or gid not in live_ids:
                before = self.guests.pop(gid, None)
                if before is not None:
                    changed_guests.append((before, guest))  # clients drop the row
                continue
            before = self.guests.get(gid)
            if before != guest:
                self.guests[gid] = guest
                changed_guests.append((before, guest))
        gone = [self.guests.pop(gid) for gid in set(self.guests) - live_ids]
        for gid in set(self.stamps) - live_ids:
            del self.stamps[gid]
        changed_pages = self._update_pages(followed, reread, snap.pages)
        self._fan_out(poll, changed_hosts, changed_guests, gone, changed_pages)

    def _update_pages(self, followed: frozenset[int], reread: frozenset[int],
                      pages: dict[int, dict[str, Any]]) -> set[int]:
        """Keep the pages of the guests followed through this read; the ids of those that changed."""
        for gid in self.pages.keys() - followed:
            del self.pages[gid]  # nobody followed it through this read: it may have changed unseen
        for gid in reread - pages.keys():
            self.pages.pop(gid, None)  # read again and not there: deleted outright (``gone`` says so)
        changed = set()
        for gid, page in pages.items():
            if self.pages.get(gid) != page:
                self.pages[gid] = page
                changed.add(gid)
        return changed

    def _recheck_users(self, checked: list[Subscriber], users: dict[int, tuple[bool, bool]],
                       live_sessions: set[int]) -> None:
        for sub in checked:
            if sub not in self.subscribers:
                continue  # gone while the read ran
            active, admin = users.get(sub.user_id, (False, False))
            if not active or (sub.session_id is not None and sub.session_id not in live_sessions):
                self.unsubscribe(sub)
                sub.close(*SESSION_ENDED)
            else:
                sub.is_admin = admin

    def _fan_out(self, poll: int, hosts: list[dict[str, Any]],
                 guests: list[tuple[dict[str, Any] | None, dict[str, Any]]], gone: list[dict[str, Any]],
                 pages: set[int]) -> None:
        """Send each page what it may see. Pages that may see the same (administrators, tabs of one
        user, everyone when only hosts changed) get the same message, encoded once for all of them.
        A guest page gets its guest's page after its snapshot and whenever that changed."""
        messages = Messages()
        for sub in list(self.subscribers):
            if sub.snapshot_after is not None:
                if poll > sub.snapshot_after:
                    sub.snapshot_after = None
                    self._send(sub, messages, "snapshot", list(self.hosts.values()),
                               [g for g in self.guests.values() if sub.may_see(g)], [])
                    self._send_page(sub, messages)
                continue  # no updates before its snapshot: the snapshot has them
            mine = [after for _, after in guests if sub.may_see(after)]
            mine_gone = [g["id"] for g in gone if sub.may_see(g)]
            mine_gone += [after["id"] for before, after in guests
                          if before is not None and sub.may_see(before) and not sub.may_see(after)]
            if hosts or mine or mine_gone:
                self._send(sub, messages, "update", hosts, mine, mine_gone)
            if sub.guest_page in pages:
                self._send_page(sub, messages)

    def _send_page(self, sub: Subscriber, messages: Messages) -> None:
        """The page of the guest ``sub`` follows, if it may see it: for anyone else it does not exist."""
        page = self.pages.get(sub.guest_page) if sub.guest_page is not None else None
        if page is not None and sub.may_see(page) and sub in self.subscribers:
            self._deliver(sub, messages.page(page))

    def _send(self, sub: Subscriber, messages: Messages, kind: str, hosts: list[dict[str, Any]],
              guests: list[dict[str, Any]], gone: list[int]) -> None:
        self._deliver(sub, messages.text(kind, hosts, guests, gone))

    def _deliver(self, sub: Subscriber, text: str) -> None:
        try:
            sub.send(text)
        except Exception:
            log.debug("dropping a live subscriber that failed to take a message", exc_info=True)
            self.unsubscribe(sub)

    def subscribe(self, sub: Subscriber) -> None:
        """Add a page; it gets a snapshot of everything it may see after the next poll.

        Not from the cache at once: the cache may be older than the page the
        browser just rendered, and a snapshot older than the page would remove a
        guest the page rightly shows. A poll that *starts* after the subscription
        read the database after the page did.
        """
        sub.snapshot_after = self._polls_started
        self.subscribers.add(sub)
        if self._wake is not None:
            self._wake.set()  # its snapshot at the next poll, not an interval from now

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

