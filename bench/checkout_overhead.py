"""Checkout overhead: Fogmachine's checkout until the domain is started, against the same backend calls
made directly, side by side in one run.

    .venv/bin/python bench/checkout_overhead.py [--iterations N] [--hosts real,test]

Needs the loopback Cobbler (tests/infra/cobbler_server.sh start) and, for ``real``, the libvirtd/QEMU host
of tests/infra/libvirt_hosts.sh (qemu+tcp://127.0.0.1/system) plus the tiny guest's kernel and initrd.

Fogmachine: ``checkout()`` (validate, fresh profile from Cobbler, place and claim in one transaction)
until its background steps have registered the Cobbler system, defined and started the domain and
written each step to the database (SQLite).

Direct: the same backend work as plain blocking calls, nothing else: Cobbler ``new_system``, one
``modify_system`` per field Fogmachine sets, ``save_system``, then libvirt ``defineXML`` of the same domain
XML and ``create``. Login and connections are made before the clock starts.

The two alternate (order swapped every round), after one warm-up round each. Target: ratio <= 1.3.
On ``test`` (libvirt's test driver, in-process) the backends cost almost nothing, so the ratio there
shows Fogmachine's own cost against Cobbler's; ``real`` is what a user waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
import xmlrpc.client
from pathlib import Path

import libvirt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import Server  # noqa: E402
from fogmachine.db.models import Step, User  # noqa: E402
from fogmachine.services import checkout as co  # noqa: E402
from fogmachine.services import lifecycle  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml  # noqa: E402

COBBLER = "http://127.0.0.1:25151/"
STATE = Path(os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test"))
KERNEL, INITRD = STATE / "tiny" / "vmlinuz", STATE / "tiny" / "initrd.img"
PROFILE = "fmbench-tiny"
REAL_URI = "qemu+tcp://127.0.0.1/system"
TEST_HOST = """<node><cpu><mhz>2400</mhz><model>x86_64</model><active>64</active><nodes>1</nodes><sockets>1</sockets>
<cores>64</cores><threads>1</threads></cpu><memory>268435456</memory></node>"""


def seed() -> None:
    spec = importlib.util.spec_from_file_location("cobbler_seed", ROOT / "tests" / "infra" / "cobbler_seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.seed(COBBLER, "cobbler", "cobbler", str(KERNEL), str(INITRD), distro=PROFILE, profile=PROFILE,
                autoinstall_name="fmbench.ks", template="%post\necho bench\n%end\n",
                kernel_options="console=ttyS0 panic=-1", autoinstall_meta={"fogmachine": 1, "fogmachine_network":
                                                                             "user"},
                virt_ram=256, virt_cpus=1, virt_type="qemu", virt_file_size=0, image=None)


class RoundFailed(Exception):
    """A round that did not get its guest started (on a shared machine, something else may kill QEMU)."""


class Direct:
    """The backend calls alone: blocking XML-RPC and libvirt, connections opened once."""

    def __init__(self, uri: str, config: configmod.Config) -> None:
        self.cobbler = xmlrpc.client.ServerProxy(COBBLER, allow_none=True)
        self.token = self.cobbler.login("cobbler", "cobbler")
        self.conn = libvirt.open(uri)
        self.config = config
        self.domain_type = "test" if uri.startswith("test:") else "qemu"

    def xml(self, name: str, mac: str) -> str:
        return build_domain_xml(DomainSpec(
            name=name, uuid=str(uuid.uuid4()), memory_mb=256, vcpus=1, domain_type=self.domain_type, mac=mac,
            network="user", boot="kernel", kernel=str(KERNEL), initrd=str(INITRD),
            cmdline=f"console=ttyS0 panic=-1 ks=http://10.0.2.2:25152/cblr/svc/op/autoinstall/system/{name}",
            guest_id=None))

    def run(self, name: str) -> float:
        mac, s, tok = co.new_mac(), self.cobbler, self.token
        meta = {"fogmachine_server": self.config.server_url, "fogmachine_token": "x" * 43, "fogmachine_mac": mac}
        xml = self.xml(name, mac)
        start = time.perf_counter()
        handle = s.new_system(tok)
        for field, value in (("name", name), ("profile", PROFILE), ("hostname", name),
                             ("modify_interface", {"macaddress-eth0": mac}), ("autoinstall_meta", meta),
                             ("netboot_enabled", False)):
            s.modify_system(handle, field, value, tok)
        s.save_system(handle, tok)
        dom = self.conn.defineXML(xml)
        try:
            dom.create()
            elapsed = time.perf_counter() - start
            dom.destroy()
        except libvirt.libvirtError as exc:
            raise RoundFailed(f"direct start of {name}: {exc}") from None
        finally:
            dom.undefine()
            s.remove_system(name, tok)
        return elapsed


async def fogmachine_once(ctx, actor: Actor, name: str) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    guest = await co.checkout(ctx, actor, co.CheckoutRequest(name, PROFILE, 1, "benchmark"))
    answered = time.perf_counter() - start
    await ctx.provisioner.wait(guest.id)
    elapsed = time.perf_counter() - start
    row = await ctx.db.run(lambda s: s.get(type(guest), guest.id))
    await lifecycle.delete(ctx, actor, guest.id)
    if row.step != Step.INSTALLING:
        raise RoundFailed(f"checkout of {name} ended at {row.step}: {row.step_reason}")
    return elapsed, answered


async def measure(kind: str, iterations: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="fm-bench-"))
    if kind == "test":
        (tmp / "host.xml").write_text(TEST_HOST)
        uri, virt_type = f"test://{tmp / 'host.xml'}", "test"
    else:
        uri, virt_type = REAL_URI, "qemu"
    (tmp / "virthosts.conf").write_text(f"bench, {uri}, {virt_type}\n")
    config = configmod.load(None, environ={}, data_dir=str(tmp / "data"), virthosts=str(tmp / "virthosts.conf"),
                            listen_port="0", cobbler_url=COBBLER, cobbler_password="cobbler",
                            public_url="http://10.0.2.2:8888", resync_interval="3600", log_level="warning",
                            cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op")
    server = Server(config)
    await server.start()
    ctx = server.ctx
    assert ctx is not None

    def add(session):  # type: ignore[no-untyped-def]
        user = User(username="bench")
        session.add(user)
        session.flush()
        return user.id

    actor = Actor(await ctx.db.run(add), "bench")
    direct = Direct(uri, config)
    fm_times: list[float] = []
    fm_answers: list[float] = []
    direct_times: list[float] = []
    tag = uuid.uuid4().hex[:4]
    try:
        i = failures = 0
        while min(len(fm_times), len(direct_times)) < iterations:
            order = ("fm", "direct") if i % 2 else ("direct", "fm")
            for which in order:
                name = f"fmbench-{tag}-{which}-{i}"
                try:
                    if which == "fm":
                        elapsed, answered = await fogmachine_once(ctx, actor, name)
                        if i:
                            fm_times.append(elapsed)
                            fm_answers.append(answered)
                    else:
                        elapsed = direct.run(name)
                        if i:
                            direct_times.append(elapsed)
                except RoundFailed as exc:
                    failures += 1
                    print(f"  (round {i} {which} not counted: {exc})", file=sys.stderr)
                    if failures > iterations:
                        raise SystemExit("too many failed rounds") from None
            i += 1
    finally:
        direct.conn.close()
        await server.stop()
    return {"fm": statistics.median(fm_times), "fm_mean": statistics.mean(fm_times),
            "answer": statistics.median(fm_answers), "direct": statistics.median(direct_times),
            "direct_mean": statistics.mean(direct_times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--hosts", default="real,test", help="real, test or both (comma-separated)")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_a: None, None)
    seed()
    worst = 0.0
    print(f"checkout until the domain is started, median of {args.iterations} rounds (ms)")
    print(f"{'hosts':<6} {'fogmachine':>11} {'(202 after)':>12} {'direct':>8} {'ratio':>6}")
    for kind in args.hosts.split(","):
        result = asyncio.run(measure(kind.strip(), args.iterations))
        ratio = result["fm"] / result["direct"]
        worst = max(worst, ratio) if kind.strip() == "real" else worst
        if kind.strip() == "real":
            check(f"ratio {ratio:.2f} to the direct calls", "<= 1.3 on real hosts", ratio <= 1.3)
        print(f"{kind:<6} {result['fm'] * 1000:>11.1f} {result['answer'] * 1000:>12.1f} "
              f"{result['direct'] * 1000:>8.1f} {ratio:>6.2f}")
    print("target: ratio <= 1.3 on real hosts")
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
