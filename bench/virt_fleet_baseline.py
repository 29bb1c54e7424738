"""Baseline for the fleet sweep: the fewest raw libvirt calls that read what a resync needs.

    .venv/bin/python bench/virt_fleet_baseline.py HOSTFILE_DIR

Over persistent connections (opened once, like Fogmachine's), one sweep of a
host is:

* cold (first sweep of a connection): getInfo, getType, getVersion (static
  facts), getFreeMemory, getAllDomainStats(STATE) and one XMLDesc per domain
  (MACs, VNC port, memory, Fogmachine's mark), parsed with xml.etree;
* warm (every later sweep): getFreeMemory and getAllDomainStats(STATE) only,
  because the XML of a domain whose (id, state) did not change is already
  known.

No database, no asyncio, no threads: a plain loop, the cheapest way to get the
data on test-driver hosts, which answer in-process. ``virt_fleet_sweep.py``
imports this and runs it beside Fogmachine in the same process and run.
"""

from __future__ import annotations

import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt


def open_all(uris: list[str]) -> list[libvirt.virConnect]:
    return [libvirt.open(uri) for uri in uris]


def _parse(xml: str) -> tuple:
    root = ET.fromstring(xml)
    macs = tuple(m.get("address") for m in root.findall("./devices/interface/mac"))
    vnc = next((g.get("port") for g in root.findall("./devices/graphics") if g.get("type") == "vnc"), None)
    return (root.findtext("memory"), root.findtext("vcpu"), macs, vnc, root.find("metadata"))


def sweep(conns: list[libvirt.virConnect], known: dict[str, tuple] | None = None) -> dict[str, tuple]:
    """One sweep of every host; ``known`` (uuid -> parsed XML) makes it warm."""
    cold = known is None
    known = {} if known is None else known
    for conn in conns:
        if cold:
            conn.getInfo()
            conn.getType()
            conn.getVersion()
        conn.getFreeMemory()
        for dom, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE):
            uuid = dom.UUIDString()
            key = (dom.ID(), stats["state.state"])
            if cold or uuid not in known or known[uuid][0] != key:
                known[uuid] = (key, _parse(dom.XMLDesc(0)))
    return known


def measure(uris: list[str], warm_rounds: int = 5) -> dict[str, float]:
    """Seconds for: opening, a cold sweep, and the median warm sweep."""
    started = time.perf_counter()
    conns = open_all(uris)
    opened = time.perf_counter()
    known = sweep(conns)
    cold = time.perf_counter()
    warm = []
    for _ in range(warm_rounds):
        t = time.perf_counter()
        sweep(conns, known)
        warm.append(time.perf_counter() - t)
    for conn in conns:
        conn.close()
    return {"open": opened - started, "cold": cold - opened, "warm": statistics.median(warm),
            "domains": float(len(known))}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: virt_fleet_baseline.py HOSTFILE_DIR (a directory of test-driver host files)")
    files = sorted(Path(sys.argv[1]).resolve().glob("*.xml"))
    result = measure([f"test://{f}" for f in files])
    print(f"baseline over {len(files)} hosts, {int(result['domains'])} domains: open {result['open'] * 1000:.1f} ms, "
          f"cold sweep {result['cold'] * 1000:.1f} ms, warm sweep {result['warm'] * 1000:.1f} ms")
