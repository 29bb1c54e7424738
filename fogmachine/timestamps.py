"""Fogmachine's clock, and timestamps as its JSON writes them.

Every timestamp column holds naive UTC (``utcnow``: MariaDB has no time zone
type), read by the database and the hypervisor adapter alike. What leaves the
server (API answers, live updates) says so: ISO 8601 with a ``Z``, the form
clients and ``web.pages.view.parse_iso`` read back. One writer, so the API's
guests, hosts, users, tokens and audit events cannot drift apart.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Naive UTC now, the form every timestamp column holds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso_utc(value: dt.datetime | None) -> str | None:
    """``2024-05-01T12:00:00Z`` for a naive UTC time; None stays None (never logged in, no expiry)."""
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z") if value is not None else None
