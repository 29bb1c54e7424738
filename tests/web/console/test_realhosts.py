"""The console sockets on the real tiny guest, on each database: echo, busy, take over, the VNC relay, the audit.

The guest is checked out through the real service from a local catalog on host rh1, with
``console=tty0 console=ttyS0`` (tests/infra/tiny_guest.sh gives it a root shell on ttyS0).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Step
from fogmachine.services import checkout as co
from fogmachine.web.console.socket import CLOSE_TAKEN_OVER
from tests.support import provisioning as pv
from tests.support import realhosts as rh
from tests.web.console.conftest import close_of, open_socket, refused_status
from tests.web.pages.conftest import PageClient, Site, with_users

pytestmark = pytest.mark.realhosts
PREFIX = "fmtest-con-"
TINY = {"virt_type": "qemu", "ram_mb": 256, "vcpus": 1, "boot": "kernel", "kernel": str(rh.KERNEL),
        "initrd": str(rh.INITRD), "network": "user", "phonehome": "no",
        "cmdline": "console=tty0 console=ttyS0 panic=-1 fm.hostname={name}"}


async def real_site(make_config, start_server, tmp_path, **settings: str) -> Site:
    """A server on host rh1 with the tiny guest in its catalog, and users alice, bob and root."""
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    catalog = pv.write_catalog(tmp_path / "catalog.conf", {"tiny": TINY})
    config = make_config(hosts={}, virthosts=str(rh.write_virthosts(tmp_path / "real-virthosts.conf", ("rh1",))),
                         local_catalog=str(catalog), console_log_dir=str(rh.CONSOLE_DIR), **settings)
    return await with_users(await start_server(config))


async def tiny_guest(site: Site, owner: str = "alice") -> tuple[int, str]:
    """Check the tiny guest out and wait for its shell; (guest id, domain name)."""
    name = PREFIX + uuid.uuid4().hex[:6]
    guest = await co.checkout(site.ctx, site.actor(owner), co.CheckoutRequest(name, "tiny", 1, "console test"))
    row = await site.wait_for(guest.id, lambda g: g.step in (Step.READY, Step.FAILED), timeout=120)
    assert row.step == Step.READY, f"{row.step} {row.step_reason}\n{rh.console(name)}"
    log = rh.CONSOLE_DIR / f"{name}.log"
    deadline = asyncio.get_running_loop().time() + 90
    while not (log.exists() and "fm-init: ready" in log.read_text(errors="replace")):
        assert asyncio.get_running_loop().time() < deadline, f"{name} never got ready:\n{rh.console(name)}"
        await asyncio.sleep(0.1)
    return guest.id, name


class Terminal:
    """A serial socket's received bytes."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.data = bytearray()

    async def wake(self) -> None:
        """Press Enter until the guest answers (QEMU's pty drops the guest's output until it notices, within
        about a second, that the console opened its other end)."""
        for _ in range(60):
            await self.ws.write_message("\r")
            try:
                message = await asyncio.wait_for(self.ws.read_message(), 0.5)
            except TimeoutError:
                continue
            assert message is not None, f"closed: {self.ws.close_code} {self.ws.close_reason}"
            self.data += message
            return
        raise AssertionError("the guest never answered on its console")

    async def echo(self, timeout: float = 30) -> str:
        await self.wake()
        word = f"fm-{uuid.uuid4().hex[:10]}"
        await self.ws.write_message(f"echo {word}\r")
        pattern = re.compile(rb"(^|\n)" + re.escape(word.encode()) + rb"\r?\n")

        async def read() -> None:
            while not pattern.search(bytes(self.data)):
                message = await self.ws.read_message()
                assert message is not None, f"closed: {self.ws.close_code} {self.ws.close_reason}"
                assert isinstance(message, bytes)  # the guest's bytes come as binary messages
                self.data += message

        await asyncio.wait_for(read(), timeout)
        return word


def audit(site: Site, gid: int) -> Any:
    return site.ctx.db.run(lambda s: [(e.action, e.actor_name, e.message) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.action.like("console.%"), AuditEvent.object_id == str(gid))
        .order_by(AuditEvent.id))])


async def wait_audit(site: Site, gid: int, count: int) -> list[tuple[str, str, str]]:
    for _ in range(200):
        events = await audit(site, gid)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {await audit(site, gid)}")


