"""A network link with latency, for benchmarks of many hosts over a real network round trip.

This kernel has no ``netem`` (nor ``fq``), so the delay cannot come from ``tc``. Instead:

* a network namespace ``fm-delay-<pid>`` joined to the root namespace by a veth pair
  (169.254.77.1 outside, 169.254.77.2 inside: link-local addresses of our own namespace);
* one ``libvirtd`` inside it, under ``unshare --mount`` with private ``/run``, ``/var/lib``,
  ``/var/cache`` and ``/var/log`` of libvirt, listening on the namespace's own loopback; it
  serves every test-driver host file as its own host (``test+tcp://ADDR:PORT/ABS/PATH/hN.xml``:
  each connection gets its own copy of that file, kept while the connection stays open);
* a forwarder in the namespace in front of it (this file, ``forward`` mode) that holds every
  chunk for D microseconds in each direction, so a call costs one round trip of 2 D more than
  it does on loopback. TCP's handshake is not delayed.

The forwarder listens on two ports: the fleet's, and an "action" port for one host whose
client-to-daemon messages it counts, so a benchmark can tell how many round trips an action
made. ``counts()`` reads those counters over a third (control) port.

Needs root (``ip netns``, ``unshare``) and Debian's libvirt-daemon (tests/infra/libvirt_hosts.sh
installs it). Used by bench/virt_network.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from types import TracebackType

OUTSIDE, INSIDE = "169.254.77.1", "169.254.77.2"
FLEET_PORT, ACTION_PORT, CONTROL_PORT = 16600, 16601, 16602
DAEMON_PORT = 16509


class DelayLink:
    """The namespace, its libvirtd and its delaying forwarder; a context manager that removes them all."""

    def __init__(self, delay_us: int) -> None:
        self.delay_us = delay_us
        self.ns = f"fm-delay-{os.getpid()}"
        self.veth = f"fmd{os.getpid() % 100000}"
        self.dir = Path(tempfile.mkdtemp(prefix="fm-delaylink-"))
        self.daemon: subprocess.Popen[bytes] | None = None
        self.forwarder: subprocess.Popen[bytes] | None = None

    def uri(self, host_file: Path, *, action: bool = False) -> str:
        port = ACTION_PORT if action else FLEET_PORT
        return f"test+tcp://{INSIDE}:{port}{host_file.resolve()}"

    def __enter__(self) -> DelayLink:
        try:
            self._namespace()
            self._start_daemon()
            self.set_delay(self.delay_us)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()

    def set_delay(self, delay_us: int) -> None:
        """(Re)start the forwarder with another delay; the daemon and its hosts stay."""
        self._stop(self.forwarder)
        self.delay_us = delay_us
        self.forwarder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, __file__, "forward", "--delay-us", str(delay_us)],
            stdout=subprocess.DEVNULL)
        _wait_port(INSIDE, CONTROL_PORT, self.forwarder)

    def counts(self) -> dict[str, int]:
        """Messages sent from clients to the daemon so far, per listening port ('fleet', 'action')."""
        with socket.create_connection((INSIDE, CONTROL_PORT), timeout=5) as sock:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        return dict(json.loads(data))

    def close(self) -> None:
        self._stop(self.forwarder)
        self._stop(self.daemon)
        subprocess.run(["ip", "link", "del", self.veth], stderr=subprocess.DEVNULL, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _namespace(self) -> None:
        for cmd in (f"ip netns add {self.ns}",
                    f"ip link add {self.veth} type veth peer name {self.veth}n",
                    f"ip link set {self.veth}n netns {self.ns}",
                    f"ip addr add {OUTSIDE}/30 dev {self.veth}",
                    f"ip link set {self.veth} up",
                    f"ip netns exec {self.ns} ip addr add {INSIDE}/30 dev {self.veth}n",
                    f"ip netns exec {self.ns} ip link set {self.veth}n up",
                    f"ip netns exec {self.ns} ip link set lo up"):
            subprocess.run(cmd.split(), check=True)

    def _start_daemon(self) -> None:
        for sub in ("run", "lib", "cache", "log"):
            (self.dir / sub).mkdir()
        if Path("/var/cache/libvirt/qemu").is_dir():  # saves the QEMU driver's ~8 s probe
            shutil.copytree("/var/cache/libvirt/qemu", self.dir / "cache" / "qemu", symlinks=True)
        conf = self.dir / "libvirtd.conf"
        conf.write_text(
            f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "127.0.0.1"\ntcp_port = "{DAEMON_PORT}"\n'
            f'auth_tcp = "none"\nauth_unix_ro = "none"\nauth_unix_rw = "none"\nhost_uuid = "{uuid.uuid4()}"\n'
            # a hundred hosts connect at once: above the defaults of 20 waiting clients and 5 calls each
            'max_clients = 1000\nmax_anonymous_clients = 500\nmax_workers = 64\nmax_client_requests = 64\n'
            f'log_outputs = "3:file:{self.dir}/libvirtd.log"\n')
        mounts = " && ".join(f"mount --bind {self.dir / sub} {target}" for sub, target in (
            ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"), ("cache", "/var/cache/libvirt"),
            ("log", "/var/log/libvirt")))
        script = f"mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt && {mounts} && " \
                 f"exec libvirtd --listen -f {conf} -p {self.dir}/libvirtd.pid"
        self.daemon = subprocess.Popen(["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation",
                                        "private", "sh", "-c", script], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        # The daemon listens on the namespace's loopback: look from inside.
        deadline = time.monotonic() + 60
        while subprocess.run(["ip", "netns", "exec", self.ns, "bash", "-c",
                              f"exec 3<>/dev/tcp/127.0.0.1/{DAEMON_PORT}"], stderr=subprocess.DEVNULL,
                             check=False).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "libvirtd.log")
                raise RuntimeError(f"libvirtd in {self.ns} did not start: "
                                   f"{log.read_text()[-2000:] if log.exists() else 'no log'}")
            time.sleep(0.1)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)


# ---------------------------------------------------------------- the forwarder (runs inside the namespace)

class _Direction:
    """One direction of one connection: a reader stamps each chunk, a sender releases it D later.

    Threads and ``time.sleep`` rather than asyncio: epoll's timeout has a 1 ms grain, too coarse
    for a 1 ms delay, while nanosleep overshoots by tens of microseconds.
    """

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, counter: list[int] | None) -> None:
        self.src, self.dst, self.delay, self.counter = src, dst, delay, counter
        self.queue: deque[tuple[float, bytes]] = deque()
        self.ready = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._send, daemon=True).start()

    def _read(self) -> None:
        try:
            while chunk := self.src.recv(262144):
                with self.ready:
                    self.queue.append((time.monotonic() + self.delay, chunk))
                    if self.counter is not None:
                        self.counter[0] += 1
                    self.ready.notify()
        except OSError:
            pass
        with self.ready:
            self.eof = True
            self.ready.notify()

    def _send(self) -> None:
        try:
            while True:
                with self.ready:
                    while not self.queue and not self.eof:
                        self.ready.wait()
                    if not self.queue:
                        break
                    due, chunk = self.queue.popleft()
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                self.dst.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)


def forward(delay_us: int) -> None:
    delay = delay_us / 1e6
    counters = {"fleet": [0], "action": [0]}

    def serve(port: int, label: str) -> None:
        listener = socket.create_server((INSIDE, port), backlog=512)
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", DAEMON_PORT))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Direction(client, upstream, delay, counters[label])
            _Direction(upstream, client, delay, None)

    for port, label in ((FLEET_PORT, "fleet"), (ACTION_PORT, "action")):
        threading.Thread(target=serve, args=(port, label), daemon=True).start()
    control = socket.create_server((INSIDE, CONTROL_PORT))
    while True:
        conn, _ = control.accept()
        with conn:
            conn.sendall(json.dumps({k: v[0] for k, v in counters.items()}).encode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the delaying forwarder (run inside the namespace)")
    parser.add_argument("mode", choices=["forward"])
    parser.add_argument("--delay-us", type=int, required=True)
    forward(parser.parse_args().delay_us)
