"""The server's shutdown lets requests already being handled finish first."""

import asyncio
import json

from fogmachine.app import Server


async def test_shutdown_waits_for_running_requests(make_config):
    server = Server(make_config())
    await server.start()
    assert server.ctx is not None
    db = server.ctx.db
    real_run = db.run
    entered = asyncio.Event()

    async def slow_run(fn, *args, **kwargs):
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
