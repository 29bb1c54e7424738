"""Live updates: guest states, provisioning steps and host states pushed to open pages.

Three parts, one module each:

* ``feed``: ``LiveFeed``, the process's one database poller. It reads what
  changed and fans it out to its ``Subscriber``s, each getting what its user
  may see.
* ``handler``: ``LiveSocket``, the ``/live`` WebSocket a page opens
  (authentication, subscribe, ping, close).
* ``payloads``: guest rows as the page shows them, and each message's JSON,
  encoded once for all the pages it goes to.
"""

from __future__ import annotations

from fogmachine.web.live.feed import LiveFeed, Subscriber
from fogmachine.web.live.handler import LiveSocket, default_handlers

__all__ = ["LiveFeed", "LiveSocket", "Subscriber", "default_handlers"]
