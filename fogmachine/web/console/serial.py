"""``/guests/ID/console/serial``: the guest's serial console, bytes both ways over one WebSocket.

The page's terminal (xterm.js) sends what the user types as text or binary messages; the guest's
output comes back as binary messages, unchanged. ``?takeover=1`` takes the console from the session
that has it (which closes with ``CLOSE_TAKEN_OVER``); without it a busy console closes this socket with
4409. A session with no keystroke for ``console_idle_timeout`` seconds closes with ``CLOSE_IDLE``.
Opening and closing are audited by the service (``services.consoles``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fogmachine.errors import FogmachineError
from fogmachine.services import consoles
from fogmachine.web.console.socket import (
    CLOSE_ENDED,
    CLOSE_IDLE,
    CLOSE_TAKEN_OVER,
    ConsoleSocket,
    reason_text,
    spawn,
)


class SerialSocket(ConsoleSocket):
    session: consoles.SerialSession | None = None
    _closed = False
    _last_input = 0.0
    _idle: asyncio.TimerHandle | None = None

    async def open(self, *args: Any, **kwargs: Any) -> None:
        actor = self.actor_at_open
        assert actor is not None  # get() refused the socket otherwise
        take_over = self.get_query_argument("takeover", "") in ("1", "yes", "true")
        try:
            session = await consoles.open_serial(self.ctx, actor, self.guest_id, self, take_over=take_over,
                                                 on_data=self.send_bytes, on_end=self._host_ended)
        except FogmachineError as exc:
            self.close_for(exc)
            return
        self.session = session
        if self._closed:  # the browser left while the console was opening
            self._finish("closed by the browser")
            return
        self.watch_session()
        self._last_input = time.monotonic()
        self._watch_idle()

    def on_message(self, message: str | bytes) -> None:
        if self.session is None:
            return
        self._last_input = time.monotonic()
        self.session.console.send(message.encode() if isinstance(message, str) else message)

    def on_close(self) -> None:
        self._closed = True
        self.unwatch_session()
        if self._idle is not None:
            self._idle.cancel()
        if self.session is not None:
            self._finish(self.end_reason or "closed by the browser")

    # ------------------------------------------------------------------ endings

    def taken_over(self, by: str) -> None:
        """``services.consoles.Holder``: another session of ``by`` took the console."""
        self.end_reason = f"taken over by {by}"
        self.close(CLOSE_TAKEN_OVER, reason_text(f"{by} took this console over in another window"))

    def _host_ended(self, reason: str) -> None:
        self.end_reason = self.end_reason or reason
        self.close(CLOSE_ENDED, reason_text(reason))

    def _watch_idle(self) -> None:
        timeout = self.ctx.config.console_idle_timeout
        left = self._last_input + timeout - time.monotonic()
        if left <= 0:
            self.end_reason = f"idle for {timeout:g} s"
            self.close(CLOSE_IDLE, reason_text(f"closed after {timeout:g} s without a keystroke"))
            return
        self._idle = asyncio.get_running_loop().call_later(left, self._watch_idle)

    def _finish(self, reason: str) -> None:
        session, self.session = self.session, None
        actor = self.actor_at_open
        if session is None or actor is None:
            return
        spawn(consoles.close_serial(self.ctx, actor, session, self, reason))


default_handlers = [(r"/guests/([0-9]{1,18})/console/serial", SerialSocket)]
