"""Logging set-up, and the request log that never records a secret.

Tornado's default access log prints the full URI; the phone-home route carries
the guest's token in its query string, so the request log here masks the value
of any query parameter whose name looks secret.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
SECRET_PARAM = re.compile(r"([?&](?:token|password|secret|key|_xsrf)[^=&]*=)[^&]*", re.IGNORECASE)

access_log = logging.getLogger("fogmachine.access")


def setup(level: str = "info", stream: Any = None, filename: str | None = None) -> None:
    handler: logging.Handler
    handler = logging.FileHandler(filename) if filename else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # libvirt and tornado are chatty at debug; keep them at our level or above info
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def redact_uri(uri: str) -> str:
    return SECRET_PARAM.sub(r"\1***", uri)


def log_request(handler: Any) -> None:
    """Tornado ``log_function``: one line per request, secrets masked."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if status < 400 and handler.request.path.startswith("/static/"):
        level = logging.DEBUG
    request = handler.request
    access_log.log(
        level, "%d %s %s (%s) %.1fms", status, request.method, redact_uri(request.uri),
        request.remote_ip, 1000.0 * request.request_time(),
    )
