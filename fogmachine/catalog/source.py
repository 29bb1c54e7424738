"""The one interface every catalog source implements, as JupyterHub's Spawner is one interface.

A source answers two things for the pages and the checkout, what can be
checked out (``entries``, possibly cached and marked stale) and the one entry a
checkout names (``resolve``, fresh), and keeps its own record of each guest it
provisions, its *registration*. For Cobbler that record is the Cobbler system
(its autoinstall_meta carries the phone-home token); the local file keeps
none. The services ask the source and never which source it is: a checkout
registers the guest when the source names a record for it, a teardown and
reconciliation unregister, and the end of an install tells the source so
(``installed``) that the record stops carrying the token.

The record's name is known before the record exists (``record_for``): the
guest's row names it from its claim on, so a checkout that dies between
making the record and writing that it did still leaves it found and removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fogmachine.catalog.entry import CatalogEntry, CatalogView, split_target
from fogmachine.errors import ValidationError


@dataclass(frozen=True)
class Registration:
    """A guest being provisioned, as its source registers it."""

    name: str  # the guest's name (and host name)
    mac: str
    token: str  # the phone-home token, in clear: the installer reads it from the record
    entry: CatalogEntry
    # A guest of an environment: its tier's variables, resolved (services/environments); the record carries
    # each as ``fogmachine_var_NAME`` where the installer's templates can read it.
    variables: Mapping[str, str] = field(default_factory=dict)


class CatalogSource(Protocol):
    """What can be checked out, and the source's record of each guest; a Component of the server."""

    name: str  # the ``catalog_source`` value that picks it; also ``CatalogView.source``

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def entries(self) -> CatalogView:
        """The catalog for listing: may be cached, and stale (with ``error``) when the source is away."""
        ...

    async def resolve(self, target: str) -> CatalogEntry:
        """The entry ``target`` names, fresh; ValidationError (field ``target``) when unknown, the source's
        own error (502, 504) when it cannot be asked: a checkout never starts against a source that is away."""
        ...

    def record_for(self, guest: str) -> str:
        """The name of the record ``register`` makes for the guest ``guest``; "" when this source keeps none."""
        ...

    async def register(self, guest: Registration) -> None:
        """Make the guest's record (named ``record_for(guest.name)``); raises the source's error."""
        ...

    async def unregister(self, record: str) -> bool:
        """Remove a record (one already gone counts as removed): True. False when this source keeps no
        records, so the guest's row goes on naming it. Raises the source's error when it cannot be reached."""
        ...

    async def installed(self, record: str) -> bool:
        """The guest's install is finished: its record must no longer carry its phone-home token, nor start
        an install again. True when done; False when this source keeps no records. Raises as ``unregister``."""
        ...

    async def records(self) -> list[str]:
        """Every record this Fogmachine made (reconciliation removes those no guest owns); raises as
        ``unregister``."""
        ...


def check_target(target: object) -> tuple[str | None, str]:
    """(kind or None, name) of a checkout's target; ValidationError (field ``target``) when it is empty."""
    if not isinstance(target, str) or not target.strip():
        raise ValidationError("target (a profile or image name) is required", field="target")
    return split_target(target.strip())


def unknown_target(target: str, what: str) -> ValidationError:
    """The error for a target the source does not have; ``what`` says where it was looked for."""
    return ValidationError(f"unknown {what} {target!r}", field="target", details={"target": target})
