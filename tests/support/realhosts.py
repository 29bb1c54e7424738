"""The two real libvirtd/QEMU hosts of tests/infra/libvirt_hosts.sh, for provisioning tests.

Tests fail with the reason when they do not answer (skip only under FM_ALLOW_MISSING;
tests/support/realparts.py); they get the hosts through the ``real_hosts`` fixture. Everything a test makes is
named with its own prefix and removed afterwards, whatever state it was left in,
because other tests may use the same hosts at the same time.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support import realparts

STATE = Path(os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test"))
KERNEL = STATE / "tiny" / "vmlinuz"
INITRD = STATE / "tiny" / "initrd.img"
CONSOLE_DIR = STATE / "smoke"  # the same path on both hosts (host 2 only has /var/log etc. private)
URIS = {"rh1": "qemu+tcp://127.0.0.1/system", "rh2": "qemu+tcp://127.0.0.2/system"}


def unavailable() -> str | None:
    """Why the real hosts cannot be used, or None when they can."""
    return realparts.check("realhosts", _probe)


def _probe() -> str | None:
    for path in (KERNEL, INITRD):
        if not path.is_file():
            return f"{path} missing: run bash tests/infra/tiny_guest.sh build"
    for uri in URIS.values():
        try:
            done = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"virsh -c {uri} version failed: {exc}"
        if done.returncode != 0:
            return f"{uri} does not answer (start it: bash tests/infra/libvirt_hosts.sh start): {done.stderr.strip()}"
    return None


def require() -> None:
    """Record the use (the test must carry the marker); fail, or skip under FM_ALLOW_MISSING, if down."""
    realparts.use("realhosts")
    reason = unavailable()
    if reason:
        realparts.missing("realhosts", reason)


def write_virthosts(path: Path, names: tuple[str, ...] = ("rh1", "rh2")) -> Path:
    path.write_text("".join(f"{name}, {URIS[name]}, qemu\n" for name in names))
    return path


def free_port() -> int:
    """A port for the server to listen on, known before it starts (guests need public_url first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def virsh(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", "-c", URIS[host], *args], capture_output=True, text=True, timeout=60)


def domain_names(host: str) -> set[str]:
    done = virsh(host, "list", "--all", "--name")
    assert done.returncode == 0, done.stderr
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def remove_domains(prefix: str) -> None:
    for host in URIS:
        for name in domain_names(host):
            if name.startswith(prefix):
                virsh(host, "destroy", name)
                virsh(host, "undefine", name)


def console(name: str) -> str:
    path = CONSOLE_DIR / f"{name}.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else f"(no console log at {path})"
