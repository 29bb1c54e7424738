"""Run every benchmark and print one table: benchmark, figure, target, verdict. Exits 1 if any target
was missed or any benchmark failed to give its verdict.

    .venv/bin/python bench/run_all.py [NAME ...]     (NAME: e.g. virt_memory; default: all of them)

Each benchmark runs in its own process with its default settings, one after the other (they measure
time, so running them side by side would spoil each other's figures), its output passed through.
Needs what the benchmarks need: the loopback Cobbler, the two real libvirtd hosts, the tiny guest
(``./bootstrap.sh test`` sets them all up; see each benchmark's docstring) and wrk.
bench/virt_fleet_baseline.py is not in the list: it is the baseline half of virt_fleet_sweep (and
bench/delaylink.py is virt_network's network link, bench/api_schema_pydantic.py the pydantic half of
api_schema, which needs pydantic from the test extras). virt_network and virt_memory need root (a network
namespace with a libvirtd serving the hosts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK = "VERDICT "
BENCHMARKS = ("api_schema", "api_guests_list", "live_updates", "virt_fleet_sweep", "virt_freshness", "virt_memory",
              "checkout_overhead", "e2e_ready", "env_critical_path", "virt_network", "console_echo")
TIMEOUT = 1800.0


def run(name: str, directory: Path = HERE) -> tuple[list[dict[str, str]], int, float]:
    """Run one benchmark; its verdicts, exit status and seconds."""
    started = time.monotonic()
    verdicts: list[dict[str, str]] = []
    print(f"\n===== {name}", flush=True)
    proc = subprocess.Popen([sys.executable, str(directory / f"{name}.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(HERE.parent))
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(MARK):
            verdicts.append(json.loads(line[len(MARK):]))
        else:
            print(line, end="", flush=True)
    try:
        status = proc.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        status = -9
    return verdicts, status, time.monotonic() - started


def main(names: list[str], benchmarks: tuple[str, ...] = BENCHMARKS, directory: Path = HERE) -> int:
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks)}", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, str, str]] = []
    for name in names or benchmarks:
        verdicts, status, seconds = run(name, directory)
        for v in verdicts:
            rows.append((v["benchmark"], v["figure"], v["target"], v["verdict"]))
        if status != 0 and all(v["verdict"] == "met" for v in verdicts):
            rows.append((name, f"exited with status {status} after {seconds:.0f} s", "-", "ERROR"))
        elif not verdicts:
            rows.append((name, "no verdict", "-", "ERROR"))
    widths = [max(len(r[i]) for r in [("benchmark", "figure", "target", "verdict"), *rows]) for i in range(4)]
    print()
    for row in [("benchmark", "figure", "target", "verdict"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    failed = [r for r in rows if r[3] != "met"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} targets met" + (": FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
