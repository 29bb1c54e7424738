"""What the console sockets share: who may open one, and how a socket says why it closed.

Who may open one is answered before the upgrade, as an HTTP status a client can read: 401 without a
login session, 403 from another site's page (Tornado's cross-origin check: the browser's
``Sec-Fetch-Site``, or the ``Origin`` header's host against the request's ``Host``, which a reverse
proxy must pass on unchanged, as ``docs/nginx-fogmachine.conf`` does), 404 for a guest the
user may not see (another user's guest looks like no guest at all). Everything after that (the console
is busy, the host is down, the guest is not running) is a close code after the upgrade, because a
browser's WebSocket cannot read the status of a refused handshake: ``4000 + the HTTP status`` with the
error's message as the reason, or one of the codes below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import tornado.websocket

from fogmachine.errors import FogmachineError
from fogmachine.services import consoles
from fogmachine.services.actor import Actor
from fogmachine.web.base import SessionSocket
from fogmachine.web.live.feed import Subscriber

log = logging.getLogger(__name__)
# The close records still being written: held here so none is garbage-collected half done.
_pending: set[asyncio.Task[None]] = set()
CLOSE_SESSION_ENDED = 4001  # as the live socket: the login session ended, or the user was disabled
CLOSE_TAKEN_OVER = 4100
CLOSE_IDLE = 4101
CLOSE_ENDED = 4102  # the host ended the session: the guest stopped, or a session elsewhere took over
CLOSE_ERROR_BASE = 4000
MAX_REASON_BYTES = 123  # what a WebSocket close frame can carry


def reason_text(text: str) -> str:
    """``text`` cut to what fits a close frame, on a character boundary."""
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


class _SessionWatch(Subscriber):
    """A console socket's place in the process's live feed, for its end only: the feed's re-check of
    users and sessions (every 10 s) closes it when its login session ends or its user is disabled, and
    the feed's stop when the server stops, as it closes the dashboard's own socket. It shows no guests,
    and what the feed sends is dropped."""

    def __init__(self, handler: ConsoleSocket, user_id: int, session_id: int | None) -> None:
        super().__init__(user_id, False, session_id)
        self.handler = handler

    def may_see(self, guest: dict[str, Any]) -> bool:
        return False

    def send(self, text: str) -> None:
        """Nothing the feed says matters to a console."""

    def close(self, code: int, reason: str) -> None:
        self.handler.session_ended(code, reason)


class ConsoleSocket(SessionSocket):
    """A console's WebSocket: the checks before the upgrade; subclasses open the console in ``open``."""

    actor_at_open: Actor | None = None
    guest_id = 0
    end_reason = ""
    _watch: _SessionWatch | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.refused_without_session():
            return
        # Tornado's own cross-origin check (Sec-Fetch-Site, else Origin against Host), run before the guest is
        # looked up so another site's page learns nothing about which guests exist; WebSocketHandler.get
        # runs it again.
        if self._check_cross_origin(self.check_origin) is not None:
            self.set_status(403)
            self.finish("consoles open only from Fogmachine's own pages")
            return
        try:
            self.guest_id = int(args[0])
            self.actor_at_open = self.actor
            await self.ctx.db.run(consoles.find_target, self.actor_at_open, self.guest_id)
        except FogmachineError as exc:
            self.set_status(exc.status)
            self.finish(exc.message)
            return
        await super().get(*args, **kwargs)

    def watch_session(self) -> None:
        """Close this socket when its login session ends (the live feed's re-check); without a running feed
        (an application built without one) the idle timeout and the session's own expiry still hold."""
        feed, user = self.live, self.current_user
        if feed is not None and feed.started and user is not None:
            self._watch = _SessionWatch(self, user.id, self.session_id)
            feed.subscribe(self._watch)

    def unwatch_session(self) -> None:
        if self._watch is not None and self.live is not None:
            self.live.unsubscribe(self._watch)
            self._watch = None

    def session_ended(self, code: int, reason: str) -> None:
        """The live feed ends this socket with its own code and reason: 4001 when the login session ended or
        the user was disabled, 1001 when the server stops (the page may open the console again then)."""
        self.end_reason = "the login session ended" if code == CLOSE_SESSION_ENDED else "the server stopped"
        self.close(code, reason_text(reason))

    def close_for(self, exc: FogmachineError) -> None:
        self.close(CLOSE_ERROR_BASE + exc.status, reason_text(exc.message))

    def send_bytes(self, data: bytes) -> None:
        """Send ``data`` as one binary message; a socket that closed meanwhile drops it."""
        try:
            sent = self.write_message(data, binary=True)
        except tornado.websocket.WebSocketClosedError:
            return
        sent.add_done_callback(_collect)


def _collect(future: Any) -> None:
    # A page closed mid-write fails the future; nobody waits on it, so collect the error here.
    if not future.cancelled():
        future.exception()


def spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` (a console's close record) in the background; a failure is logged, not raised."""
    task = asyncio.get_running_loop().create_task(coro)
    _pending.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Task[None]) -> None:
    _pending.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("recording a console's close failed: %s", consoles.close_reason(exc))
