"""Fixtures shared by every test: configurations, databases and a running server.

The server fixture starts the real application in-process on a free port, so
handler tests go through Tornado's HTTP stack exactly as a client does.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from fogmachine import config as configmod
from fogmachine.app import Server
from fogmachine.composition import Components
from fogmachine.config import Config
from fogmachine.context import Context
from fogmachine.tasks import TaskRegistry
from tests.support import cobbler, databases, realhosts, realparts, testhosts

ROOT = Path(__file__).resolve().parent.parent
# pytester: tests/test_realparts.py runs small suites against these hooks. apiclient: the API client's
# fixtures (make_api, api, and api_database_url, which a module may override) everywhere.
pytest_plugins = ["pytester", "tests.support.apiclient"]

# fixture -> the marker of the real part it brings (a test gets the marker of every fixture it uses)
FIXTURE_MARKERS = {"cobbler_server": "cobbler", "real_hosts": "realhosts", "browser": "browser"}
# a database parameter's value -> its marker (database_url, and any fixture or parametrize over backends)
BACKEND_MARKERS = {"mariadb": "mysql", "postgresql": "postgres"}
# Tests of the one shared Cobbler and the two shared libvirtd hosts see each other's objects (a reconcile
# removes another test's domain as an orphan, a listing counts another test's systems): under pytest-xdist
# (--dist loadgroup) they all run in one worker, one after another; everything else spreads out.
SERIAL_MARKERS = ("realhosts", "cobbler")
SERIAL_GROUP = "shared-hosts-and-cobbler"
# Tests check what an answer says, never how fast it came: Tornado's client gives up after 20 s by default,
# which a CPU-starved run (a burner beside four workers; a login answered after the per-account delay of up
# to 10 s plus an Argon2 hash) exceeds. Every AsyncHTTPClient the tests make waits longer.
HTTP_TIMEOUT_S = 180.0
tornado.httpclient.AsyncHTTPClient.configure(
    None, defaults={"connect_timeout": HTTP_TIMEOUT_S, "request_timeout": HTTP_TIMEOUT_S})
PARTS_PROPERTY = "fm_real_parts"


def real_part_markers(item: pytest.Item) -> set[str]:
    """The markers a test earns from the fixtures it uses and the database backends it is parametrized on."""
    names = set(getattr(item, "fixturenames", ()))
    marks = {marker for fixture, marker in FIXTURE_MARKERS.items() if fixture in names}
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec is not None else ()):
        if isinstance(value, str) and value in BACKEND_MARKERS:
            marks.add(BACKEND_MARKERS[value])
    return marks


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the markers must be there when it looks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the real parts it uses, so that -m "not cobbler" really leaves out every
    test that needs Cobbler (realparts.use fails a test that uses a part without its marker).

    Tests that stop a shared service run only under the test command, which owns those services
    (it sets FM_RUN_DISRUPTIVE=1); elsewhere they would pull MariaDB or Cobbler from under other runs."""
    for item in items:
        for marker in sorted(real_part_markers(item)):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)
        if any(item.get_closest_marker(marker) for marker in SERIAL_MARKERS):
            item.add_marker(pytest.mark.xdist_group(SERIAL_GROUP))
    if os.environ.get("FM_RUN_DISRUPTIVE") == "1":
        return
    skip = pytest.mark.skip(reason="stops a shared service: runs under ./bootstrap.sh test (FM_RUN_DISRUPTIVE=1)")
    for item in items:
        if "disruptive" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Tell realparts which test is running, so each use of a real part is counted against it."""
    realparts.current = item
    try:
        return (yield)
    finally:
        realparts.current = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """Carry the parts this test used on its report: under pytest-xdist the closing line is printed by
    the controller, which sees the workers' reports but not their ``realparts.used``."""
    report: pytest.TestReport = yield
    parts = sorted(part for part, nodeids in realparts.used.items() if item.nodeid in nodeids)
    if parts:
        report.user_properties.append((PARTS_PROPERTY, parts))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == PARTS_PROPERTY:
            for part in value:
                realparts.used[part].add(report.nodeid)
    if report.when == "call" and not report.skipped:
        realparts.ran.add(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Which real parts this run used and on how many tests that ran (a skip or a setup error is no run)."""
    if config.option.collectonly:
        return
    terminalreporter.write_sep("=", realparts.summary(), bold=True)


@pytest.fixture
def real_hosts() -> None:
    """The two real libvirtd/QEMU hosts (tests/support/realhosts.py); marks the test ``realhosts``."""
    realhosts.require()


@pytest.fixture
def cobbler_server() -> None:
    """The loopback Cobbler with the fmtest objects seeded (tests/support/cobbler.py); marks it ``cobbler``."""
    cobbler.require()
    cobbler.seed()


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Build a Config in a temporary data dir; keyword arguments are raw setting strings.

    ``hosts`` maps host names to test-driver kwargs (cpus, memory_mb, domains) or URIs.
    """

    def make(hosts: dict[str, Any] | None = None, **settings: str) -> Config:
        hosts = {"h1": {}} if hosts is None else hosts
        uris = {}
        for name, spec in hosts.items():
            uris[name] = spec if isinstance(spec, str) else testhosts.write_host(tmp_path / "hosts", name, **spec)
        virthosts = testhosts.write_virthosts(tmp_path / "virthosts.conf", uris)
        values = {"data_dir": str(tmp_path / "data"), "virthosts": str(virthosts), "listen_port": "0",
                  "local_catalog": str(ROOT / "catalog.conf")}
        values.update(settings)
        if "database_connection" not in settings:
            realparts.use("sqlite")  # the default: SQLite in the data dir
        return configmod.load(None, environ={}, **values)

    return make


@pytest.fixture(params=databases.BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new empty database on each backend (fails with the reason when unreachable; realparts)."""
    with databases.fresh_database(request.param, tmp_dir=str(tmp_path)) as url:
        yield url


@dataclass
class RunningServer:
    server: Server
    base_url: str

    @property
    def ctx(self) -> Context:
        assert self.server.ctx is not None
        return self.server.ctx

    @property
    def parts(self) -> Components:
        """Every part of the server (``composition.build``), started."""
        assert self.server.parts is not None
        return self.server.parts

    @property
    def tasks(self) -> TaskRegistry:
        return self.parts.tasks

    async def fetch(self, path: str, *, method: str = "GET", body: Any = None,
                    headers: dict[str, str] | None = None, **kwargs: Any) -> tornado.httpclient.HTTPResponse:
        """Fetch without raising on HTTP errors and without following redirects."""
        client = tornado.httpclient.AsyncHTTPClient()
        if body is not None and not isinstance(body, (str, bytes)):
            import json

            body = json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        if method in ("POST", "PUT", "PATCH") and body is None:
            body = b""
        return await client.fetch(self.base_url + path, method=method, body=body, headers=headers,
                                  raise_error=False, follow_redirects=False, **kwargs)


@pytest.fixture
async def start_server(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[Config], Any]]:
    """Start servers on free ports; each is stopped when the test ends.

    A test that also uses ``database_url`` gets that database set up first, so it is dropped
    only after the servers have stopped, whatever order the test names its fixtures in.
    """
    if "database_url" in request.fixturenames:
        request.getfixturevalue("database_url")
    started: list[Server] = []

    async def start(config: Config) -> RunningServer:
        server = Server(config)
        await server.start()
        started.append(server)
        return RunningServer(server, f"http://127.0.0.1:{server.port}")

    yield start
    for server in reversed(started):
        await server.stop()
