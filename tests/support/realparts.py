"""The real parts the test command starts, and what a test does when one is missing.

The suite runs against real MariaDB, PostgreSQL, libvirtd hosts, Cobbler and Chromium. Under the test
command a missing part is a FAILURE, never a skip: a CI run that skipped the hard half of the suite
would look green. A developer who wants a quick local run without some part says so explicitly:

    FM_ALLOW_MISSING=cobbler,realhosts pytest ...     (or FM_ALLOW_MISSING=1 for all of them)

CI never sets it. Every use of a part is recorded against the running test, so the end of the run can
print how many tests really ran on each part (``summary``), and a test that uses a part without the
part's marker fails: ``-m "not cobbler"`` must deselect every test that needs Cobbler.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NoReturn

import pytest

# part -> the marker every test using it carries (applied from fixtures in tests/conftest.py)
MARKERS = {"sqlite": None, "mariadb": "mysql", "postgresql": "postgres", "realhosts": "realhosts",
           "cobbler": "cobbler", "chromium": "browser"}
LABELS = {"sqlite": "sqlite", "mariadb": "mariadb", "postgresql": "postgresql", "realhosts": "libvirtd hosts",
          "cobbler": "cobbler", "chromium": "chromium"}
# other spellings a developer may use in FM_ALLOW_MISSING
ALIASES = {"mysql": "mariadb", "postgres": "postgresql", "libvirtd": "realhosts", "hosts": "realhosts",
           "browser": "chromium"}
ALLOW_VARIABLE = "FM_ALLOW_MISSING"

current: pytest.Item | None = None  # the test being set up, run or torn down (set by tests/conftest.py)
used: dict[str, set[str]] = {part: set() for part in MARKERS}  # part -> node ids of the tests that used it
ran: set[str] = set()  # node ids whose test body ran (passed or failed, not skipped)


answered: set[str] = set()  # parts that answered once: not asked again
gone: set[str] = set()  # parts that did not answer within GRACE: asked once more, without waiting
# seconds: a disruptive test of another run may be restarting the part right now
GRACE = float(os.environ.get("FM_MISSING_GRACE", "15"))


def check(part: str, probe: Callable[[], str | None]) -> str | None:
    """Why ``part`` cannot be used (``probe``'s answer), or None. A part that answered once is taken as
    there; one that does not answer is asked again for GRACE seconds the first time (a restart is no
    absence), and once without waiting after that (a missing part costs each test no time)."""
    if part in answered:
        return None
    deadline = time.monotonic() + (0 if part in gone else GRACE)
    while True:
        reason = probe()
        if reason is None:
            answered.add(part)
            gone.discard(part)
            return None
        if time.monotonic() >= deadline:
            gone.add(part)
            return reason
        time.sleep(0.5)


def allowed_missing(part: str, environ: dict[str, str] | None = None) -> bool:
    """Whether the developer said this part may be missing (FM_ALLOW_MISSING=1, all, or a list)."""
    value = (os.environ if environ is None else environ).get(ALLOW_VARIABLE, "").strip().lower()
    if value in ("1", "all", "yes", "true"):
        return True
    named = {ALIASES.get(word.strip(), word.strip()) for word in value.split(",") if word.strip()}
    return part in named


def missing(part: str, reason: str) -> NoReturn:
    """A part the test needs is not there: fail (the default), or skip when the developer allowed it."""
    if allowed_missing(part):
        pytest.skip(f"{reason} [{ALLOW_VARIABLE} allows a missing {part}]")
    pytest.fail(f"{reason}\n{part} is a real part the test command starts; it must be there. For a quick local "
                f"run without it, set {ALLOW_VARIABLE}={part} (CI never does).", pytrace=False)


def use(part: str) -> None:
    """Record that the current test uses ``part``; fail it when it lacks the part's marker."""
    item = current
    if item is None:
        return
    marker = MARKERS[part]
    if marker is not None and item.get_closest_marker(marker) is None:
        pytest.fail(f"{item.nodeid} uses {part} without the '{marker}' marker: request the part through its "
                    f"fixture (see tests/conftest.py) so that -m 'not {marker}' deselects it", pytrace=False)
    used[part].add(item.nodeid)


def summary() -> str:
    """One line: each part and how many tests that used it actually ran (a 0 shows a part left out)."""
    counts = [f"{LABELS[part]} {len(nodeids & ran)}" for part, nodeids in used.items()]
    return "real parts (tests that ran on each): " + ", ".join(counts)
