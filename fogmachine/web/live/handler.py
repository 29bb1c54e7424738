"""``/live``: the WebSocket a page opens to hear what changed (authentication, subscribe, ping, close).

The socket only listens: the page sends nothing that matters, the process's
one ``LiveFeed`` talks. A socket is one ``Subscriber`` of that feed for as
long as it is open. The guest page opens ``/live?guest=ID`` and hears its
guest's page as well (the feed sends it only to those who may see the
guest); an id that cannot be a guest's is refused with 400 before the
upgrade. The feed closes it with 4001 when its user is disabled or
its login session ends (final: the page says to log in), and with 1001 when
the server stops (the page reconnects with backoff).

A browser cannot read the status of a refused WebSocket handshake, so a page
whose reconnect fails asks ``GET /live`` as a plain request: 401 means the
session is gone (log in again); anything else (400, the "not a WebSocket"
answer of a good session; 503; no answer) means try again later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fogmachine.web.base import SessionSocket
from fogmachine.web.live.feed import Subscriber
from fogmachine.web.pages.guest import LARGEST_ID


def _collect(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


class _SocketSubscriber(Subscriber):
    def __init__(self, handler: LiveSocket, user_id: int, is_admin: bool, session_id: int | None,
                 guest_page: int | None) -> None:
        super().__init__(user_id, is_admin, session_id, guest_page)
        self.handler = handler

    def send(self, text: str) -> None:
        sent = self.handler.write_message(text)
        # A page closed mid-write fails the future; nobody waits on it, so collect the error here.
        sent.add_done_callback(_collect)

    def close(self, code: int, reason: str) -> None:
        self.handler.close(code, reason)


class LiveSocket(SessionSocket):
    """``/live``: the page's WebSocket. Only a logged-in session may open one; the
    default same-origin check (``check_origin``) refuses other sites' pages."""

    subscriber: _SocketSubscriber | None = None
    guest_page: int | None = None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.refused_without_session():
            return
        page = self.get_query_argument("guest", None)
        if page is not None:
            if not (page.isascii() and page.isdigit() and len(page) <= 10 and 1 <= int(page) <= LARGEST_ID):
                self.set_status(400)
                self.finish("guest must be a guest's id, a whole number from 1")
                return
            self.guest_page = int(page)
        feed = self.live
        if feed is None or not feed.started:
            self.set_status(503)
            self.finish("live updates are not running")
            return
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        feed = self.live
        assert feed is not None  # get() refused the socket otherwise
        user = self.current_user
        assert user is not None
        self.subscriber = _SocketSubscriber(self, user.id, user.is_admin, self.session_id, self.guest_page)
        feed.subscribe(self.subscriber)

    def on_message(self, message: str | bytes) -> None:
        """The page sends nothing that matters; the feed talks, the page listens."""

    def on_close(self) -> None:
        feed = self.live
        if feed is not None and self.subscriber is not None:
            feed.unsubscribe(self.subscriber)


default_handlers = [(r"/live", LiveSocket)]
