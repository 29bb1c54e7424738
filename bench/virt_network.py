"""The fleet over a real network round trip: Fogmachine's host calls against raw calls over the same link.

    .venv/bin/python bench/virt_network.py [--hosts 100] [--domains 50] [--rtt-ms 2,20] [--rounds 9]

Needs root: it builds bench/delaylink.py's network namespace, with one libvirtd serving every
host file as its own host and a forwarder that delays each chunk by half the round trip in each
direction. The in-process test driver answers in microseconds, so it hides what a network costs;
this is what decides how host calls should run (issue 12, item 7).

For each round trip, in one run, against the raw-call baseline over the same link (the fewest
calls, on 1, 4, 16 and 100 threads, the best of them):

* steady resync: every host read when nothing changed (interleaved rounds, medians);
* forced resync: every host compared with its rows in the database;
* first sweep: connect, read every domain's XML, insert the rows;
* a user action (lifecycle.perform: pause, then unpause) on one host on an idle fleet and on a
  fleet that resyncs every second: p50/p95 latency, and the messages the action sent to its
  host (counted by the forwarder on that host's own port; one message is one round trip).

Targets (issue 12): steady at most 1.2x the baseline at 2 ms and 1.5x at 20 ms; forced at most 3x;
an action at most 4 round trips at 2 ms; an action's p95 on the resyncing fleet within 1.5x of the
idle fleet's, at 2 ms and at 20 ms. Exits 1 when any target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import virt_fleet_baseline as baseline  # noqa: E402
from delaylink import DelayLink  # noqa: E402
from virt_fleet_sweep import sweep, write_fleet  # noqa: E402

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import open_database, prepare_database  # noqa: E402
from fogmachine.composition import build_context, release_context  # noqa: E402
from fogmachine.context import Context  # noqa: E402
from fogmachine.db.models import Guest, GuestState, Host, Step, User  # noqa: E402
from fogmachine.services import lifecycle  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.services.hostwatch import HostManager  # noqa: E402
from fogmachine.virt.domainxml import FOGMACHINE_NS  # noqa: E402
from fogmachine.virt.errors import silence_libvirt  # noqa: E402
from tests.support import testhosts  # noqa: E402

ACTION_HOST = "h000"
ACTION_GUEST = "act-guest"
ACTION_GUEST_ID = 1_000_000
THREADS = (1, 4, 16, 100)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def mark_action_guest(host_file: Path) -> None:
    """Give the action host one domain that Fogmachine created (its mark in <metadata>)."""
    ET.register_namespace("test", testhosts.TEST_NS)
    ET.register_namespace("fogmachine", FOGMACHINE_NS)
    node = ET.parse(host_file).getroot()
    extra = ET.fromstring(testhosts.host_xml(domains=[testhosts.TestDomain(ACTION_GUEST, memory_mb=256)]))
    dom = extra.find("domain")
    assert dom is not None
    metadata = ET.SubElement(dom, "metadata")
    ET.SubElement(metadata, f"{{{FOGMACHINE_NS}}}guest", {"id": str(ACTION_GUEST_ID), "name": ACTION_GUEST})
    node.append(dom)
    host_file.write_text(ET.tostring(node, encoding="unicode"))


# ---------------------------------------------------------------- the raw-call baseline, threaded

def baseline_sweep(pool: ThreadPoolExecutor, conns: list[libvirt.virConnect], known: list[dict[str, tuple]],
                   cold: bool = False) -> None:
    """virt_fleet_baseline's per-host sweep on ``pool``'s threads (libvirt drops the GIL while it waits)."""
    def one(i: int) -> None:
        known[i] = baseline.sweep([conns[i]], None if cold else known[i])
    list(pool.map(one, range(len(conns))))


def best_threads(conns: list[libvirt.virConnect], known: list[dict[str, tuple]]) -> tuple[int, dict[int, float]]:
    """The thread count that sweeps this fleet fastest over this link (best of 2 sweeps each)."""
    figures = {}
    for threads in THREADS:
        with ThreadPoolExecutor(threads) as pool:
            runs = []
            for _ in range(2):
                t = time.perf_counter()
                baseline_sweep(pool, conns, known)
                runs.append(time.perf_counter() - t)
        figures[threads] = min(runs)
    return min(figures, key=lambda k: figures[k]), figures


# ---------------------------------------------------------------- Fogmachine

async def start_manager(data: Path, uris: dict[str, str], resync_interval: float,
                        fresh: bool) -> tuple[Context, HostManager, float]:
    """A HostManager on the database in ``data``; seconds until every host finished its first resync."""
    data.mkdir(parents=True, exist_ok=True)
    virthosts = testhosts.write_virthosts(data / "virthosts.conf", uris)
    config = configmod.load(None, environ={}, data_dir=str(data / "data"), virthosts=str(virthosts),
                            resync_interval=str(resync_interval), log_level="error")
    db = open_database(config)
    await asyncio.get_running_loop().run_in_executor(None, prepare_database, config, db)
    if fresh:
        await db.run(add_action_guest, lock=True)
    manager = HostManager(config, db)
    ctx = build_context(config, db, hosts=manager)
    started = time.perf_counter()
    await manager.start()
    while not all(h.resyncs >= 1 and h.applied is not None for h in manager.all()):
        await asyncio.sleep(0.002)
    return ctx, manager, time.perf_counter() - started


def add_action_guest(session) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    owner = User(username="bench", email="")
    session.add(owner)
    session.flush()
    host_id = session.scalar(select(Host.id).where(Host.name == ACTION_HOST))
    session.add(Guest(id=ACTION_GUEST_ID, name=ACTION_GUEST, live_name=ACTION_GUEST, domain_name=ACTION_GUEST,
                      managed=True, owner_id=owner.id, host_id=host_id, step=Step.READY,
                      state=GuestState.RUNNING, ram_mb=256, vcpus=1))


async def actions(ctx: Context, link: DelayLink, count: int) -> tuple[list[float], list[int]]:
    """Pause and unpause the action guest ``count`` times: latencies and messages sent to its host."""
    from sqlalchemy import select

    owner = await ctx.db.run(lambda s: s.scalar(select(User.id).where(User.username == "bench")))
    actor = Actor(user_id=owner, username="bench")
    latencies, trips = [], []
    for i in range(count):
        action = "pause" if i % 2 == 0 else "unpause"
        before = link.counts()["action"]
        t = time.perf_counter()
        await lifecycle.perform(ctx, actor, ACTION_GUEST_ID, action)
        latencies.append(time.perf_counter() - t)
        trips.append(link.counts()["action"] - before)
        await asyncio.sleep(0.05)  # let the action's own event settle before the next one
    return latencies, trips


async def stop_manager(ctx: Context, manager: HostManager) -> None:
    await manager.stop()
    release_context(ctx)
    ctx.db.dispose()


# ---------------------------------------------------------------- one round trip

async def measure(link: DelayLink, rtt_ms: float, files: dict[str, Path], tmp: Path,
                  args: argparse.Namespace) -> None:
    link.set_delay(round(rtt_ms * 1000 / 2))
    uris = {name: link.uri(path, action=name == ACTION_HOST) for name, path in files.items()}
    label = f"{rtt_ms:g} ms"
    print(f"\n== round trip {label} ({len(uris)} hosts x {args.domains} domains)")

    t = time.perf_counter()
    conns = [libvirt.open(uri) for uri in uris.values()]
    opened = time.perf_counter() - t
    known: list[dict[str, tuple]] = [{} for _ in conns]
    with ThreadPoolExecutor(100) as pool:
        t = time.perf_counter()
        baseline_sweep(pool, conns, known, cold=True)
        cold = time.perf_counter() - t
    threads, by_threads = best_threads(conns, known)
    print("baseline warm sweep by threads: " + ", ".join(f"{k}: {ms(v)}" for k, v in by_threads.items())
          + f" -> {threads}; open {ms(opened)}, cold sweep on 100 threads {ms(cold)}")

    ctx, manager, first = await start_manager(tmp / f"db-{rtt_ms:g}", uris, 3600, fresh=True)
    print(f"first sweep: {ms(first)} vs baseline open + cold {ms(opened + cold)}: "
          f"ratio {first / (opened + cold):.2f}")

    walls: dict[str, list[float]] = {"baseline": [], "steady": [], "forced": []}
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(args.rounds):
            for what in ("baseline", "steady", "forced", "baseline"):
                t = time.perf_counter()
                if what == "baseline":
                    await asyncio.get_running_loop().run_in_executor(None, baseline_sweep, pool, conns, known)
                else:
                    await sweep(manager.all(), 1, forced=what == "forced")
                walls[what].append(time.perf_counter() - t)
    base = statistics.median(walls["baseline"])
    print(f"read gate: {manager.fleet.read_gate.limit} whole-host reads at once (fogmachine/virt/readgate.py)")
    for what, target in (("steady", 1.2 if rtt_ms <= 2 else 1.5), ("forced", 3.0)):
        wall = statistics.median(walls[what])
        print(f"{what} resync: {ms(wall)} vs baseline {ms(base)} (medians of {len(walls[what])}, interleaved): "
              f"ratio {wall / base:.2f}")
        check(f"{ms(wall)} / {ms(base)} = {wall / base:.2f}x", f"<= {target:g}x", wall / base <= target,
              what=f"{what} resync, {label}")
    for conn in conns:
        conn.close()

    idle, trips = await actions(ctx, link, args.actions)
    await stop_manager(ctx, manager)
    ctx, manager, _ = await start_manager(tmp / f"db-{rtt_ms:g}", uris, 1, fresh=False)
    busy, _ = await actions(ctx, link, args.actions)
    await stop_manager(ctx, manager)
    trips_median = statistics.median(trips)
    print(f"action (pause/unpause through lifecycle.perform), idle fleet: p50 {ms(statistics.median(idle))}, "
          f"p95 {ms(p95(idle))}; messages to its host: median {trips_median:g} (min {min(trips)}, "
          f"max {max(trips)})")
    print(f"action, fleet resyncing every second: p50 {ms(statistics.median(busy))}, p95 {ms(p95(busy))}: "
          f"{p95(busy) / p95(idle):.2f}x the idle p95")
    if rtt_ms <= 2:
        check(f"{trips_median:g} messages", "<= 4", trips_median <= 4, what=f"action round trips, {label}")
    check(f"{ms(p95(busy))} / {ms(p95(idle))} = {p95(busy) / p95(idle):.2f}x", "<= 1.5x",
          p95(busy) <= 1.5 * p95(idle), what=f"action p95 resyncing/idle, {label}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--rtt-ms", default="2,20", help="round trips to measure, in ms, comma-separated")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--actions", type=int, default=40)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: it makes a network namespace and starts a libvirtd in it", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    silence_libvirt()
    with tempfile.TemporaryDirectory(prefix="fm-bench-net-") as tmp_dir:
        tmp = Path(tmp_dir)
        write_fleet(tmp / "hosts", args.hosts, args.domains)
        files = {p.stem: p for p in sorted((tmp / "hosts").glob("*.xml"))}
        mark_action_guest(files[ACTION_HOST])
        with DelayLink(1000) as link:
            for rtt in (float(x) for x in args.rtt_ms.split(",")):
                await measure(link, rtt, files, tmp, args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return exit_status()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

