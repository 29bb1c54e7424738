"""A guest's consoles: who may open them, one serial session per guest, VNC tickets, and the audit log.

Only the guest's owner and administrators may open a console; anyone else is told the guest does not
exist (``guests.get_guest``), as everywhere. The consoles themselves are the host's (``virt.console``):
the serial port's stream on the host connection, the VNC server's address and password from the live
domain XML.

**One serial session per guest.** This process keeps who holds each guest's console (``ConsoleBroker``);
libvirt keeps the same rule across processes (a second ``openConsole`` without force is refused, which
``virt.errors`` says as a ``Conflict``). Taking over closes this process's holder first and opens with
libvirt's force flag, which ends a holder in any other process too.

**VNC tickets.** A browser asks for a ticket (a POST with its XSRF token) and opens the relay's
WebSocket with it within ``TICKET_TTL_S``; the ticket works once, for that login session and that
guest only. A WebSocket URL cannot carry the XSRF token's protection (browsers send cookies with a
cross-site socket), the ticket does instead. Tickets live in this process's memory, not in a table:
they last 30 s and are redeemed by the very next request of the page that asked, so the only cost is
that several processes behind one address need the proxy to send a browser's console requests to one
process (session affinity), which the relay needs anyway, since the TCP connection to the VNC server
lives in the process that opened it.

Opening and closing either console are audit events (``console.open``, ``console.close`` with how long
it was open and why it ended), each in a unit of work of its own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session

from fogmachine.errors import Conflict, FogmachineError, PermissionDenied
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.services.guests import get_guest
from fogmachine.virt.console import SerialConsole, connect_vnc

if TYPE_CHECKING:
    from fogmachine.context import Context

KINDS = ("serial", "vnc")
TICKET_TTL_S = 30.0
TICKET_BYTES = 24


@dataclass(frozen=True)
class ConsoleTarget:
    """The guest whose console is opened, and where its domain is."""

    guest_id: int
    guest_name: str
    host_name: str
    domain_name: str


def find_target(session: Session, actor: Actor, guest_id: int) -> ConsoleTarget:
    """The guest's console target; NotFound for a guest ``actor`` may not see, Conflict without a domain."""
    guest = get_guest(session, actor, guest_id)
    if guest.host is None or not guest.domain_name:
        raise Conflict(f"guest {guest.name} has no domain on a host yet")
    return ConsoleTarget(guest.id, guest.name, guest.host.name, guest.domain_name)


def record_open(session: Session, actor: Actor, target: ConsoleTarget, kind: str, *, took_over: bool = False) -> None:
    message = f"{kind} console" + (", taken over from another session" if took_over else "")
    audit.record(session, actor, "console.open", object_type="guest", object_id=target.guest_id,
                 object_name=target.guest_name, message=message)


def record_close(session: Session, actor: Actor, target: ConsoleTarget, kind: str, seconds: float,
                 reason: str) -> None:
    audit.record(session, actor, "console.close", object_type="guest", object_id=target.guest_id,
                 object_name=target.guest_name, message=f"{kind} console, open {seconds:.0f} s: {reason}")


class Holder(Protocol):
    """Whoever holds a guest's serial console in this process (the web's socket)."""

    def taken_over(self, by: str) -> None:
        """Another session took the console: stop using it and tell the user."""


@dataclass(frozen=True)
class Ticket:
    session_id: int
    user_id: int
    guest_id: int
    expires: float


