"""Version and health under /api/v1: public, JSON, and indifferent to whatever credentials come along."""

from __future__ import annotations

from fogmachine import __version__


async def test_version_and_health_need_no_credentials(api):
    for path in ("/api/v1/version", "/api/v1/health", "/healthz"):
        for headers in ({}, {"Authorization": "Bearer fm_revoked_or_nonsense"}, {"Authorization": "Basic !!"}):
            r = await api.call("GET", path, as_=None, headers=headers)
            assert r.code == 200, (path, headers)
    r = await api.call("GET", "/api/v1/version", as_=None)
    assert r.json["version"] == __version__ and r.json["database_backend"] == "sqlite"
    r = await api.call("GET", "/api/v1/health", as_=None)
    assert r.json == {"status": "ok", "database": "ok"}
    assert (await api.call("POST", "/api/v1/health", as_=None, raw=b"")).code == 405
