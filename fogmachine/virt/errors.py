"""The one place where ``libvirt.libvirtError`` becomes a Fogmachine error.

Everything above ``fogmachine.virt`` sees only ``fogmachine.errors``. libvirt
reports the same situation with different codes depending on the driver (the
test driver says "internal error: Domain 'x' is already running", QEMU says
"Requested operation is not valid: domain is already running"), so state
conflicts are recognised by code *and* message and reworded with the guest's
name, the way a user should read them.
"""

from __future__ import annotations

import threading

import libvirt

from fogmachine.errors import (
    BackendError,
    BackendTimeout,
    Conflict,
    FogmachineError,
    HostUnreachable,
    NotFound,
)

# Errors that mean the connection itself is gone or never came up.
_CONNECTION_CODES = frozenset({
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
})
_CONNECTION_DOMAINS = frozenset({libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE})
_CONNECTION_WORDS = ("client socket is closed", "connection refused", "unable to connect", "cannot recv data",
                     "cannot send data", "end of file while reading", "connection reset", "broken pipe",
                     "no route to host", "keepalive", "failed to connect socket", "name or service not known")
_TIMEOUT_CODES = frozenset({libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE})
_NOT_FOUND_CODES = {
    libvirt.VIR_ERR_NO_DOMAIN: "guest",
    libvirt.VIR_ERR_NO_STORAGE_POOL: "storage pool",
    libvirt.VIR_ERR_NO_STORAGE_VOL: "storage volume",
}
# (substring of libvirt's message, how Fogmachine says it); first match wins.
_STATE_PHRASES = (
    ("already running", "is already running"),
    ("already active", "is already running"),
    ("not running", "is not running"),
    ("not paused", "is not paused"),
    ("already paused", "is already paused"),
    ("domain is not active", "is not running"),
    ("already exists", "already exists"),
    ("is active", "is running"),
    ("active console session", "already has a console session open"),
)

_quiet_lock = threading.Lock()
_quiet_done = False


def silence_libvirt() -> None:
    """Stop libvirt from printing every error to stderr (its default); idempotent.

    The errors still reach us as exceptions; the handler only swallows the
    duplicate copy libvirt would otherwise write to the server's terminal.
    """
    global _quiet_done
    with _quiet_lock:
        if not _quiet_done:
            libvirt.registerErrorHandler(_ignore_error, None)
            _quiet_done = True


def _ignore_error(_ctx: object, _err: object) -> None:
    return None


def is_connection_error(exc: libvirt.libvirtError) -> bool:
    """True when the error means the host cannot be talked to (as opposed to a refused request)."""
    code = exc.get_error_code()
    if code in _CONNECTION_CODES:
        return True
    if code == libvirt.VIR_ERR_SYSTEM_ERROR and exc.get_error_domain() in _CONNECTION_DOMAINS:
        return True
    message = (exc.get_error_message() or str(exc)).lower()
    return any(word in message for word in _CONNECTION_WORDS)


def _libvirt_message(exc: libvirt.libvirtError) -> str:
    text = (exc.get_error_message() or str(exc) or "unknown libvirt error").strip()
    return text.splitlines()[0][:500]


def translate(exc: libvirt.libvirtError, *, host: str, action: str, guest: str | None = None) -> FogmachineError:
    """The Fogmachine error for ``exc`` raised while doing ``action`` on ``host`` (for ``guest``)."""
    code = exc.get_error_code()
    message = _libvirt_message(exc)
    lowered = message.lower()
    details = {"host": host, "libvirt_code": code}
    if guest is not None:
        details["guest"] = guest
    if is_connection_error(exc):
        return HostUnreachable(f"host {host} cannot be reached: {message}", details=details)
    if code in _TIMEOUT_CODES:
        return BackendTimeout(f"host {host} did not finish {action} in time: {message}", details=details)
    if code in _NOT_FOUND_CODES:
        what = _NOT_FOUND_CODES[code]
        if what == "guest" and guest is not None:
            return NotFound(f"guest {guest} has no domain on host {host}", details=details)
        return NotFound(f"{what} not found on host {host}: {message}", details=details)
    if "backing store" in lowered:
        # The image a volume overlays is missing or unreadable on that host: say so, not "create volume failed".
        return BackendError(f"host {host} cannot use the disk image{f' for {guest}' if guest else ''}: {message}",
                            details=details)
    if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_DOM_EXIST,
                libvirt.VIR_ERR_OPERATION_FAILED):
        for phrase, wording in _STATE_PHRASES:
            if phrase in lowered:
                subject = f"guest {guest}" if guest is not None else "the domain"
                return Conflict(f"{subject} {wording}", details=details)
        if code == libvirt.VIR_ERR_OPERATION_INVALID:
            return Conflict(f"host {host} refused {action}: {message}", details=details)
    if code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL, libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
                libvirt.VIR_ERR_INVALID_ARG):
        # Fogmachine wrote that XML, not the client: a backend problem, not a 400.
        return BackendError(f"host {host} rejected {action}: {message}", details=details)
    if code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
        return BackendError(f"host {host} does not support {action}: {message}", details=details)
    return BackendError(f"host {host}: {action} failed: {message}", details=details)


def translate_connect(exc: libvirt.libvirtError, *, host: str, uri: str) -> HostUnreachable:
    """Any failure to open a connection means the host is unreachable, whatever libvirt's code."""
    return HostUnreachable(f"host {host} cannot be reached at {uri}: {_libvirt_message(exc)}",
                           details={"host": host, "libvirt_code": exc.get_error_code()})
