"""The server's whole log, as its real logging set-up (fogmachine.logs.setup) writes it, into a buffer.

For tests that read what an operator would read: in-process servers log through the
root logger, so ``logs.setup`` pointed at a StringIO captures every line of the run.
The root logger's handlers and levels are put back afterwards (pytest's own included).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from fogmachine import logs


@contextlib.contextmanager
def server_log(level: str = "debug") -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    touched = {name: logging.getLogger(name).level for name in ("tornado.access",)}
    buffer = io.StringIO()
    logs.setup(level, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        for name, old in touched.items():
            logging.getLogger(name).setLevel(old)


def record_lines(text: str) -> list[str]:
    """Lines that start a record (not indented traceback lines)."""
    return [line for line in text.splitlines() if line and not line.startswith(logs.TRACEBACK_INDENT)]
