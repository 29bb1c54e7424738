"""The server's start and shutdown: requests already being handled finish first; a refused start leaves
nothing running; the catalog source the configuration picks."""

import asyncio
import json
import socket
import threading

import pytest
from sqlalchemy import event

from fogmachine.app import Server
from fogmachine.catalog import CobblerCatalog, LocalCatalog
from fogmachine.errors import ConfigError
from fogmachine.services import accounts


async def test_shutdown_waits_for_running_requests(make_config):
    server = Server(make_config())
    await server.start()
    assert server.ctx is not None
    db = server.ctx.db
    real_run = db.run
    entered = asyncio.Event()

    async def slow_run(fn, *args, **kwargs):
        if getattr(fn, "__name__", "") == "_ping":  # the health check's query; background work runs as is
            entered.set()
            await asyncio.sleep(1.0)  # a slow query, in flight when shutdown begins
        return await real_run(fn, *args, **kwargs)

    db.run = slow_run
    import tornado.httpclient

    client = tornado.httpclient.AsyncHTTPClient()
    request = asyncio.ensure_future(client.fetch(f"http://127.0.0.1:{server.port}/healthz", raise_error=False))
    await entered.wait()
    await server.stop()
    reply = await request
    assert reply.code == 200, reply.code
    assert json.loads(reply.body)["status"] == "ok"


async def test_failed_start_leaves_nothing_running(make_config):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(make_config(listen_port=str(port)))
        with pytest.raises(OSError):
            await server.start()
    assert server.ctx is not None
    assert server.ctx.hosts is not None and all(not h.connected for h in server.ctx.hosts.all())
    assert server.ctx.db.executor._shutdown
    assert server.ctx.accounts.executor._shutdown  # the parts started before the refusal are stopped


async def test_a_catalog_source_it_cannot_build_stops_the_start_and_leaves_nothing_running(make_config):
    server = Server(make_config(catalog_source="ldap"))
    with pytest.raises(ConfigError, match="bad value 'ldap' for catalog_source"):
        await server.start()
    assert server.ctx is None  # nothing was built: the refusal came first
    assert server.db is not None and server.db.executor._shutdown


@pytest.mark.parametrize(("source", "expected"), [("auto", CobblerCatalog), ("local", LocalCatalog)])
async def test_the_server_attaches_the_source_and_its_cobbler_client(make_config, source, expected):
    """Nothing asks Cobbler at start (the port is closed): the client is only made, and only for its source."""
    server = Server(make_config(catalog_source=source, cobbler_url="http://127.0.0.1:9/cobbler_api"))
    await server.start()
    try:
        ctx = server.ctx
        assert type(ctx.catalog) is expected and ctx.catalog in server.components
        if expected is CobblerCatalog:
            assert ctx.cobbler is ctx.catalog.cobbler and ctx.cobbler not in server.components  # the source's own
        else:
            assert ctx.cobbler is None
    finally:
        await server.stop()


def _hashing_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("fm-hash")}


async def test_stopping_the_server_stops_the_parts_it_built(make_config):
    """The hashing pool's threads end and the token cache's session hooks come off: nothing outlives a stop."""
    others = _hashing_threads()  # another test's, if any: not this server's business
    server = Server(make_config())
    await server.start()
    ctx = server.ctx
    await accounts.hash_password(ctx, "correct horse battery staple")  # the pool's threads start on first use
    assert _hashing_threads() - others
    assert event.contains(ctx.db.sessionmaker, "after_commit", ctx.tokens._clear_if_changed)
    live_hooks = server.parts.live._watch  # the live feed's commit wake (web/live/commits.py)
    assert live_hooks is not None and event.contains(ctx.db.sessionmaker, "after_commit", live_hooks._after_commit)
    assert [type(c).__name__ for c in server.components] == [
        "HashingPool", "TokenCache", "HostManager", "LocalCatalog", "Provisioner", "EnvironmentWork", "TaskRegistry",
        "LiveFeed"]
    assert "memtrim" in server.components[6].tasks  # type: ignore[attr-defined]  # freed memory, periodically
    await server.stop()
    assert ctx.accounts.executor._shutdown and not _hashing_threads() - others
    assert not event.contains(ctx.db.sessionmaker, "after_commit", ctx.tokens._clear_if_changed)
    assert not event.contains(ctx.db.sessionmaker, "after_commit", live_hooks._after_commit)
