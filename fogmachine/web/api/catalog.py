"""The catalog: what can be checked out, and where a checkout of it would go right now."""

from __future__ import annotations

from fogmachine.services import checkout
from fogmachine.web.api.base import ApiHandler, Op
from fogmachine.web.api.schema import Field, Obj, Query

TAG = "catalog"
ENTRY = Obj("CatalogEntry", (
    Field("name", "string"),
    Field("kind", "string", "profile or image (Cobbler), or local (the catalog file)",
          enum=("profile", "image", "local")),
    Field("ram_mb", "integer", minimum=0),
    Field("vcpus", "integer", minimum=0),
    Field("disk_gb", "integer", minimum=0),
    Field("virt_type", "string"),
    Field("description", "string"),
), closed=False)
CATALOG = Obj("Catalog", (
    Field("entries", "array", items=ENTRY),
    Field("stale", "boolean", "true: Cobbler could not be reached and this is the last list it gave"),
    Field("source", "string", enum=("cobbler", "local")),
    Field("error", "string", "why the list is stale"),
), closed=False)
ROOM = Obj("HostRoom", (
    Field("name", "string"),
    Field("free_ram_mb", "integer", minimum=-(2**53), maximum=2**53),
    Field("free_vcpus", "integer"),
    Field("fits", "boolean"),
    Field("reason", "string", "why the guest does not fit there"),
), closed=False)
PREVIEW = Obj("Placement", (
    Field("target", "object", ref=ENTRY),
    Field("host", "string", "the host a checkout would go to now", nullable=True),
    Field("fits", "boolean"),
    Field("reason", "string", "why no host can take it"),
    Field("policy", "string", enum=("spread", "pack")),
    Field("hosts", "array", items=ROOM),
), closed=False)
TARGET = Field("target", "string", "a catalog entry's name, optionally kind:name (profile:web, image:base)",
               min_length=1, max_length=255)


class CatalogHandler(ApiHandler):
    api = {"get": Op("List what can be checked out", TAG, response=CATALOG, errors=(502, 504))}

    async def get(self) -> None:
        catalog = self.ctx.catalog
        assert catalog is not None, "the server attaches the catalog at start"
        view = await catalog.entries()
        self.write_json({"entries": [e.to_dict() for e in view.entries], "stale": view.stale,
                         "source": view.source, "error": view.error})


class PlacementHandler(ApiHandler):
    api = {"get": Op("Where a checkout of a target would go now, or why no host can take it", TAG,
                     "Nothing is claimed: a checkout right after may still find the room taken.",
                     query=Query((TARGET,)), response=PREVIEW, errors=(502, 504))}

    async def get(self) -> None:
        self.write_json(await checkout.preview(self.ctx, self.actor, self.params["target"]))


default_handlers = [
    (r"/api/v1/catalog", CatalogHandler),
    (r"/api/v1/catalog/placement", PlacementHandler),
]
