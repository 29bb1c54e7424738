"""Fogmachine's own errors.

Adapters (libvirt, Cobbler, the database) translate what their libraries raise
into these, in one place each, so that services and handlers only ever see this
hierarchy. Each error carries the HTTP status and the machine-readable code the
API answers with, so handlers never map exceptions themselves.
"""

from __future__ import annotations

from typing import Any


class FogmachineError(Exception):
    """Base of every error Fogmachine reports to a user."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(FogmachineError):
    """A configuration value is wrong; the message names the key and the file."""

    code = "config_error"


class ValidationError(FogmachineError):
    """Input from a user is malformed; ``details['field']`` names the field."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        details = dict(details or {})
        if field is not None:
            details.setdefault("field", field)
        super().__init__(message, details=details)
        self.field = field


class AuthenticationRequired(FogmachineError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(FogmachineError):
    status = 403
    code = "forbidden"


class MethodNotAllowed(FogmachineError):
    status = 405
    code = "method_not_allowed"


class NotFound(FogmachineError):
    status = 404
    code = "not_found"


class Conflict(FogmachineError):
    """The action makes no sense in the object's current state ("already running")."""

    status = 409
    code = "conflict"


class NoCapacity(Conflict):
    code = "no_capacity"


class PayloadTooLarge(FogmachineError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(FogmachineError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(FogmachineError):
    status = 429
    code = "too_many_requests"


class BackendError(FogmachineError):
    """An external system (a hypervisor, Cobbler) failed or could not be reached."""

    status = 502
    code = "backend_error"


class HostUnreachable(BackendError):
    code = "host_unreachable"


class BackendTimeout(BackendError):
    status = 504
    code = "backend_timeout"


class CobblerError(BackendError):
    code = "cobbler_error"


class DatabaseUnavailable(FogmachineError):
    status = 503
    code = "database_unavailable"


class SchemaOutOfDate(FogmachineError):
    """The database is older than this code; the message says how to upgrade it."""

    code = "schema_out_of_date"


class PartlyDone(FogmachineError):
    """What was asked took effect, but a part of it on an external system is left for later
    (a delete with Cobbler down: the guest is retired, its Cobbler system still exists).

    The status and code are those of the part's own error (502 ``cobbler_unreachable``,
    ``host_unreachable``, 504 ``backend_timeout``, ...), so a client sees which system failed
    and that its answer is not a success; ``details`` say what was done and what is left.
    """

    def __init__(self, message: str, cause: FogmachineError, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.status, self.code = cause.status, cause.code
        self.cause = cause
