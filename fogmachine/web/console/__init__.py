"""A guest's consoles in the browser: the page, the serial socket, the VNC ticket and relay socket.

Both sockets are same-origin WebSockets on Fogmachine's own port (``/guests/ID/console/serial`` and
``/guests/ID/console/vnc``), so a TLS-terminating reverse proxy in front needs nothing beyond passing
WebSocket upgrades on (``docs/nginx-fogmachine.conf``).
"""

from __future__ import annotations

from typing import Any

from fogmachine.web.console import page, serial, vnc


def routes() -> list[tuple[str, Any]]:
    return [*page.default_handlers, *serial.default_handlers, *vnc.default_handlers]
