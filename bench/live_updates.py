"""Live updates: what the one poller per process costs, and how soon a change reaches an open page.

    .venv/bin/python bench/live_updates.py [--guests 2000] [--changes 40] [--database URL]

Fogmachine runs in this process on a fresh database (SQLite by default; ``--database`` takes a
MariaDB or PostgreSQL URL of an EMPTY database) with 20 test-driver hosts and ``--guests`` guests.
A browser's WebSocket (``/live``) is opened as the owner of some of them; then a second connection
pool, as another Fogmachine process would have, changes one guest's state ``--changes`` times and
the time from its COMMIT to the message arriving on the socket is measured.

Printed, side by side from one run: the cost of one windowed poll (what runs every 0.4 s) and of
one full scan (every 10 s: the stamp of every live guest, rows reloaded only where it changed),
their ratio, the database time the poller takes per second of wall time, and the commit-to-page
latency (median, p95, max) against the one-second target.
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
from fogmachine.db.models import Guest, Host, User, utcnow  # noqa: E402
from fogmachine.db.session import Database  # noqa: E402
from fogmachine.web.base import SESSION_COOKIE  # noqa: E402
from tests.support import testhosts  # noqa: E402

HOSTS = 20


def make_config(tmp: Path, database: str | None) -> configmod.Config:
    uris = {f"bench{i:02d}": testhosts.write_host(tmp / "hosts", f"bench{i:02d}", cpus=64, memory_mb=262144)
            for i in range(HOSTS)}
    virthosts = testhosts.write_virthosts(tmp / "virthosts.conf", uris)
    extra = {"database_connection": database} if database else {}
    return configmod.load(None, environ={}, data_dir=str(tmp / "data"), virthosts=str(virthosts),
                          listen_port="0", local_catalog=str(ROOT / "catalog.conf"), log_level="warning",
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

        cookie = tornado.web.create_signed_value(config.cookie_secret(), SESSION_COOKIE, str(owner_id)).decode()
        request = tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{server.port}/live",
                                                 headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
        ws = await tornado.websocket.websocket_connect(request)
        snapshot = json.loads(await ws.read_message())
        assert snapshot["type"] == "snapshot" and len(snapshot["guests"]) == guests // 10

        latencies = []
        loop = asyncio.get_running_loop()
        for n in range(changes):
            state = "paused" if n % 2 == 0 else "running"

            def change(session, state=state):
                session.execute(update(Guest).where(Guest.id == guest_id).values(state=state, updated_at=utcnow()))

            await loop.run_in_executor(None, other.run_sync, change)
            committed = time.perf_counter()
            while True:
                message = json.loads(await asyncio.wait_for(ws.read_message(), 10))
                if any(g["id"] == guest_id and g["state"] == state for g in message["guests"]):
                    break
            latencies.append(time.perf_counter() - committed)
            await asyncio.sleep(0.05 + (n % 7) * 0.05)  # spread the changes over the poll cycle
        ws.close()
    finally:
        other.dispose()
        await server.stop()

    backend = config.database_url.split(":", 1)[0]
    print(f"live updates, {backend}, {guests} guests on {HOSTS} hosts, poll every {feed.interval_s} s, "
          f"full scan every {feed.full_scan_s:g} s")
    print(f"  windowed poll      {window_s * 1000:7.2f} ms (median of 30)")
    print(f"  full scan          {full_s * 1000:7.2f} ms (median of 10)")
    print(f"  full / windowed    {full_s / window_s:7.1f} x")
    print(f"  poller busy        {duty * 100:7.2f} % of one database thread")
    print(f"  commit -> socket   median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"over {changes} changes (target 1000 ms; max / target {max(latencies):.2f})")
    check(f"commit -> socket max {max(latencies) * 1000:.0f} ms", "<= 1000 ms", max(latencies) <= 1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guests", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--database", help="an EMPTY MariaDB/PostgreSQL database URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.guests, args.changes, args.database))
    sys.exit(exit_status())
