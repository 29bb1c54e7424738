"""A benchmark's verdicts on its targets: printed for people, collected by bench/run_all.py, and the exit status.

Each benchmark calls ``check(figure, target, met)`` once per target after printing its figures and
ends with ``sys.exit(exit_status())``: 0 when every target was met, 1 when one was missed. A line
``VERDICT {json}`` per check lets bench/run_all.py build its table without parsing prose.
"""

from __future__ import annotations

import json
import sys

MARK = "VERDICT "
_missed: list[str] = []
_checked: list[str] = []


def check(figure: str, target: str, met: bool, *, what: str = "") -> bool:
    """Record one verdict: ``figure`` (what was measured, with its unit) against ``target``."""
    benchmark = sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py")
    name = f"{benchmark} {what}".strip()
    verdict = "met" if met else "MISSED"
    print(f"  {name}: {figure} (target {target}): {verdict}")
    print(MARK + json.dumps({"benchmark": name, "figure": figure, "target": target, "verdict": verdict}),
          flush=True)
    _checked.append(name)
    if not met:
        _missed.append(name)
    return met


def exit_status() -> int:
    """1 when a target was missed or nothing was checked (a benchmark that measured nothing met nothing)."""
    return 1 if _missed or not _checked else 0
