"""The server's resident memory with 100 hosts and 5,000 guests (target: under 120 MB).

    .venv/bin/python bench/virt_memory.py [--hosts 100] [--domains 50] [--in-process]

Runs the real server (``fogmachine --config FILE serve``, every component)
twice in a child process: once with no hosts, once with HOSTS hosts of DOMAINS
domains each. The hosts are libvirt test-driver host files served by one
separate ``libvirtd`` in bench/delaylink.py's network namespace (no added
delay), reached as ``test+tcp://`` hosts: like real hypervisors, they keep
their domains in their own daemon, and the server holds only its connections.
That needs root. ``--in-process`` opens them as ``test:///`` instead, where
libvirt simulates every domain inside the server's own process; a third
process then opens the same files with libvirt alone to print the share the
driver takes (about 30 MB at 100 x 50), which no real host costs.

The server is ``python -m fogmachine.cli`` of this checkout (not the
installed console script, which may belong to another tree), on a database
made beforehand with ``fogmachine db upgrade``, as every start but a new
installation's first finds it (that first start migrates, which imports
Alembic: some 10 MB more until the process restarts). Waits until every host
is up and every domain has its row, lets a few full resyncs pass, fetches the
dashboard and the health check, then reads VmRSS and VmHWM (peak) from
/proc/PID/status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delaylink import DelayLink  # noqa: E402

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine.db.models import Guest, Host  # noqa: E402
from tests.support import testhosts  # noqa: E402

RESYNC = 2.0
TARGET_MB = 120  # issue 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return values


# Opens the hosts as the server does and reads every domain once, in a bare Python with libvirt only.
DRIVER_PROBE = """
import sys, libvirt
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
before = rss()
conns = [libvirt.open(uri) for uri in sys.argv[1:]]
for conn in conns:
    for dom, _ in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE):
        dom.XMLDesc(0)
print(rss() - before)
"""


def driver_mb(workdir: Path) -> float:
    """What libvirt's test driver holds for the fleet's host files: in the server's process only because
    ``test:///`` hosts are simulated in-process; a real host keeps its domains in its own libvirtd."""
    uris = [f"test://{path.resolve()}" for path in sorted((workdir / "hosts").glob("*.xml"))]
    out = subprocess.run([sys.executable, "-c", DRIVER_PROBE, *uris], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024


def run_server(workdir: Path, hosts: int, domains: int, link: DelayLink | None) -> dict[str, float]:
    """Start the server on HOSTS x DOMAINS (through LINK's libvirtd, or in-process when None) and read its RSS."""
    workdir.mkdir(parents=True)
    uris = {}
    for h in range(hosts):
        doms = [testhosts.TestDomain(f"h{h:03d}-d{d:02d}", memory_mb=256,
                                     mac=f"52:54:00:{h // 256:02x}:{h % 256:02x}:{d:02x}",
                                     state=("running", "shutoff", "paused")[d % 3]) for d in range(domains)]
        uris[f"h{h:03d}"] = testhosts.write_host(workdir / "hosts", f"h{h:03d}", cpus=16, memory_mb=65536,
                                                 domains=doms)
        if link is not None:
            uris[f"h{h:03d}"] = link.uri(workdir / "hosts" / f"h{h:03d}.xml")
    virthosts = testhosts.write_virthosts(workdir / "virthosts.conf", uris)
    port = free_port()
    conf = workdir / "fogmachine.conf"
    conf.write_text(f"[fogmachine]\ndata_dir = {workdir / 'data'}\nvirthosts = {virthosts}\nlisten_port = {port}\n"
                    f"local_catalog = {ROOT / 'catalog.conf'}\nresync_interval = {RESYNC}\nlog_level = warning\n")
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - closed below
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "fogmachine.cli", "--config", str(conf)]
    subprocess.run([*command, "db", "upgrade"], stdout=log, stderr=log, cwd=workdir, env=env, check=True)
    proc = subprocess.Popen([*command, "serve"], stdout=log, stderr=log, cwd=workdir, env=env)
    try:
        engine = create_engine(f"sqlite:///{workdir / 'data' / 'fogmachine.db'}")
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
                with engine.connect() as conn:
                    up = conn.execute(select(func.count()).select_from(Host).where(Host.state == "up")).scalar()
                    rows = conn.execute(select(func.count()).select_from(Guest)).scalar()
                if up == hosts and rows == hosts * domains:
                    break
            except OSError:
                pass
            except Exception as exc:  # the schema may not exist yet
                if "no such table" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise SystemExit("the server did not sync the fleet within 300 s")
            time.sleep(0.2)
        ready = time.perf_counter() - started
        time.sleep(3 * RESYNC)  # a few periodic resyncs of every host
        for path in ("/", "/healthz", "/api/v1/version"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
            except OSError:
                pass
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        values = status_kb(proc.pid)
        return {"ready_s": ready, "rss_mb": values["VmRSS"] / 1024, "peak_mb": values["VmHWM"] / 1024,
                "threads": values["Threads"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--domains", type=int, default=50)
    parser.add_argument("--in-process", action="store_true",
                        help="simulate the hosts inside the server's process (test:///) instead of a libvirtd")
    args = parser.parse_args()
    if not args.in_process and os.geteuid() != 0:
        raise SystemExit("needs root to serve the hosts from a libvirtd in a network namespace; "
                         "or run with --in-process")
    os.environ.pop("FOGMACHINE_CONFIG", None)
    with tempfile.TemporaryDirectory(prefix="fm-bench-mem-") as tmp_dir, \
            (contextlib.nullcontext() if args.in_process else DelayLink(0)) as link:
        empty = run_server(Path(tmp_dir) / "empty", 0, 0, link)
        full = run_server(Path(tmp_dir) / "fleet", args.hosts, args.domains, link)
        driver = driver_mb(Path(tmp_dir) / "fleet") if args.in_process else 0.0
    where = "simulated in the server's process (test:///)" if args.in_process else \
        "served by a separate libvirtd (test+tcp://)"
    print(f"hosts {where}")
    print(f"server with no hosts: RSS {empty['rss_mb']:.1f} MB (peak {empty['peak_mb']:.1f} MB), "
          f"{empty['threads']} threads")
    print(f"server with {args.hosts} hosts and {args.hosts * args.domains} guests: RSS {full['rss_mb']:.1f} MB "
          f"(peak {full['peak_mb']:.1f} MB), {full['threads']} threads; fleet synced {full['ready_s']:.1f} s after "
          f"launch")
    print(f"the fleet costs {full['rss_mb'] - empty['rss_mb']:.1f} MB; RSS vs the {TARGET_MB} MB target: "
          f"ratio {full['rss_mb'] / TARGET_MB:.2f} (peak {full['peak_mb'] / TARGET_MB:.2f})")
    if args.in_process:
        print(f"of which libvirt's test driver (in the server's process only because test:/// hosts are "
              f"simulated there) {driver:.1f} MB: without it {full['rss_mb'] - driver:.1f} MB")
    check(f"RSS {full['rss_mb']:.0f} MB with {args.hosts * args.domains} guests ({where})", f"< {TARGET_MB} MB",
          full["rss_mb"] < TARGET_MB)


if __name__ == "__main__":
    main()
    sys.exit(exit_status())
