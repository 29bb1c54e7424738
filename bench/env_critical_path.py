"""An environment's critical path: a three-tier environment's checkout-to-ready against the sum of its tiers'
checkout-to-ready times, each tier's guest checked out alone, side by side in one run.

    .venv/bin/python bench/env_critical_path.py [--rounds N]

Needs the loopback Cobbler (tests/infra/cobbler_server.sh start), both libvirtd/QEMU hosts
(tests/infra/libvirt_hosts.sh start) and the tiny guest (tests/infra/tiny_guest.sh build).

Every guest is of one Cobbler profile whose kickstart is ks_scripts' sample ``fogmachine-env.ks``: the tiny
guest boots, fetches Cobbler's rendered autoinstall and runs its %post (fogmachine_user, fogmachine_env: the
variables from Cobbler's rendering and from GET /guest/MAC/env, then fogmachine_update: the phone-home).

Environment: ``db``, then ``app`` (``db_host: {{ db.ip }}``), then ``web`` (``app_host: {{ app.ip }}``), one
guest each, so each tier waits for the one before: from ``checkout_environment()`` until the environment's row
is ``ready``. What it adds to its guests' own installs is the engine's work between tiers (the poke after a
phone-home, the variables, the catalog asked again, the tier's launch in one locked unit).

Tiers alone: for each tier, one guest of the same profile checked out by itself, from ``checkout()`` until its
row is ``ready``; the three are summed. That is the least an environment of three dependent tiers can take.

Rounds alternate (order swapped every round). Target: ratio of the medians <= 1.2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
from sqlalchemy import select
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checkout_overhead import COBBLER, INITRD, KERNEL  # noqa: E402
from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import Server  # noqa: E402
from fogmachine.cobbler.scripts import DEFAULT_DIR, find_scripts, install  # noqa: E402
from fogmachine.context import Context  # noqa: E402
from fogmachine.db.models import Environment, Guest, GuestStep, Step, User  # noqa: E402
from fogmachine.services import checkout as co  # noqa: E402
from fogmachine.services import lifecycle  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.services.environments import actions, templates  # noqa: E402
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment  # noqa: E402

PROFILE = "fmbench-env"
KICKSTART = "fogmachine-env.ks"
TEMPLATE = "fmbench-three-tiers"
TIERS = ({"name": "db", "target": PROFILE},
         {"name": "app", "target": PROFILE, "variables": {"db_host": "{{ db.ip }}"}},
         {"name": "web", "target": PROFILE, "variables": {"app_host": "{{ app.ip }}", "db_host": "{{ db.ip }}"}})
URIS = {"rh1": "qemu+tcp://127.0.0.1/system", "rh2": "qemu+tcp://127.0.0.2/system"}
POLL = 0.02
DEADLINE = 300.0
TARGET = 1.2


def seed() -> None:
    """The benchmark's profile: the tiny guest's kernel and initrd, the sample kickstart, user-mode network."""
    spec = importlib.util.spec_from_file_location("cobbler_seed", ROOT / "tests" / "infra" / "cobbler_seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.seed(COBBLER, "cobbler", "cobbler", str(KERNEL), str(INITRD), distro=PROFILE, profile=PROFILE,
                autoinstall_name=KICKSTART, template=(DEFAULT_DIR / "kickstarts" / KICKSTART).read_text(),
                kernel_options="console=ttyS0 panic=-1",
                autoinstall_meta={"fogmachine": 1, "fogmachine_network": "user"}, virt_ram=256, virt_cpus=1,
                virt_type="qemu", virt_file_size=0, image=None)


async def until(ctx: Context, read: Any, done: Any, what: str) -> Any:
    """Poll ``read`` (a unit of work) until ``done`` says so; the deadline only stops a broken build."""
    end = time.perf_counter() + DEADLINE
    while True:
        row = await ctx.db.run(read)
        if done(row):
            return row
        if time.perf_counter() > end:
            raise SystemExit(f"{what}: not done after {DEADLINE:g} s")
        await asyncio.sleep(POLL)


def handovers(session: Session, env_id: int) -> list[float]:
    """Seconds from each tier's guest turning ready to the next tier's guest leaving ``waiting`` (the engine's
    part of the critical path), from the guests' step history."""
    guests = session.scalars(select(Guest).where(Guest.environment_id == env_id).order_by(Guest.tier)).all()
    times = {(g.tier, row.step): row.at for g in guests
             for row in session.scalars(select(GuestStep).where(GuestStep.guest_id == g.id))}
    return [(times[(tier, Step.REGISTERING)] - times[(tier - 1, Step.READY)]).total_seconds()
            for tier in range(1, len(guests))]


