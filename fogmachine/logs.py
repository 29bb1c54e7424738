"""Logging set-up, and the request log that never records a secret.

Tornado's default access log prints the full URI; the phone-home route carries
the guest's token in its query string, so the request log here masks the value
of any query parameter whose name looks secret.

Every record goes through ``SafeFormatter``: control characters in the
formatted message (whatever the caller passed as message or arguments, client
text included) are written as escapes (``\\n``, ``\\x1b``, ``\\u2028``), so one
record is one line and nobody can forge a log line or send escape sequences to
an operator's terminal. Tracebacks keep their line breaks, but each of their
lines is indented, so none of them can pass for a record of its own.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any
from urllib.parse import unquote_plus

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# C0 and C1 controls (newline, CR, NUL, ESC, DEL, NEL...), Unicode line/paragraph separators and the
# bidirectional overrides that make a terminal or an editor show text other than what is there.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_INDENT = "    "
# A query or form parameter whose (decoded) name contains one of these words carries a secret.
# (``ticket``: a console's one-time ticket rides in the WebSocket's URL, services/consoles.py.)
SECRET_NAME = re.compile(r"token|password|passwd|secret|key|xsrf|session|cookie|ticket", re.IGNORECASE)
REDACTED = "***"
# The last line of defence, applied to every formatted record (message and traceback): a credential in
# "name=value" form, in an Authorization or Cookie header, or after Bearer/Basic, whoever wrote it.
SECRET_TEXT = (
    (re.compile(r"((?:token|password|passwd|secret|ticket|_xsrf|fm_session|fm_flash|fm_form)[A-Za-z_]*=)['\"]?[^&\s'\";,)]+",
                re.IGNORECASE), rf"\1{REDACTED}"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (re.compile(r"((?:Authorization|Cookie|Set-Cookie)['\"]?\s*[:=,]\s*['\"]?)[^'\"\n]+", re.IGNORECASE),
     rf"\1{REDACTED}"),
)

access_log = logging.getLogger("fogmachine.access")


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape: it stays on one line."""
    return CONTROL.sub(_escape_one, text)


def _indented(text: str) -> str:
    return "\n".join(TRACEBACK_INDENT + escape_controls(line) for line in redact_text(text).split("\n"))


def redact_text(text: str) -> str:
    """``text`` with every credential that looks like one replaced by ``***``."""
    for pattern, replacement in SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


class SafeFormatter(logging.Formatter):
    """One record, one line: control characters escaped, traceback lines indented (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(redact_text(record.getMessage()))
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + _indented(record.exc_text)
        if record.stack_info:
            text += "\n" + _indented(self.formatStack(record.stack_info))
        return text


def setup(level: str = "info", stream: Any = None, filename: str | None = None) -> None:
    handler: logging.Handler
    handler = logging.FileHandler(filename) if filename else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(SafeFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # libvirt and tornado are chatty at debug; keep them at our level or above info
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def redact_query(query: str) -> str:
    """A query string (or form body) with the value of every secret-looking parameter replaced.

    Names are judged decoded, as Tornado reads them (``%74oken=`` is ``token=``); the rest is kept as sent.
    """
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        if eq and SECRET_NAME.search(unquote_plus(name)):
            pair = f"{name}={REDACTED}"
        parts.append(pair)
    return "&".join(parts)


def redact_uri(uri: str) -> str:
    path, question, query = uri.partition("?")
    return path + question + redact_query(query) if question else uri


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
