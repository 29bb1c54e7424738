"""Live updates: what the one poller per process costs, and how soon a change reaches an open page.

    .venv/bin/python bench/live_updates.py [--guests 2000] [--changes 40] [--database URL]

Fogmachine runs in this process on a fresh database (SQLite by default; ``--database`` takes a
MariaDB or PostgreSQL URL of an EMPTY database) with 20 test-driver hosts and ``--guests`` guests.
The owner of some of them also checks out one real guest (a domain on a test-driver host) and opens
that guest's page: its WebSocket (``/live?guest=ID``, with the owner's login session) carries the
rows of the lists and the guest page's own parts. Then, in one run:

(a) a host event in this process: the guest's domain is paused and resumed on its host, through the
    server's own libvirt connection and behind Fogmachine's back (``--changes`` times). The time from
    the libvirt call to the message on the socket is the whole path: libvirt's event, the host read,
    hostwatch's plan and write, the COMMIT, the commit's wake of the feed, its read, the socket.
    Measured to the guest's row and to its page (sentence and steps, read with the row).
    Target: p95 under 100 ms, to the row and to the page.
(b) another process's write: a second connection pool, as another Fogmachine process would have,
    changes a guest's state ``--changes`` times; nothing wakes this process's feed, so the change
    arrives with its next poll. Target: p95 within the poll interval plus 100 ms.

Printed besides: the cost of one windowed poll (what runs every 0.4 s and after each wake) and of one
full scan (every 10 s: the stamp of every live guest, rows reloaded only where it changed), their
ratio, and the database time the poller takes per second of wall time when nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tornado.httpclient
import tornado.web
import tornado.websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, update  # noqa: E402

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import Server  # noqa: E402
from fogmachine.db.models import Guest, Host, Step, User, utcnow  # noqa: E402
from fogmachine.db.session import Database  # noqa: E402
from fogmachine.services import sessions  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.services.checkout import CheckoutRequest, checkout  # noqa: E402
from fogmachine.web.base import SESSION_COOKIE  # noqa: E402
from fogmachine.web.live.commits import ROWS, CommitWatch  # noqa: E402
from tests.support import testhosts  # noqa: E402

HOSTS = 20
TARGET_HOST_EVENT_S = 0.1
CATALOG = """\
[tiny]
description = a test-driver guest
virt_type = test
ram_mb = 256
vcpus = 1
disk_gb = 0
boot = kernel
kernel = /var/tmp/fogmachine-test/none/vmlinuz
cmdline = console=ttyS0 fm.hostname={name}
phonehome = no
"""


def make_config(tmp: Path, database: str | None) -> configmod.Config:
    uris = {f"bench{i:02d}": testhosts.write_host(tmp / "hosts", f"bench{i:02d}", cpus=64, memory_mb=262144)
            for i in range(HOSTS)}
    virthosts = testhosts.write_virthosts(tmp / "virthosts.conf", uris)
    catalog = tmp / "catalog.conf"
    catalog.write_text(CATALOG)
    extra = {"database_connection": database} if database else {}
    return configmod.load(None, environ={}, data_dir=str(tmp / "data"), virthosts=str(virthosts),
                          listen_port="0", local_catalog=str(catalog), log_level="warning",
                          resync_interval="86400", **extra)


def seed(session, guests: int) -> tuple[int, int]:
    """``guests`` guests over the hosts and 10 owners; returns (owner id, one of their guest ids)."""
    owners = [User(username=f"user{i}", password_hash="x") for i in range(10)]
    session.add_all(owners)
    session.flush()
    hosts = list(session.scalars(select(Host).order_by(Host.name)))
    now = utcnow()
    rows = []
    for i in range(guests):
        rows.append(Guest(
            name=f"guest{i:05d}", live_name=f"guest{i:05d}", domain_name=f"guest{i:05d}",
            owner_id=owners[i % len(owners)].id, host_id=hosts[i % len(hosts)].id, target="small",
            target_kind="local", ram_mb=1024, vcpus=1, purpose=f"benchmark guest {i}", state="running",
            step="ready", ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", expires_at=now + dt.timedelta(days=7)))
    session.add_all(rows)
    session.flush()
    return owners[0].id, rows[0].id


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def timed(fn, repeat: int) -> float:
    """Median seconds of ``await fn()``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def login(session, user_id: int) -> str:
    """A login session for the user, as the login page makes one; its token for the cookie."""
    _, token = sessions.start(session, user_id, "127.0.0.1", "bench/live_updates.py")
    return token


async def read_until(ws, guest_id: int, state: str) -> None:
    """Read the socket until a message says the guest is in ``state`` (others are skipped)."""
    while True:
        raw = await asyncio.wait_for(ws.read_message(), 10)
        if raw is None:
            raise RuntimeError("the server closed the socket")
        if any(g["id"] == guest_id and g["state"] == state for g in json.loads(raw)["guests"]):
            return


async def read_page(ws, guest_id: int, state: str) -> None:
    """Read the socket until the guest page's own message says the guest is in ``state``."""
    while True:
        raw = await asyncio.wait_for(ws.read_message(), 10)
        if raw is None:
            raise RuntimeError("the server closed the socket")
        message = json.loads(raw)
        if message["type"] == "page" and message["guest"]["id"] == guest_id and message["guest"]["state"] == state:
            return


async def ready_guest(ctx, owner_id: int) -> tuple[int, str, str]:
    """The owner checks out one real guest; (id, host name, domain name) once it is ready."""
    actor = Actor(user_id=owner_id, username="user0", is_admin=False)
    guest = await checkout(ctx, actor, CheckoutRequest("livebench", "tiny", 1, "bench/live_updates.py"))
    for _ in range(600):
        row = await ctx.db.run(lambda s: s.get(Guest, guest.id))
        if row.step == Step.READY and row.state == "running":
            host = await ctx.db.run(lambda s, host_id=row.host_id: s.get(Host, host_id).name)
            return guest.id, host, row.domain_name
        if row.step == Step.FAILED:
            raise RuntimeError(f"the bench guest failed: {row.step_reason}")
        await asyncio.sleep(0.05)
    raise RuntimeError("the bench guest never got ready")