async def environment_once(ctx: Context, actor: Actor, name: str) -> tuple[float, list[float]]:
    start = time.perf_counter()
    env = await checkout_environment(ctx, actor, EnvironmentRequest(TEMPLATE, name, 1, "benchmark"))
    row = await until(ctx, lambda s: s.get(Environment, env.id), lambda e: e.step != "provisioning", name)
    elapsed = time.perf_counter() - start
    if row.step != "ready":
        raise SystemExit(f"environment {name} ended {row.step}: {row.step_reason}")
    gaps = await ctx.db.run(handovers, env.id)
    await actions.delete(ctx, actor, env.id)
    await ctx.environments.wait()
    await ctx.provisioner.wait()
    return elapsed, gaps


async def alone_once(ctx: Context, actor: Actor, name: str) -> float:
    start = time.perf_counter()
    guest = await co.checkout(ctx, actor, co.CheckoutRequest(name, PROFILE, 1, "benchmark"))
    row = await until(ctx, lambda s: s.get(Guest, guest.id), lambda g: g.step in (Step.READY, Step.FAILED), name)
    elapsed = time.perf_counter() - start
    if row.step != Step.READY:
        raise SystemExit(f"{name} ended at {row.step}: {row.step_reason}")
    await ctx.provisioner.wait(guest.id)
    await lifecycle.delete(ctx, actor, guest.id)
    return elapsed


async def main(rounds: int) -> tuple[list[float], list[list[float]], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="fm-bench-env-"))
    (tmp / "virthosts.conf").write_text("".join(f"{name}, {uri}, qemu\n" for name, uri in URIS.items()))
    port = free_port()
    config = configmod.load(
        None, environ={}, data_dir=str(tmp / "data"), virthosts=str(tmp / "virthosts.conf"), listen_port=str(port),
        public_url=f"http://10.0.2.2:{port}", cobbler_url=COBBLER, cobbler_password="cobbler",
        cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op", log_level="warning")
    server = Server(config)
    await server.start()
    ctx = server.ctx
    assert ctx is not None
    await install(ctx.cobbler, find_scripts())

    def add(session: Any, username: str, admin: bool) -> int:
        user = User(username=username, email=f"{username}@example.org", is_admin=admin)
        session.add(user)
        session.flush()
        return user.id

    actor = Actor(await ctx.db.run(add, "bench", False), "bench")
    admin = Actor(await ctx.db.run(add, "bench-admin", True), "bench-admin", is_admin=True)
    await templates.save(ctx, admin, TEMPLATE, "db, then app, then web: one guest each", {"tiers": list(TIERS)})
    env_times: list[float] = []
    alone_times: list[list[float]] = []
    gaps: list[float] = []
    tag = uuid.uuid4().hex[:4]
    try:
        for i in range(rounds):
            for which in (("alone", "env") if i % 2 else ("env", "alone")):
                if which == "env":
                    elapsed, handover = await environment_once(ctx, actor, f"fmbench-{tag}-env{i}")
                    env_times.append(elapsed)
                    gaps += handover
                    print(f"  round {i} environment      {elapsed:6.2f} s  (ready to next tier started: "
                          + ", ".join(f"{gap * 1000:.0f} ms" for gap in handover) + ")", flush=True)
                else:
                    times = [await alone_once(ctx, actor, f"fmbench-{tag}-{tier['name']}{i}") for tier in TIERS]
                    alone_times.append(times)
                    print(f"  round {i} tiers alone      {sum(times):6.2f} s  ("
                          + ", ".join(f"{t['name']} {s:.2f}" for t, s in zip(TIERS, times, strict=True)) + ")",
                          flush=True)
    finally:
        await server.stop()
    return env_times, alone_times, gaps


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_a: None, None)
    seed()
    env_times, alone, gaps = asyncio.run(main(args.rounds))
    sums = [sum(times) for times in alone]
    env_med, sum_med = statistics.median(env_times), statistics.median(sums)
    per_tier = [statistics.median(times[i] for times in alone) for i in range(len(TIERS))]
    print(f"three-tier environment, checkout to ready:  median {env_med:6.2f} s  (min {min(env_times):.2f}, "
          f"max {max(env_times):.2f})")
    print(f"its tiers alone, summed:                    median {sum_med:6.2f} s  (min {min(sums):.2f}, "
          f"max {max(sums):.2f}; per tier "
          + ", ".join(f"{t['name']} {s:.2f}" for t, s in zip(TIERS, per_tier, strict=True)) + ")")
    print(f"from a tier ready to the next one started:  median {statistics.median(gaps) * 1000:6.0f} ms  "
          f"(max {max(gaps) * 1000:.0f} ms, {len(gaps)} handovers)")
    ratio = env_med / sum_med
    print(f"ratio {ratio:.2f}  (target <= {TARGET})")
    check(f"ratio {ratio:.2f} ({env_med:.1f} s vs {sum_med:.1f} s)", f"<= {TARGET}", ratio <= TARGET)
    return exit_status()


if __name__ == "__main__":
    sys.exit(cli())
