"""Cobbler as a catalog source: its profiles and images, and a Cobbler system for each guest.

The catalog is the profiles with a ``fogmachine`` key and every image
(``cobbler_mapping``); the list is cached (``cache``), a checkout's target is
asked afresh (one or two calls: a profile deleted a minute ago must not be
checked out, and an unreachable Cobbler must refuse the checkout before
anything is made).

A guest's record is a Cobbler system of the guest's name: its profile or
image, the MAC, and in ``autoinstall_meta`` this server's URL and the guest's
phone-home token for the kickstart's snippets. The keys are also how
reconciliation knows the systems this Fogmachine made (``records``): another
instance sharing the Cobbler names another server. Once the guest is installed
the token is blanked (the key kept) and netboot turned off: Cobbler serves the
rendered kickstart to anyone who asks, and a network-booted system would
install again at its next boot.

The source owns its ``CobblerClient`` (``cobbler``), started and stopped with
it; Cobbler's failures reach the callers as the client translated them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fogmachine.catalog.cache import ViewCache
from fogmachine.catalog.cobbler_mapping import blended_entry, catalog_entries, image_entry
from fogmachine.catalog.entry import CatalogEntry, CatalogView
from fogmachine.catalog.source import Registration, check_target, unknown_target
from fogmachine.cobbler import CobblerClient, SystemSpec
from fogmachine.config import Config
from fogmachine.errors import CobblerError, ConfigError

SERVER_KEY = "fogmachine_server"
TOKEN_KEY = "fogmachine_token"
MAC_KEY = "fogmachine_mac"
# An environment's variables, one key each (fogmachine_var_db_host): kickstart templates and snippets read
# them as $fogmachine_var_db_host.
VARIABLE_PREFIX = "fogmachine_var_"


def made_by(system: dict[str, Any], server: str) -> bool:
    """A system this Fogmachine made: another instance sharing the Cobbler names itself differently."""
    meta = system.get("autoinstall_meta")
    return isinstance(meta, dict) and TOKEN_KEY in meta and meta.get(SERVER_KEY) == server


class CobblerCatalog:
    """The ``cobbler`` catalog source (needs ``cobbler_url``)."""

    name = "cobbler"

    def __init__(self, config: Config, client: CobblerClient | None = None) -> None:
        if client is None and not config.cobbler_url:
            origin = config.origins.get("catalog_source", "the default")
            raise ConfigError(f"{origin}: catalog_source = cobbler needs cobbler_url (Cobbler's XML-RPC URL)")
        self.config = config
        self.cobbler = client or CobblerClient(config.cobbler_url, config.cobbler_user, config.cobbler_password,
                                               timeout=config.cobbler_timeout)
        self.cache = ViewCache(self.name, self._fetch, config.catalog_ttl)

    async def start(self) -> None:
        await self.cobbler.start()

    async def stop(self) -> None:
        self.cache.clear()
        await self.cobbler.stop()

    # -- the catalog -------------------------------------------------------------------------------
    async def entries(self) -> CatalogView:
        return await self.cache.get()

    async def _fetch(self) -> list[CatalogEntry]:
        profiles, images, distros, settings = await asyncio.gather(
            self.cobbler.list_profiles(), self.cobbler.list_images(), self.cobbler.list_distros(),
            self.cobbler.settings())
        return catalog_entries(profiles, images, distros, settings)

    async def resolve(self, target: str) -> CatalogEntry:
        kind, name = check_target(target)
        entry: CatalogEntry | None = None
        if kind in (None, "profile"):
            entry = await self._profile(name)
        if entry is None and kind in (None, "image"):
            image = await self.cobbler.get_image(name, resolved=True)
            if image is not None:
                entry = image_entry(image, {})
        if entry is None:
            raise unknown_target(target, "Cobbler profile or image")
        return entry

    async def _profile(self, name: str) -> CatalogEntry | None:
        try:
            data = await self.cobbler.blended_profile(name)
        except CobblerError as exc:
            if "profile not found" in exc.details.get("fault", ""):
                return None
            raise
        return blended_entry(data)

    # -- the guests' Cobbler systems ---------------------------------------------------------------
    def record_for(self, guest: str) -> str:
        return guest

    async def register(self, guest: Registration) -> None:
        entry = guest.entry
        meta = {SERVER_KEY: self.config.server_url, TOKEN_KEY: guest.token, MAC_KEY: guest.mac,
                **{f"{VARIABLE_PREFIX}{name}": value for name, value in guest.variables.items()}}
        await self.cobbler.create_system(SystemSpec(
            name=self.record_for(guest.name), mac=guest.mac, hostname=guest.name,
            profile=entry.name if entry.kind == "profile" else None,
            image=entry.name if entry.kind == "image" else None,
            autoinstall_meta=meta, netboot_enabled=entry.boot == "network",
        ))

    async def unregister(self, record: str) -> bool:
        await self.cobbler.remove_system(record)
        return True

    async def installed(self, record: str) -> bool:
        system = await self.cobbler.get_system(record)
        meta = system.get("autoinstall_meta") if system is not None else None
        changes: dict[str, Any] = {}
        if isinstance(meta, dict) and meta.get(TOKEN_KEY):
            changes["autoinstall_meta"] = {**meta, TOKEN_KEY: ""}
        if system is not None and system.get("netboot_enabled") is True:
            changes["netboot_enabled"] = False
        if changes:
            await self.cobbler.edit_system(record, changes)
        return True

    async def records(self) -> list[str]:
        server = self.config.server_url
        return [str(s["name"]) for s in await self.cobbler.list_systems() if made_by(s, server)]
