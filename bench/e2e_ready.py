"""End to end: checkout-to-ready of the real tiny guest through Fogmachine and Cobbler, against the bare
boot-to-phone-home of the same guest started directly through libvirt, side by side in one run.

    .venv/bin/python bench/e2e_ready.py [--rounds N] [--uri qemu+tcp://127.0.0.1/system]

Needs the loopback Cobbler (tests/infra/cobbler_server.sh start), the libvirtd/QEMU host
(tests/infra/libvirt_hosts.sh start) and the tiny guest (tests/infra/tiny_guest.sh build).

Fogmachine: from calling ``checkout()`` until the guest's row is ``ready``: Cobbler system, domain
defined and started, the guest boots, its initramfs 'installer' fetches Cobbler's rendered autoinstall
file, runs %post (the fogmachine_user and fogmachine_update snippets: getuser, then the phone-home
with its token) and the server marks it ready.

Bare: the same kernel, initrd and domain XML builder, defined and started with plain libvirt calls,
with ``fm.phonehome=URL`` on the command line; from ``defineXML`` until its GET arrives at a bare
Tornado handler in this process.

Rounds alternate (order swapped every round). Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt
import tornado.web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checkout_overhead import COBBLER, INITRD, KERNEL, PROFILE, seed  # noqa: E402
from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import Server  # noqa: E402
from fogmachine.cobbler.scripts import find_scripts, install  # noqa: E402
from fogmachine.db.models import Guest, Step, User  # noqa: E402
from fogmachine.services import checkout as co  # noqa: E402
from fogmachine.services import lifecycle  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml  # noqa: E402

POLL = 0.02


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Arrivals:
    """The bare guests' phone-homes: name -> the moment the GET arrived."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.events: dict[str, asyncio.Event] = {}

    def expect(self, name: str) -> asyncio.Event:
        self.events[name] = asyncio.Event()
        return self.events[name]


def bare_app(arrivals: Arrivals) -> tornado.web.Application:
    class Hook(tornado.web.RequestHandler):
        def get(self, name: str) -> None:
            arrivals.seen.setdefault(name, time.perf_counter())
            if name in arrivals.events:
                arrivals.events[name].set()
            self.write("ok")

    return tornado.web.Application([(r"/bare/([\w-]+)", Hook)])


async def bare_once(conn: libvirt.virConnect, arrivals: Arrivals, port: int, name: str) -> float:
    xml = build_domain_xml(DomainSpec(
        name=name, uuid=str(uuid.uuid4()), memory_mb=256, vcpus=1, domain_type="qemu", network="user",
        boot="kernel", kernel=str(KERNEL), initrd=str(INITRD),
        cmdline=f"console=ttyS0 panic=-1 fm.hostname={name} fm.phonehome=http://10.0.2.2:{port}/bare/{name}"))
    arrived = arrivals.expect(name)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    dom = await loop.run_in_executor(None, conn.defineXML, xml)
    await loop.run_in_executor(None, dom.create)
    try:
        await asyncio.wait_for(arrived.wait(), 120)
        return arrivals.seen[name] - start
    finally:
        await loop.run_in_executor(None, dom.destroy)
        await loop.run_in_executor(None, dom.undefine)


async def fogmachine_once(ctx, actor: Actor, name: str) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    guest = await co.checkout(ctx, actor, co.CheckoutRequest(name, PROFILE, 1, "benchmark"))
    deadline = start + 180
    while True:
        row = await ctx.db.run(lambda s: s.get(Guest, guest.id))
        if row.step in (Step.READY, Step.FAILED) or time.perf_counter() > deadline:
            break
        await asyncio.sleep(POLL)
    elapsed = time.perf_counter() - start
    if row.step != Step.READY:
        raise SystemExit(f"{name} ended at {row.step}: {row.step_reason}")
    await ctx.provisioner.wait(guest.id)
    await lifecycle.delete(ctx, actor, guest.id)
    return elapsed


async def main(rounds: int, uri: str) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="fm-bench-e2e-"))
    (tmp / "virthosts.conf").write_text(f"bench, {uri}, qemu\n")
    port, bare_port = free_port(), free_port()
    config = configmod.load(
        None, environ={}, data_dir=str(tmp / "data"), virthosts=str(tmp / "virthosts.conf"), listen_port=str(port),
        public_url=f"http://10.0.2.2:{port}", cobbler_url=COBBLER, cobbler_password="cobbler",
        cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op", log_level="warning")
    server = Server(config)
    await server.start()
    ctx = server.ctx
    assert ctx is not None
    await install(ctx.cobbler, find_scripts())
    # The benchmark profile renders Fogmachine's own minimal kickstart (%post: getuser, phone-home).
    handle = await ctx.cobbler.authed("get_profile_handle", PROFILE)
    await ctx.cobbler.authed("modify_profile", handle, "autoinstall", "fogmachine-minimal.ks")
    await ctx.cobbler.authed("save_profile", handle)

    def add(session):  # type: ignore[no-untyped-def]
        user = User(username="bench", email="bench@example.org")
        session.add(user)
        session.flush()
        return user.id

    actor = Actor(await ctx.db.run(add), "bench")
    arrivals = Arrivals()
    http = bare_app(arrivals).listen(bare_port, "127.0.0.1")
    conn = libvirt.open(uri)
    fm_times: list[float] = []
    bare_times: list[float] = []
    tag = uuid.uuid4().hex[:4]
    try:
        for i in range(rounds):
            for which in (("fm", "bare") if i % 2 else ("bare", "fm")):
                name = f"fmbench-{tag}-{which}-{i}"
                if which == "fm":
                    fm_times.append(await fogmachine_once(ctx, actor, name))
                else:
                    bare_times.append(await bare_once(conn, arrivals, bare_port, name))
                print(f"  round {i} {which:<4} {(fm_times if which == 'fm' else bare_times)[-1]:6.2f} s",
                      flush=True)
    finally:
        conn.close()
        http.stop()
        await server.stop()
    return fm_times, bare_times


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--uri", default="qemu+tcp://127.0.0.1/system")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_a: None, None)
    seed()
    fm, bare = asyncio.run(main(args.rounds, args.uri))
    fm_med, bare_med = statistics.median(fm), statistics.median(bare)
    print(f"checkout-to-ready (Fogmachine + Cobbler):  median {fm_med:6.2f} s  (min {min(fm):.2f}, max {max(fm):.2f})")
    print(f"boot-to-phone-home (bare libvirt):         median {bare_med:6.2f} s  (min {min(bare):.2f}, "
          f"max {max(bare):.2f})")
    print(f"ratio {fm_med / bare_med:.2f}  (target <= 1.5)")
    check(f"ratio {fm_med / bare_med:.2f} ({fm_med:.1f} s vs {bare_med:.1f} s)", "<= 1.5", fm_med / bare_med <= 1.5)
    return exit_status()


if __name__ == "__main__":
    sys.exit(cli())
