"""The catalog and the placement preview through the API (local catalog, test-driver hosts)."""

from __future__ import annotations


async def test_catalog_lists_the_local_file(api):
    r = await api.call("GET", "/api/v1/catalog", as_="alice-read")
    assert r.code == 200
    assert r.json["source"] == "local" and r.json["stale"] is False
    small = next(e for e in r.json["entries"] if e["name"] == "small")
    assert small == {"name": "small", "kind": "local", "ram_mb": 1024, "vcpus": 1, "disk_gb": 10,
                     "virt_type": "kvm", "description": small["description"]}
    assert (await api.call("GET", "/api/v1/catalog", as_=None)).code == 401


async def test_placement_preview(make_api):
    api = await make_api(hosts={"roomy": {"memory_mb": 6144}, "tight": {"memory_mb": 2048}})
    r = await api.call("GET", "/api/v1/catalog/placement?target=small")
    assert r.code == 200
    assert r.json["fits"] is True and r.json["host"] == "roomy"  # spread: most free memory
    r = await api.call("GET", "/api/v1/catalog/placement?target=large")
    assert r.json["fits"] is False and r.json["host"] is None and r.json["reason"]
    assert {h["name"]: h["fits"] for h in r.json["hosts"]} == {"roomy": False, "tight": False}
    r = await api.call("GET", "/api/v1/catalog/placement?target=medium")
    assert {h["name"]: h["fits"] for h in r.json["hosts"]} == {"roomy": True, "tight": False}
    r = await api.call("GET", "/api/v1/catalog/placement?target=nope")
    assert r.code == 400 and r.error["details"]["field"] == "target"
    r = await api.call("GET", "/api/v1/catalog/placement")
    assert r.code == 400 and r.error["details"]["field"] == "target"