class ConsoleBroker:
    """This process's serial-console holders (one per guest) and its unredeemed VNC tickets."""

    def __init__(self, ttl: float = TICKET_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._holders: dict[int, Holder] = {}
        self._tickets: dict[str, Ticket] = {}

    # ------------------------------------------------------------------ serial

    def holder(self, guest_id: int) -> Holder | None:
        return self._holders.get(guest_id)

    def claim(self, guest_id: int, holder: Holder, *, take_over: bool, by: str) -> bool:
        """Make ``holder`` the guest's; True when it took the console from another holder here.

        Refused with a ``Conflict`` (409) while another holder has it and ``take_over`` is false.
        """
        current = self._holders.get(guest_id)
        if current is not None and current is not holder and not take_over:
            raise Conflict("another session has this guest's serial console open; take it over to use it here",
                           details={"take_over": True})
        self._holders[guest_id] = holder
        if current is not None and current is not holder:
            current.taken_over(by)
            return True
        return False

    def release(self, guest_id: int, holder: Holder) -> None:
        """``holder`` is done; a holder that already lost the console to another releases nothing."""
        if self._holders.get(guest_id) is holder:
            del self._holders[guest_id]

    # ------------------------------------------------------------------ VNC tickets

    def issue(self, actor: Actor, guest_id: int) -> str:
        """A one-time ticket for ``actor``'s login session to open ``guest_id``'s graphical console."""
        if actor.session_id is None or actor.user_id is None:
            raise PermissionDenied("a graphical console needs a browser's login session")
        now = self._clock()
        self._tickets = {key: t for key, t in self._tickets.items() if t.expires > now}
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        self._tickets[ticket] = Ticket(actor.session_id, actor.user_id, guest_id, now + self.ttl)
        return ticket

    def redeem(self, ticket: str, actor: Actor, guest_id: int) -> None:
        """Use ``ticket`` up; PermissionDenied (403) when it is unknown, used, expired, or not this
        session's or this guest's. A ticket offered by the wrong session is gone too: it leaked."""
        found = self._tickets.pop(ticket, None)
        if found is None or found.expires <= self._clock():
            raise PermissionDenied("this console ticket is unknown, used or expired; open the console again")
        if (found.session_id, found.user_id, found.guest_id) != (actor.session_id, actor.user_id, guest_id):
            raise PermissionDenied("this console ticket belongs to another session or guest")


# ---------------------------------------------------------------------- the consoles


@dataclass
class SerialSession:
    target: ConsoleTarget
    console: SerialConsole
    opened_at: float


async def open_serial(ctx: Context, actor: Actor, guest_id: int, holder: Holder, *, take_over: bool,
                      on_data: Callable[[bytes], None], on_end: Callable[[str], None]) -> SerialSession:
    """Open the guest's serial console for ``holder``; audited. Nothing stays claimed or open on failure."""
    target = await ctx.db.run(find_target, actor, guest_id)
    took_over = ctx.consoles.claim(target.guest_id, holder, take_over=take_over, by=actor.username)
    console: SerialConsole | None = None
    try:
        host = ctx.need_hosts().get(target.host_name)
        console = await host.open_console(target.domain_name, force=take_over, on_data=on_data, on_end=on_end,
                                          label=target.guest_name)
        await ctx.db.run(record_open, actor, target, "serial", took_over=took_over)
    except BaseException:
        if console is not None:
            console.close()
        ctx.consoles.release(target.guest_id, holder)
        raise
    return SerialSession(target, console, time.monotonic())


async def close_serial(ctx: Context, actor: Actor, session: SerialSession, holder: Holder, reason: str) -> None:
    """End ``session`` (idempotent for the stream) and record how long it was open and why it ended."""
    session.console.close()
    ctx.consoles.release(session.target.guest_id, holder)
    await ctx.db.run(record_close, actor, session.target, "serial", time.monotonic() - session.opened_at, reason)


async def vnc_ticket(ctx: Context, actor: Actor, guest_id: int) -> tuple[str, str | None]:
    """A ticket for the guest's graphical console and its VNC password, for the browser that asked.

    The guest must be running with a VNC server (a Conflict says otherwise), so the page learns at once.
    """
    target = await ctx.db.run(find_target, actor, guest_id)
    endpoint = await ctx.need_hosts().get(target.host_name).vnc_endpoint(target.domain_name, label=target.guest_name)
    return ctx.consoles.issue(actor, target.guest_id), endpoint.password


@dataclass
class VncSession:
    target: ConsoleTarget
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened_at: float


async def open_vnc(ctx: Context, actor: Actor, guest_id: int, ticket: str) -> VncSession:
    """Redeem ``ticket``, connect to the guest's VNC server for the relay; audited. Closed again on failure."""
    ctx.consoles.redeem(ticket, actor, guest_id)
    target = await ctx.db.run(find_target, actor, guest_id)  # still theirs: rights may have changed since
    host = ctx.need_hosts().get(target.host_name)
    endpoint = await host.vnc_endpoint(target.domain_name, label=target.guest_name)
    reader, writer = await connect_vnc(endpoint, ctx.config.libvirt_connect_timeout)
    try:
        await ctx.db.run(record_open, actor, target, "vnc")
    except BaseException:
        writer.close()
        raise
    return VncSession(target, reader, writer, time.monotonic())


async def close_vnc(ctx: Context, actor: Actor, session: VncSession, reason: str) -> None:
    """Close the relay's connection to the VNC server and record how long it was open and why it ended."""
    session.writer.close()
    await ctx.db.run(record_close, actor, session.target, "vnc", time.monotonic() - session.opened_at, reason)


def close_reason(exc: BaseException) -> str:
    """How an error that ended a console reads in the audit log."""
    return exc.message if isinstance(exc, FogmachineError) else f"internal error {type(exc).__name__}"
