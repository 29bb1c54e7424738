"""Keystroke-to-echo round trip on the serial console of the real tiny guest, over Fogmachine's WebSocket.

    .venv/bin/python bench/console_echo.py [--keys N] [--uri qemu+tcp://127.0.0.1/system]

Needs the libvirtd/QEMU host (tests/infra/libvirt_hosts.sh start) and the tiny guest with its shell on
ttyS0 (tests/infra/tiny_guest.sh build).

A Fogmachine server in this process checks the tiny guest out from a local catalog, a client logs in
and opens ``/guests/ID/console/serial`` as a browser does. Each round types one letter and waits for its
echo (the guest's tty echoes it, the shell's line editor draws it): WebSocket message -> the console's
writer thread -> libvirt stream -> libvirtd -> the guest's pty -> the emulated UART -> the guest's kernel,
and all the way back through the stream callback on libvirt's event thread. The line is erased every 40
letters (Ctrl-U). Figures: p50 and p95 of N round trips; target p95 < 50 ms on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import libvirt
import tornado.httpclient
import tornado.websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.verdict import check, exit_status  # noqa: E402
from fogmachine import config as configmod  # noqa: E402
from fogmachine.app import Server  # noqa: E402
from fogmachine.db.models import Step  # noqa: E402
from fogmachine.services import checkout as co  # noqa: E402
from fogmachine.services import lifecycle  # noqa: E402
from fogmachine.services.actor import Actor  # noqa: E402
from fogmachine.services.users import create_user  # noqa: E402

STATE = Path(os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test"))
PASSWORD = "bench console password"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def log_in(base: str) -> str:
    """The session and _xsrf cookies of a login as ``bench``."""
    client = tornado.httpclient.AsyncHTTPClient()
    page = await client.fetch(base + "/login")
    xsrf = next(c.split(";")[0] for c in page.headers.get_list("Set-Cookie") if c.startswith("_xsrf="))
    body = urllib.parse.urlencode({"username": "bench", "password": PASSWORD, "_xsrf": xsrf.split("=", 1)[1]})
    reply = await client.fetch(base + "/login", method="POST", body=body, headers={"Cookie": xsrf},
                               follow_redirects=False, raise_error=False)
    session = next(c.split(";")[0] for c in reply.headers.get_list("Set-Cookie") if c.startswith("fm_session="))
    return f"{xsrf}; {session}"


async def wait_ready(ctx, guest_id: int, log: Path) -> None:  # type: ignore[no-untyped-def]
    from fogmachine.services.guests import get_guest

    deadline = time.monotonic() + 180
    while True:
        row = await ctx.db.run(lambda s: get_guest(s, Actor(None, "bench", is_admin=True), guest_id))
        if row.step == Step.FAILED:
            raise SystemExit(f"the guest failed: {row.step_reason}")
        if row.step == Step.READY and log.exists() and "fm-init: ready" in log.read_text(errors="replace"):
            return
        if time.monotonic() > deadline:
            raise SystemExit("the guest never got ready")
        await asyncio.sleep(0.2)


async def measure(ws: tornado.websocket.WebSocketClientConnection, keys: int) -> list[float]:
    received = bytearray()

    async def until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.perf_counter() + timeout
        while not predicate():
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            try:
                message = await asyncio.wait_for(ws.read_message(), left)
            except TimeoutError:
                return False
            if message is None:
                raise SystemExit(f"the console closed: {ws.close_code} {ws.close_reason}")
            received.extend(message if isinstance(message, bytes) else message.encode())
        return True

    # Enter until the guest answers: QEMU's pty drops output until it notices the console (about 1 s).
    for _ in range(60):
        mark = len(received)
        await ws.write_message("\r")
        if await until(lambda mark=mark: len(received) > mark, 0.5):
            break
    else:
        raise SystemExit("the guest never answered on its console")
    await until(lambda: False, 0.5)  # let the prompt settle
    times: list[float] = []
    for i in range(keys):
        if i and i % 40 == 0:
            await ws.write_message("\x15")
            await until(lambda: False, 0.3)
        letter = LETTERS[i % len(LETTERS)]
        mark = len(received)
        started = time.perf_counter()
        await ws.write_message(letter)
        if not await until(lambda letter=letter, mark=mark: letter.encode() in received[mark:], 5):
            raise SystemExit(f"no echo of {letter!r}: {bytes(received[-200:])!r}")
        times.append(time.perf_counter() - started)
    await ws.write_message("\x15")
    return times


async def main(keys: int, uri: str) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="fm-bench-console-"))
    (tmp / "virthosts.conf").write_text(f"bench, {uri}, qemu\n")
    logs = STATE / "smoke"
    logs.mkdir(parents=True, exist_ok=True)
    (tmp / "catalog.conf").write_text(
        "[tiny]\ndescription = the tiny test guest\nvirt_type = qemu\nram_mb = 256\nvcpus = 1\nboot = kernel\n"
        f"kernel = {STATE / 'tiny' / 'vmlinuz'}\ninitrd = {STATE / 'tiny' / 'initrd.img'}\nnetwork = user\n"
        "phonehome = no\ncmdline = console=tty0 console=ttyS0 panic=-1 fm.hostname={name}\n")
    port = free_port()
    config = configmod.load(None, environ={}, data_dir=str(tmp / "data"), virthosts=str(tmp / "virthosts.conf"),
                            listen_port=str(port), local_catalog=str(tmp / "catalog.conf"),
                            console_log_dir=str(logs), log_level="warning")
    server = Server(config)
    await server.start()
    ctx = server.ctx
    assert ctx is not None
    from fogmachine.services.passwords import hash_password

    user = await ctx.db.run(create_user, "bench", PASSWORD, password_hash=hash_password(PASSWORD))
    actor = Actor(user.id, "bench")
    name = f"fmbench-con-{uuid.uuid4().hex[:6]}"
    guest = None
    try:
        guest = await co.checkout(ctx, actor, co.CheckoutRequest(name, "tiny", 1, "console benchmark"))
        await wait_ready(ctx, guest.id, logs / f"{name}.log")
        base = f"http://127.0.0.1:{port}"
        cookies = await log_in(base)
        request = tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{port}/guests/{guest.id}/console/serial",
                                                 headers={"Cookie": cookies, "Origin": base})
        ws = await tornado.websocket.websocket_connect(request)
        try:
            return await measure(ws, keys)
        finally:
            ws.close()
    finally:
        if guest is not None:
            try:
                await lifecycle.delete(ctx, actor, guest.id)
            except Exception as exc:  # the benchmark's figures stand; say what was left behind
                print(f"deleting {name} failed: {exc}", file=sys.stderr)
        (logs / f"{name}.log").unlink(missing_ok=True)
        await server.stop()


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--uri", default="qemu+tcp://127.0.0.1/system")
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda *_a: None, None)
    times = asyncio.run(main(args.keys, args.uri))
    ms = sorted(t * 1000 for t in times)
    p50 = statistics.median(ms)
    p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
    print(f"keystroke to echo over the WebSocket, {len(ms)} keys: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
          f"min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms")
    print(json.dumps({"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "keys": len(ms)}))
    check(f"p95 {p95:.1f} ms (p50 {p50:.1f} ms, {len(ms)} keys)", "p95 < 50 ms", p95 < 50)
    return exit_status()


if __name__ == "__main__":
    sys.exit(cli())
