"""Hosts through the API: everyone looks, administrators switch them off and on."""

from __future__ import annotations

from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Host


def _enabled(session, name):
    return session.scalar(select(Host.enabled).where(Host.name == name))


async def test_list_and_show(api):
    r = await api.call("GET", "/api/v1/hosts", as_="alice-read")
    assert r.code == 200
    assert [h["name"] for h in r.json["hosts"]] == ["h1", "h2"]
    h1 = r.json["hosts"][0]
    assert h1["enabled"] is True and h1["virt_type"] == "test"
    r = await api.call("GET", "/api/v1/hosts/h2")
    assert r.code == 200 and r.json["name"] == "h2"
    r = await api.call("GET", "/api/v1/hosts/nope")
    assert r.code == 404 and r.error["code"] == "not_found"


async def test_admin_disables_and_enables(api):
    r = await api.call("POST", "/api/v1/hosts/h1/disable", as_="admin")
    assert r.code == 200
    assert r.json["enabled"] is False and r.json["display_state"] == "disabled"
    assert api.run(_enabled, "h1") is False
    r = await api.call("POST", "/api/v1/hosts/h1/enable", as_="admin", body={})
    assert r.code == 200 and r.json["enabled"] is True
    actions = api.run(lambda s: [e.action for e in s.scalars(select(AuditEvent).where(
        AuditEvent.object_type == "host"))])
    assert actions == ["host.disable", "host.enable"]
    r = await api.call("POST", "/api/v1/hosts/zz/disable", as_="admin")
    assert r.code == 404


async def test_users_and_read_tokens_cannot_switch_hosts(api):
    for who in ("alice", "alice-read", None):
        r = await api.call("POST", "/api/v1/hosts/h1/disable", as_=who)
        assert r.code == (401 if who is None else 403)
    assert api.run(_enabled, "h1") is True


async def test_enable_a_host_gone_from_the_config_is_409(api):
    def leave_config(session):
        host = session.scalar(select(Host).where(Host.name == "h2"))
        host.in_config, host.enabled = False, False

    api.run(leave_config)
    r = await api.call("POST", "/api/v1/hosts/h2/enable", as_="admin")
    assert r.code == 409 and "virthosts.conf" in r.error["message"]
    assert api.run(_enabled, "h2") is False


async def test_action_bodies_must_be_empty_objects(api):
    r = await api.call("POST", "/api/v1/hosts/h1/disable", as_="admin", body={"force": True})
    assert r.code == 400 and r.error["details"]["field"] == "force"
    assert api.run(_enabled, "h1") is True
