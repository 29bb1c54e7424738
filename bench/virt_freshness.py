"""How fresh is Fogmachine's database? Domain states changed directly through libvirt.

    .venv/bin/python bench/virt_freshness.py [--changes N] [--real-changes N] [--no-real] [--host-down]

Each change is made with a raw libvirt call (not through Fogmachine), and the
clock runs until the guest's row in Fogmachine's database shows the new state
(read the way a page would, through ``ctx.db.run``). Changes are made one at a
time; the periodic resync is set to an hour, so only libvirt's events can
explain a fresh row. Prints p50/p95/max per kind of host; the target is p95
under 1 s.

1. Test-driver hosts (10 hosts x 20 domains): suspend/resume through the
   manager's own connection (the test driver keeps one state per connection).
2. The real QEMU hosts (qemu+tcp://127.0.0.1/system and 127.0.0.2), when
   they answer: one tiny guest booted on each, suspended and resumed through
   a separate connection, as virsh would.
3. With --host-down: kill host 2's libvirtd (tests/infra/libvirt_hosts.sh
   stop-host 2) and time until the host row says 'down'; then start it again.
   Off by default because it disturbs anyone else using host 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import open_database, prepare_database  # noqa: E402
from fogmachine.composition import build_context, release_context  # noqa: E402
from fogmachine.context import Context  # noqa: E402
from fogmachine.db.models import Guest, Host  # noqa: E402
from fogmachine.services.hostwatch import HostManager  # noqa: E402
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml  # noqa: E402
from fogmachine.virt.errors import silence_libvirt  # noqa: E402
from tests.support import testhosts  # noqa: E402

STATE = Path(os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test"))
REAL = {"q1": "qemu+tcp://127.0.0.1/system", "q2": "qemu+tcp://127.0.0.2/system"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def report(label: str, seconds: list[float], what: str) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"{label}: n={len(ms)} p95={pct(ms, 95):.1f} ms p50={pct(ms, 50):.1f} ms max={max(ms):.1f} ms "
          f"mean={statistics.mean(ms):.1f} ms; p95 vs 1 s target: {pct(ms, 95) / 1000:.3f}")
    check(f"p95 {pct(ms, 95):.1f} ms (n={len(ms)})", "p95 < 1 s", pct(ms, 95) < 1000, what=what)


async def start_manager(tmp: Path, uris: dict[str, str]) -> tuple[Context, HostManager]:
    tmp.mkdir(parents=True, exist_ok=True)
    virthosts = testhosts.write_virthosts(tmp / "virthosts.conf", uris)
    config = configmod.load(None, environ={}, data_dir=str(tmp / "data"), virthosts=str(virthosts),
                            resync_interval="3600", log_level="warning")
    db = open_database(config)
    await asyncio.get_running_loop().run_in_executor(None, prepare_database, config, db)
    manager = HostManager(config, db)
    ctx = build_context(config, db, hosts=manager)
    await manager.start()
    return ctx, manager


async def time_until(ctx: Context, guest_id: int, state: str, started: float, limit: float = 10.0) -> float:
    def read(s):  # type: ignore[no-untyped-def]
        return s.scalar(select(Guest.state).where(Guest.id == guest_id))

    while True:
        if await ctx.db.run(read) == state:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit:
            raise SystemExit(f"guest {guest_id} never reached {state} within {limit} s")
        await asyncio.sleep(0.001)


async def test_driver_hosts(tmp: Path, changes: int) -> list[float]:
    uris = {}
    for h in range(10):
        uris[f"t{h}"] = testhosts.write_host(tmp / "hosts", f"t{h}", domains=[
            testhosts.TestDomain(f"t{h}-d{d}") for d in range(20)])
    ctx, manager = await start_manager(tmp / "test", uris)
    try:
        ids = dict(await ctx.db.run(lambda s: [(g.domain_name, g.id) for g in s.scalars(select(Guest))]))
        paused: set[str] = set()
        latencies = []
        rng = random.Random(1)
        for _ in range(changes):
            host_name = f"t{rng.randrange(10)}"
            name = f"{host_name}-d{rng.randrange(20)}"
            dom = manager.get(host_name)._conn.lookupByName(name)
            started = time.perf_counter()
            if name in paused:
                dom.resume()
                paused.discard(name)
                want = "running"
            else:
                dom.suspend()
                paused.add(name)
                want = "paused"
            latencies.append(await time_until(ctx, ids[name], want, started))
        return latencies
    finally:
        await manager.stop()
        release_context(ctx)
        ctx.db.dispose()


def real_hosts_answer() -> str | None:
    for path in (STATE / "tiny" / "vmlinuz", STATE / "tiny" / "initrd.img"):
        if not path.is_file():
            return f"{path} missing"
    for uri in REAL.values():
        try:
            libvirt.open(uri).close()
        except libvirt.libvirtError as exc:
            return f"{uri}: {exc.get_error_message()}"
    return None


async def real_hosts(tmp: Path, changes: int, host_down: bool) -> tuple[list[float], float | None]:
    ctx, manager = await start_manager(tmp / "real", REAL)
    names = {h: f"fmv-bench-{uuid.uuid4().hex[:6]}" for h in REAL}
    raw = {h: libvirt.open(uri) for h, uri in REAL.items()}
    try:
        for h, name in names.items():
            spec = DomainSpec(name=name, memory_mb=256, vcpus=1, boot="kernel", kernel=str(STATE / "tiny/vmlinuz"),
                              initrd=str(STATE / "tiny/initrd.img"), cmdline="console=ttyS0 panic=-1", vnc=False)
            raw[h].defineXML(build_domain_xml(spec)).create()
        ids = {}
        for name in names.values():
            while name not in ids:
                ids.update(await ctx.db.run(lambda s: {g.domain_name: g.id for g in s.scalars(select(Guest))}))
                await asyncio.sleep(0.01)
            await time_until(ctx, ids[name], "running", time.perf_counter())
        latencies = []
        paused = False
        for i in range(changes):
            h = "q1" if i % 2 == 0 else "q2"
            dom = raw[h].lookupByName(names[h])
            paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
            started = time.perf_counter()
            if paused:
                dom.resume()
            else:
                dom.suspend()
            latencies.append(await time_until(ctx, ids[names[h]], "running" if paused else "paused", started))
        down_after = None
        if host_down:
            def host_state(s):  # type: ignore[no-untyped-def]
                return s.scalar(select(Host.state).where(Host.name == "q2"))

            raw["q2"].close()
            started = time.perf_counter()
            subprocess.run(["bash", str(ROOT / "tests/infra/libvirt_hosts.sh"), "stop-host", "2"], check=True,
                           capture_output=True)
            killed = time.perf_counter()
            while await ctx.db.run(host_state) != "down":
                await asyncio.sleep(0.001)
            down_after = time.perf_counter() - killed
            print(f"(stop-host 2 itself took {killed - started:.3f} s)")
            subprocess.run(["bash", str(ROOT / "tests/infra/libvirt_hosts.sh"), "start-host", "2"], check=True,
                           capture_output=True)
            raw["q2"] = libvirt.open(REAL["q2"])
        return latencies, down_after
    finally:
        for h, name in names.items():
            try:
                dom = raw[h].lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
            raw[h].close()
        await manager.stop()
        release_context(ctx)
        ctx.db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200, help="changes on the test-driver hosts")
    parser.add_argument("--real-changes", type=int, default=40, help="changes on the real QEMU hosts")
    parser.add_argument("--no-real", action="store_true", help="skip the real QEMU hosts")
    parser.add_argument("--host-down", action="store_true", help="also kill host 2's libvirtd and time 'down'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    silence_libvirt()
    with tempfile.TemporaryDirectory(prefix="fm-bench-fresh-") as tmp_dir:
        tmp = Path(tmp_dir)
        report("test-driver hosts (10 x 20 domains), event -> DB", await test_driver_hosts(tmp, args.changes),
               "test hosts")
        if args.no_real:
            return
        reason = real_hosts_answer()
        if reason:  # the real hosts are part of what this benchmark promises: missing them is a miss
            check(f"real QEMU hosts missing: {reason}", "p95 < 1 s", False, what="real hosts")
            return
        latencies, down_after = await real_hosts(tmp, args.real_changes, args.host_down)
        report("real QEMU hosts (2 tiny guests), event -> DB", latencies, "real hosts")
        if down_after is not None:
            print(f"host 2 libvirtd killed -> host row 'down' after {down_after * 1000:.1f} ms "
                  f"(target 2 s: ratio {down_after / 2:.3f})")
            check(f"'down' after {down_after * 1000:.0f} ms", "< 2 s", down_after < 2, what="host down")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(exit_status())
