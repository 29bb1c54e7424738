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


async def test_free_memory_is_the_figure_placement_decides_by(database_url, make_api, tmp_path):
    """Issue 11: /api/v1/hosts showed what the hypervisor reports free (3 MiB for libvirt's default test
    host; total minus running domains for a host file, so a shut-off guest looked free) while placement
    counted every guest's reservation. Now free is placement's everywhere: a guest the size of what the
    API shows free fits, and then nothing does."""
    from tests.support import provisioning as pv

    unit = {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "boot": "network", "network": "user"}
    catalog = pv.write_catalog(tmp_path / "catalog.conf", {"unit": unit, "rest": {**unit, "ram_mb": 3072}})
    api = await make_api(hosts={"h1": {"cpus": 2, "memory_mb": 4096}}, database_connection=database_url,
                         local_catalog=str(catalog), cpu_overcommit="2")
    order = {"name": "off1", "target": "unit", "days": 1, "purpose": "free memory"}
    r = await api.call("POST", "/api/v1/guests", body=order)
    assert r.code == 202, r.body
    await pv.settle(api.srv.ctx)
    r = await api.call("POST", f"/api/v1/guests/{r.json['id']}/destroy")  # shut off: it still holds its room
    assert r.code == 200 and r.json["state"] == "shutoff", r.body

    h1 = (await api.call("GET", "/api/v1/hosts/h1")).json
    assert (h1["free_memory_mb"], h1["memory_used_pct"]) == (3072, 25)
    assert h1["placed_memory_mb"] == 1024
    assert (h1["vcpus_free"], h1["placed_vcpus"]) == (3, 1)
    assert h1["hypervisor_free_memory_mb"] == 4096  # what libvirt says, shown apart, decides nothing
    listed = (await api.call("GET", "/api/v1/hosts")).json["hosts"]
    assert listed == [h1]
    preview = (await api.call("GET", "/api/v1/catalog/placement?target=unit")).json
    assert preview["hosts"][0]["free_ram_mb"] == h1["free_memory_mb"]
    assert preview["hosts"][0]["free_vcpus"] == h1["vcpus_free"]
    page = await api.srv.fetch("/hosts", headers={"Cookie": "; ".join(
        f"{k}={v}" for k, v in (await api.login("alice")).items())})
    assert "3 GiB free of 4 GiB" in page.body.decode()

    r = await api.call("POST", "/api/v1/guests", body={**order, "name": "all", "target": "rest"})
    assert r.code == 202, r.body  # exactly what was shown free
    await pv.settle(api.srv.ctx)
    assert (await api.call("GET", "/api/v1/hosts/h1")).json["free_memory_mb"] == 0
    r = await api.call("POST", "/api/v1/guests", body={**order, "name": "more"})
    assert r.code == 409 and r.error["details"]["most_free"]["ram_mb"] == 0
