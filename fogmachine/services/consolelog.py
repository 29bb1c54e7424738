"""The tail of a guest's serial console log, when this machine can read it.

Guests are defined with their serial console logged to
``console_log_dir/NAME.log`` (``checkout.engine``); libvirt writes that file on
the guest's host. Only when the host is this machine (or the directory is
shared with it) can the page show it, so every other case is said plainly
instead of showing nothing.

What a console writes is whatever the guest sends: escape sequences, bells,
bytes that are not UTF-8. The page gets text: decoded with replacement
characters, terminal escape sequences and control characters removed (the
template escapes the rest).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
from dataclasses import dataclass

TAIL_BYTES = 4096
# ANSI/VT100 escape sequences (CSI ... final byte, OSC ... BEL/ST, and two-byte ESC x), which would
# otherwise leave "[0m" litter once the ESC itself is removed.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# C0 controls except tab and newline, DEL, and C1 controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ConsoleTail:
    """What the page shows: the log's last lines, or why there are none (``note``)."""

    text: str = ""
    note: str = ""
    path: str = ""
    truncated: bool = False


def clean(raw: bytes, *, cut: bool = False) -> str:
    """Console bytes as text safe to show: decoded, line ends normalised, escapes and controls removed.

    ``cut``: the bytes start somewhere inside the file, so the first line is partial and is dropped.
    """
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    if cut and "\n" in text:
        text = text.split("\n", 1)[1]
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def read_tail(path: str, limit: int = TAIL_BYTES) -> tuple[bytes, bool] | None:
    """The last ``limit`` bytes of the file and whether it holds more; None when there is no such file.

    A symbolic link is not followed: the name is the guest's, the file libvirt's.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        start = max(0, size - limit)
        f.seek(start)
        return f.read(limit), start > 0


def log_path(directory: str, name: str) -> str | None:
    """Where the guest's log is, or None when ``name`` could not be a file name there."""
    if not directory or not name or name in (".", "..") or "/" in name or "\0" in name:
        return None
    return f"{directory.rstrip('/')}/{name}.log"


async def tail(directory: str, name: str, host: str | None) -> ConsoleTail:
    """The tail of guest ``name``'s console log (read on a thread: the directory may be a network mount)."""
    if not directory:
        return ConsoleTail(note="This Fogmachine keeps no serial console logs (an administrator sets "
                                "console_log_dir to have them).")
    path = log_path(directory, name)
    if path is None:
        return ConsoleTail(note="This guest's name cannot be a log file's name, so it has no console log.")
    try:
        found = await asyncio.to_thread(read_tail, path)
    except OSError as exc:
        return ConsoleTail(path=path, note=f"The console log {path} cannot be read here: {exc.strerror}.")
    where = f"on its host {host}" if host else "on its host"
    if found is None:
        return ConsoleTail(path=path, note=f"The console log is written {where}, in {path}; that file is not "
                                           "on the Fogmachine server, so it cannot be shown here.")
    raw, truncated = found
    text = clean(raw, cut=truncated)
    if not text.strip():
        return ConsoleTail(path=path, note="The console log is empty so far.")
    return ConsoleTail(text=text, path=path, truncated=truncated)
