"""The guest's graphical console: a one-time ticket, then a WebSocket relay to its VNC server.

``POST /guests/ID/console/vnc-ticket`` (the page's XSRF token in ``X-XSRFToken``) answers
``{"ticket", "password", "url"}``: the ticket opens ``/guests/ID/console/vnc?ticket=...`` once, within
30 s, from the same login session; the password is the guest's VNC password, which noVNC answers the
VNC server's challenge with. The relay speaks no RFB itself: binary WebSocket messages from noVNC go
to the VNC server's TCP connection and its bytes come back as binary messages (subprotocol ``binary``
when the client offers it). A refused ticket closes the socket with 4403.
"""

from __future__ import annotations

from typing import Any

from fogmachine.errors import FogmachineError
from fogmachine.services import consoles
from fogmachine.web.base import JsonHandler
from fogmachine.web.console.socket import CLOSE_ENDED, ConsoleSocket, reason_text, spawn

READ_CHUNK = 65536


class VncTicketHandler(JsonHandler):
    """A one-time ticket for this browser's session to open the guest's graphical console."""

    async def post(self, guest_id: str) -> None:
        ticket, password = await consoles.vnc_ticket(self.ctx, self.actor, int(guest_id))
        self.write_json({"ticket": ticket, "password": password,
                         "url": f"/guests/{int(guest_id)}/console/vnc?ticket={ticket}"})


class VncSocket(ConsoleSocket):
    session: consoles.VncSession | None = None
    _closed = False

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return "binary" if "binary" in subprotocols else None

    async def open(self, *args: Any, **kwargs: Any) -> None:
        actor = self.actor_at_open
        assert actor is not None  # get() refused the socket otherwise
        try:
            session = await consoles.open_vnc(self.ctx, actor, self.guest_id, self.get_query_argument("ticket", ""))
        except FogmachineError as exc:
            self.close_for(exc)
            return
        self.session = session
        if self._closed:
            self._finish("closed by the browser")
            return
        self.watch_session()
        spawn(self._pump(session))

    async def _pump(self, session: consoles.VncSession) -> None:
        """The VNC server's bytes to the browser, until either side closes."""
        try:
            while True:
                data = await session.reader.read(READ_CHUNK)
                if not data:
                    break
                self.send_bytes(data)
        except OSError as exc:
            self.end_reason = f"the VNC connection failed: {exc}"
        if not self._closed:
            self.end_reason = self.end_reason or "the guest's VNC server closed the connection"
            self.close(CLOSE_ENDED, reason_text(self.end_reason))

    def on_message(self, message: str | bytes) -> None:
        if self.session is not None and not self.session.writer.is_closing():
            self.session.writer.write(message.encode() if isinstance(message, str) else message)

    def on_close(self) -> None:
        self._closed = True
        self.unwatch_session()
        if self.session is not None:
            self._finish(self.end_reason or "closed by the browser")

    def _finish(self, reason: str) -> None:
        session, self.session = self.session, None
        actor = self.actor_at_open
        if session is not None and actor is not None:
            spawn(consoles.close_vnc(self.ctx, actor, session, reason))


default_handlers = [
    (r"/guests/([0-9]{1,18})/console/vnc-ticket", VncTicketHandler),
    (r"/guests/([0-9]{1,18})/console/vnc", VncSocket),
]