async def test_serial_and_vnc_through_the_sockets(make_config, start_server, tmp_path, real_hosts, database_url):
    site = await real_site(make_config, start_server, tmp_path, database_connection=database_url)
    try:
        gid, name = await tiny_guest(site)
        base = site.srv.base_url
        path = f"/guests/{gid}/console/serial"
        alice, alice2, bob = await site.as_user("alice"), await site.as_user("alice"), await site.as_user("bob")
        assert await refused_status(base, path) == 401
        assert await refused_status(base, path, bob) == 404

        first = Terminal(await open_socket(base, path, alice, origin=base))
        await first.echo()
        busy = await open_socket(base, path, alice2)
        code, reason = await close_of(busy)
        assert code == 4409 and "take it over" in reason
        second = Terminal(await open_socket(base, path + "?takeover=1", alice2))
        code, reason = await close_of(first.ws)
        assert code == CLOSE_TAKEN_OVER and "alice took this console over" in reason
        await second.echo()
        # logging out ends the console too (the live feed's re-check of sessions, run here at once)
        assert (await alice2.post("/logout")).code == 303
        await site.srv.parts.live.poll_once(full=True)
        code, reason = await close_of(second.ws)
        assert (code, reason) == (4001, "session ended")
        events = await wait_audit(site, gid, 4)
        # the first session's close and the second's open are written by two sockets at about the same time
        opened = [e[2] for e in events if e[0] == "console.open"]
        closed = [re.sub(r"open \d+ s", "open N s", e[2]) for e in events if e[0] == "console.close"]
        assert events[0][0] == "console.open" and events[-1][0] == "console.close"
        assert opened == ["serial console", "serial console, taken over from another session"]
        assert closed == ["serial console, open N s: taken over by alice",
                          "serial console, open N s: the login session ended"]
        # the root shell's line is in the tail as well
        assert "echo fm-" in rh.console(name)

        # the graphical console: a ticket with the domain's own password, then the relay speaks RFB
        reply = await alice.post(f"/guests/{gid}/console/vnc-ticket")
        assert reply.code == 200, reply.text
        ticket = json.loads(reply.text)
        xml = subprocess.run(["virsh", "-c", rh.URIS["rh1"], "dumpxml", "--security-info", name],
                             capture_output=True, text=True, timeout=30).stdout
        assert re.search(rf"passwd=['\"]{re.escape(ticket['password'])}['\"]", xml)
        assert ticket["url"] == f"/guests/{gid}/console/vnc?ticket={ticket['ticket']}"
        alice3 = await site.as_user("alice")
        refused = await close_of(await open_socket(base, ticket["url"], alice3))  # another session's socket
        assert refused[0] == 4403
        ticket = json.loads((await alice.post(f"/guests/{gid}/console/vnc-ticket")).text)
        ws = await open_socket(base, ticket["url"], alice, origin=base, subprotocols=["binary"])
        banner = await asyncio.wait_for(ws.read_message(), 15)
        assert isinstance(banner, bytes) and banner.startswith(b"RFB 003.00")
        await ws.write_message(b"RFB 003.008\n", binary=True)
        types = b""
        while len(types) < 2:
            types += await asyncio.wait_for(ws.read_message(), 15)
        assert 2 in types[1:1 + types[0]]  # VNC authentication
        ws.close()
        events = await wait_audit(site, gid, 6)
        assert [(e[0], e[2].split(",")[0]) for e in events[4:]] == [("console.open", "vnc console"),
                                                                    ("console.close", "vnc console")]
    finally:
        rh.remove_domains(PREFIX)
        for log in rh.CONSOLE_DIR.glob(f"{PREFIX}*.log"):
            log.unlink(missing_ok=True)


async def test_idle_sessions_are_closed(make_config, start_server, tmp_path, real_hosts):
    site = await real_site(make_config, start_server, tmp_path, console_idle_timeout="2")
    try:
        gid, _ = await tiny_guest(site)
        alice = await site.as_user("alice")
        term = Terminal(await open_socket(site.srv.base_url, f"/guests/{gid}/console/serial", alice))
        await term.echo()  # typing keeps it open; then nothing for 2 s
        code, reason = await close_of(term.ws, timeout=30)
        assert code == 4101 and "without a keystroke" in reason
        events = await wait_audit(site, gid, 2)
        assert events[-1][0] == "console.close" and events[-1][2].endswith("idle for 2 s")
        assert site.ctx.consoles.holder(gid) is None
        # the console is free for the next session
        again = Terminal(await open_socket(site.srv.base_url, f"/guests/{gid}/console/serial",
                                           PageClient(site.srv, dict(alice.cookies))))
        await again.echo()
        again.ws.close()
    finally:
        rh.remove_domains(PREFIX)
        for log in rh.CONSOLE_DIR.glob(f"{PREFIX}*.log"):
            log.unlink(missing_ok=True)
