"""The suite's own rules about real parts (tests/support/realparts.py, tests/conftest.py), run on small
suites in a subprocess with the real conftest: a missing part fails unless a developer allowed it, the
markers follow the fixtures a test uses, and the closing line counts what really ran on each part."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import realparts

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
from tests.conftest import *  # noqa: F403  (the real fixtures and hooks)
from tests.support import cobbler
cobbler.XMLRPC_URL = "http://127.0.0.1:1/"  # nobody listens there: Cobbler is missing in this little suite
"""

USES_COBBLER = """
import pytest

@pytest.fixture
def catalog(cobbler_server):  # needs Cobbler one fixture away, no marker written anywhere
    return "catalog"

def test_cobbler_through_another_fixture(catalog):
    pass

def test_needs_nothing():
    pass
"""


Runner = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """Run the little suite in a subprocess that imports tests.conftest from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # 8 s a run instead of 30 under load
    monkeypatch.setenv("FM_MISSING_GRACE", "0")  # the missing Cobbler here will not come back

    def run(*args: str, allow: str | None = None) -> pytest.RunResult:
        if allow is None:
            monkeypatch.delenv(realparts.ALLOW_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(realparts.ALLOW_VARIABLE, allow)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "pytest_asyncio",
                                             "-o", "asyncio_mode=auto", *args)

    return run


def test_a_missing_part_fails_the_test_unless_the_developer_allows_it(pytester: pytest.Pytester, run: Runner) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=USES_COBBLER)
    failed = run()
    failed.assert_outcomes(passed=1, errors=1)
    failed.stdout.fnmatch_lines(["*Cobbler at http://127.0.0.1:1/ not answering*",
                                 "*set FM_ALLOW_MISSING=cobbler*"])
    run(allow="cobbler").assert_outcomes(passed=1, skipped=1)
    run(allow="mariadb,realhosts").assert_outcomes(passed=1, errors=1)  # allowing others is no excuse


def test_markers_come_from_the_fixtures_and_backends_a_test_uses(pytester: pytest.Pytester, run: Runner) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=USES_COBBLER + """
def test_every_backend(database_url):
    pass
""")
    result = run("--collect-only", "-q", "-m", "not cobbler and not postgres")
    result.stdout.fnmatch_lines(["*3/5 tests collected (2 deselected)*"])
    result.stdout.no_fnmatch_line("*test_cobbler_through_another_fixture*")
    result.stdout.no_fnmatch_line("*postgresql*")
    mysql = run("--collect-only", "-q", "-m", "mysql")
    mysql.stdout.fnmatch_lines(["test_it.py::test_every_backend[[]mariadb[]]", "*1/5 tests collected*"])


def test_a_part_used_without_its_fixture_fails_for_want_of_the_marker(pytester: pytest.Pytester, run: Runner) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it="""
from tests.support import cobbler

def test_calls_cobbler_directly():
    cobbler.require()
""")
    result = run(allow="1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*uses cobbler without the 'cobbler' marker*"])


def test_the_closing_line_counts_tests_that_ran_on_each_part(pytester: pytest.Pytester, run: Runner) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=USES_COBBLER + """
import pytest

def test_every_backend(database_url):
    pass

@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_skipped_after_the_database_was_made(database_url, backend):
    pytest.skip("did not run")
""")
    result = run("-k", "not another_fixture")
    result.assert_outcomes(passed=4, skipped=6)
    # 3 backends ran test_every_backend; the 6 skipped ones made databases but count for nothing
    result.stdout.fnmatch_lines(["*real parts (tests that ran on each): sqlite 1, mariadb 1, postgresql 1, "
                                 "libvirtd hosts 0, cobbler 0, chromium 0*"])


def test_the_closing_line_counts_the_workers_tests_under_xdist(pytester: pytest.Pytester, run: Runner) -> None:
    """The controller prints the line: the parts each worker's tests used travel on their reports."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it="""
import pytest

@pytest.mark.parametrize("n", range(4))
def test_every_backend(database_url, n):
    pass
""")
    result = run("-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["*real parts (tests that ran on each): sqlite 4, mariadb 4, postgresql 4, *"])


def test_the_shared_hosts_and_cobbler_tests_run_in_one_worker(pytester: pytest.Pytester, run: Runner,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --dist loadgroup every test that uses the real hosts or Cobbler goes to the same worker."""
    pytester.makeconftest(CONFTEST + """
from tests.support import realhosts
cobbler.require = lambda: None  # pretend both are there: only the grouping is under test
cobbler.seed = lambda: None
realhosts.require = lambda: None
""")
    pytester.makepyfile(test_it="""
import os
import pytest

def note(kind):
    with open(os.path.join(os.environ["FM_WORKERS_FILE"]), "a") as out:
        out.write(kind + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")

@pytest.mark.parametrize("n", range(4))
def test_hosts(real_hosts, n):
    note("shared")

@pytest.mark.parametrize("n", range(4))
def test_cobbler(cobbler_server, n):
    note("shared")

@pytest.mark.parametrize("n", range(12))
def test_alone(n):
    note("alone")
""")
    workers_file = pytester.path / "workers.txt"
    monkeypatch.setenv("FM_WORKERS_FILE", str(workers_file))
    result = run("-p", "xdist", "-n", "3", "--dist", "loadgroup")
    result.assert_outcomes(passed=20)
    seen = [line.split() for line in workers_file.read_text().splitlines()]
    assert len({worker for kind, worker in seen if kind == "shared"}) == 1
    assert len([kind for kind, _ in seen if kind == "shared"]) == 8
