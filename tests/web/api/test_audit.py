"""The audit log through the API: administrators only, filtered and paginated."""

from __future__ import annotations


async def test_admin_reads_filters_and_pages(api):
    for name in ("one", "two", "three"):
        assert (await api.call("POST", "/api/v1/tokens", body={"name": name})).code == 201
    await api.call("POST", "/api/v1/hosts/h1/disable", as_="admin")
    r = await api.call("GET", "/api/v1/audit", as_="admin")
    assert r.code == 200
    events = r.json["events"]
    assert events[0]["action"] == "host.disable"  # newest first
    assert r.json["total"] == len(events) >= 8  # 4 seeded tokens, 3 made, 1 host
    r = await api.call("GET", "/api/v1/audit?action=token&actor=alice", as_="admin")
    assert {e["action"] for e in r.json["events"]} == {"token.create"}
    assert r.json["total"] == 5
    r = await api.call("GET", "/api/v1/audit?action=token.create&limit=2&offset=1", as_="admin")
    assert len(r.json["events"]) == 2 and r.json["total"] == 7
    r = await api.call("GET", "/api/v1/audit?object_type=host&result=ok", as_="admin")
    assert [e["object_name"] for e in r.json["events"]] == ["h1"]
    r = await api.call("GET", "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z", as_="admin")
    assert r.json["events"] == [] and r.json["total"] == 0
    r = await api.call("GET", "/api/v1/audit?since=2000-01-01T00:00:00%2B02:00", as_="admin")
    assert r.json["total"] >= 8


async def test_bad_filters_are_400(api):
    for query, field in (("?since=yesterday", "since"), ("?since=2020-01-01T00:00:00", "since"),
                         ("?action=DROP%20TABLE", "action"), ("?limit=1001", "limit")):
        r = await api.call("GET", "/api/v1/audit" + query, as_="admin")
        assert r.code == 400 and r.error["details"]["field"] == field, query


async def test_users_may_not_read_the_log(api):
    assert (await api.call("GET", "/api/v1/audit")).code == 403
    assert (await api.call("GET", "/api/v1/audit", as_=None)).code == 401