def summary(latencies: list[float]) -> str:
    return (f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 95) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms over {len(latencies)}")


async def main(guests: int, changes: int, database: str | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fm-bench-live-"))
    config = make_config(tmp, database)
    server = Server(config)
    await server.start()
    other = Database(config.database_url, threads=1)  # "another process": a pool of its own
    try:
        ctx = server.ctx
        owner_id, guest_id = ctx.db.run_sync(seed, guests)
        assert server.parts is not None
        feed = server.parts.live
        await feed.poll_once(full=True)
        await asyncio.sleep(feed.overlap_s + 0.5)  # the seeded rows leave the window: steady state

        window_s = await timed(lambda: feed.poll_once(), 30)
        full_s = await timed(lambda: feed.poll_once(full=True), 10)
        duty = (window_s / feed.interval_s) + (full_s / feed.full_scan_s)

        real_id, host, domain = await ready_guest(ctx, owner_id)
        token = await ctx.db.run(login, owner_id)
        cookie = tornado.web.create_signed_value(config.cookie_secret(), SESSION_COOKIE, token).decode()
        request = tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{server.port}/live?guest={real_id}",
                                                 headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        ws = await tornado.websocket.websocket_connect(request)
        snapshot = json.loads(await ws.read_message())
        assert snapshot["type"] == "snapshot" and len(snapshot["guests"]) == guests // 10 + 1
        await read_page(ws, real_id, "running")  # the page's parts come right after the snapshot

        # (a) a host event in this process: pause and resume on the host, behind Fogmachine's back
        connection = ctx.hosts.get(host)
        wakes_before = feed.wakes
        host_latencies, to_commit, page_latencies = [], [], []
        commits: list[float] = []  # when this process committed guest or host rows (on the database thread)
        watch = CommitWatch(ctx.db.sessionmaker, lambda kinds: ROWS in kinds and commits.append(time.perf_counter()))
        try:
            for n in range(changes):
                state = "paused" if n % 2 == 0 else "running"
                del commits[:]
                started = time.perf_counter()
                if state == "paused":
                    await connection.suspend(domain)
                else:
                    await connection.resume(domain)
                await read_until(ws, real_id, state)
                host_latencies.append(time.perf_counter() - started)
                await read_page(ws, real_id, state)  # sent in the same fan-out, after the row
                page_latencies.append(time.perf_counter() - started)
                to_commit.append((commits[0] if commits else started) - started)
                await asyncio.sleep(0.05 + (n % 7) * 0.05)  # spread the changes over the poll cycle
        finally:
            watch.close()
        wakes = feed.wakes - wakes_before

        # (b) another process's write: no wake here, the next poll finds it
        loop = asyncio.get_running_loop()
        latencies = []
        for n in range(changes):
            state = "paused" if n % 2 == 0 else "running"

            def change(session, state=state):
                session.execute(update(Guest).where(Guest.id == guest_id).values(state=state, updated_at=utcnow()))

            await loop.run_in_executor(None, other.run_sync, change)
            committed = time.perf_counter()
            await read_until(ws, guest_id, state)
            latencies.append(time.perf_counter() - committed)
            await asyncio.sleep(0.05 + (n % 7) * 0.05)
        ws.close()
    finally:
        other.dispose()
        await server.stop()

    backend = config.database_url.split(":", 1)[0]
    print(f"live updates, {backend}, {guests} guests on {HOSTS} hosts, poll every {feed.interval_s} s, "
          f"full scan every {feed.full_scan_s:g} s, woken by this process's commits")
    print(f"  windowed poll      {window_s * 1000:7.2f} ms (median of 30)")
    print(f"  full scan          {full_s * 1000:7.2f} ms (median of 10)")
    print(f"  full / windowed    {full_s / window_s:7.1f} x")
    print(f"  poller busy        {duty * 100:7.2f} % of one database thread (no writes)")
    print(f"  (a) host event in this process -> socket: {summary(host_latencies)} pauses/resumes "
          f"({wakes} commit wakes)")
    print(f"      of which event -> first commit:       {summary(to_commit)}")
    print(f"      of which commit -> socket:            "
          f"{summary([total - first for total, first in zip(host_latencies, to_commit, strict=True)])}")
    print(f"      to the guest page's own message:      {summary(page_latencies)}")
    print(f"  (b) another process's commit -> socket:   {summary(latencies)} changes")
    p95_host = percentile(host_latencies, 95)
    check(f"host event -> socket p95 {p95_host * 1000:.0f} ms", f"< {TARGET_HOST_EVENT_S * 1000:.0f} ms",
          p95_host < TARGET_HOST_EVENT_S, what="same process")
    p95_page = percentile(page_latencies, 95)
    check(f"host event -> guest page p95 {p95_page * 1000:.0f} ms", f"< {TARGET_HOST_EVENT_S * 1000:.0f} ms",
          p95_page < TARGET_HOST_EVENT_S, what="guest page")
    p95_other = percentile(latencies, 95)
    limit = feed.interval_s + 0.1
    check(f"commit -> socket p95 {p95_other * 1000:.0f} ms", f"<= poll interval + 100 ms = {limit * 1000:.0f} ms",
          p95_other <= limit, what="other process")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--database", help="an EMPTY MariaDB/PostgreSQL database URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.guests, args.changes, args.database))
    sys.exit(exit_status())
