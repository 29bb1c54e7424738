"""bench/verdict.py and bench/run_all.py: a missed target is a non-zero exit and a MISSED row, a benchmark
that dies or says nothing is an ERROR row, and the table has benchmark, figure, target and verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import run_all

ROOT = Path(__file__).resolve().parent.parent.parent
HEADER = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom bench.verdict import check, exit_status\n"
BENCHES = {
    "fast": HEADER + 'check("12 ms", "< 20 ms", True)\nsys.exit(exit_status())\n',
    "slow": HEADER + 'check("31 ms", "< 20 ms", False)\ncheck("1.1", "<= 1.5", True, what="ratio")\n'
                     "sys.exit(exit_status())\n",
    "crash": HEADER + 'raise RuntimeError("wrk reported errors")\n',
    "silent": HEADER + "sys.exit(exit_status())\n",
}


@pytest.fixture
def benches(tmp_path: Path) -> Path:
    for name, text in BENCHES.items():
        (tmp_path / f"{name}.py").write_text(text)
    return tmp_path


def test_a_missed_target_is_a_non_zero_exit(benches: Path) -> None:
    statuses = {name: subprocess.run([sys.executable, str(benches / f"{name}.py")], capture_output=True,
                                     timeout=60).returncode for name in BENCHES}
    assert statuses == {"fast": 0, "slow": 1, "crash": 1, "silent": 1}


def test_the_table_and_the_status_of_the_whole_run(benches: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["fast"], tuple(BENCHES), benches) == 0
    assert run_all.main([], tuple(BENCHES), benches) == 1
    table = capsys.readouterr().out.split("benchmark  ")[-1].splitlines()
    rows = [line.split() for line in table[2:] if line.strip()]
    assert rows[:4] == [["fast", "12", "ms", "<", "20", "ms", "met"], ["slow", "31", "ms", "<", "20", "ms", "MISSED"],
                        ["slow", "ratio", "1.1", "<=", "1.5", "met"],
                        ["crash", "exited", "with", "status", "1", "after", *rows[3][6:]]]
    assert rows[3][-2:] == ["-", "ERROR"]
    assert rows[4][:5] == ["silent", "exited", "with", "status", "1"] and rows[4][-2:] == ["-", "ERROR"]
    assert rows[5] == ["2", "of", "5", "targets", "met:", "FAILED"]
