"""An administrator's forced delete of a guest still being provisioned (issue 11), on each database.

A guest stuck in provisioning (its process died, or a step hangs) held its capacity and could not be
deleted, not even with force=true (409 "still being provisioned"). Now force deletes it; a provisioner
still at work stops at its next step and removes what it made.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Guest, GuestState, Host, Step, User, utcnow
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import cobbler as cobbler_support
from tests.support import provisioning as pv
from tests.support.apiclient import make_api  # noqa: F401  (a fixture: pytest finds it by name)
from tests.support.stallproxy import StallingProxy


def _stuck_guest(session, name: str, worker: str) -> int:
    """A checkout stuck defining in a process that is alive (a hung step): reconciliation leaves it be."""
    owner = session.scalar(select(User).where(User.username == "alice"))
    host = session.scalar(select(Host).where(Host.name == "h1"))
    guest = Guest(name=name, live_name=name, domain_name=name, owner=owner, host=host, step=Step.DEFINING,
                  state=GuestState.UNDEFINED, worker=worker, ram_mb=1024, vcpus=1,
                  uuid=str(uuid.uuid4()), expires_at=utcnow())
    session.add(guest)
    session.flush()
    return guest.id


async def test_an_administrator_deletes_a_guest_stuck_in_provisioning(database_url, make_api):  # noqa: F811
    api = await make_api(hosts={"h1": {"cpus": 4, "memory_mb": 4096}}, database_connection=database_url)
    ctx = api.srv.ctx
    await api.srv.tasks.wait_started()
    gid = api.run(_stuck_guest, "stuck1", ctx.process_id)
    conn = ctx.hosts.get("h1")
    await conn.define(build_domain_xml(DomainSpec(name="stuck1", memory_mb=128, vcpus=1, domain_type="test",
                                                  guest_id=gid)))
    r = await api.call("DELETE", f"/api/v1/guests/{gid}")  # its owner: not while it is being provisioned
    assert r.code == 409 and "still being provisioned" in r.error["message"]
    assert "with force" in r.error["message"]
    r = await api.call("DELETE", f"/api/v1/guests/{gid}?force=true", as_="admin")
    assert r.code == 204, r.body
    assert "stuck1" not in {d.name for d in await conn.list_domains()}
    row = api.run(lambda s: s.get(Guest, gid))
    assert row is None or row.step == Step.RETIRED  # gone (or kept as history)
    assert (await api.call("GET", "/api/v1/hosts/h1")).json["placed_memory_mb"] == 0
    audits = api.run(lambda s: s.scalars(select(AuditEvent.result).where(
        AuditEvent.action == "guest.delete", AuditEvent.object_name == "stuck1")).all())
    assert audits == ["failed", "ok"]  # the owner's 409, then the administrator's delete


@pytest.mark.cobbler
async def test_a_forced_delete_stops_a_provisioner_still_at_work_and_nothing_is_left(
        database_url, make_api):  # noqa: F811
    """The provisioner runs in this process and hangs on Cobbler's answer to save_system (the system
    exists by then). The administrator's forced delete removes the system and the row; when Cobbler
    answers, the provisioner's next step finds the guest deleted and removes the domain it defines
    meanwhile. Chosen over cancelling the provisioner: the provisioner may run in another process."""
    cobbler_support.require()
    cobbler_support.seed()
    name = f"fmforce{uuid.uuid4().hex[:6]}"
    with StallingProxy(("127.0.0.1", 25151), b"<methodName>save_system</methodName>") as proxy:
        api = await make_api(hosts={"h1": {"cpus": 4, "memory_mb": 4096}}, database_connection=database_url,
                             cobbler_url=f"http://127.0.0.1:{proxy.port}/", cobbler_user=cobbler_support.USER,
                             cobbler_password=cobbler_support.PASSWORD)
        ctx = api.srv.ctx
        try:
            r = await api.call("POST", "/api/v1/guests", body={"name": name, "target": cobbler_support.PROFILE,
                                                              "days": 1, "purpose": "forced delete"})
            assert r.code == 202, r.body
            gid = r.json["id"]
            assert await asyncio.get_running_loop().run_in_executor(None, proxy.stalled.wait, 60)
            assert pv.guest(ctx, gid).step == Step.REGISTERING
            assert name in cobbler_support.system_names()
            r = await api.call("DELETE", f"/api/v1/guests/{gid}?force=true", as_="admin")
            assert r.code == 204, r.body
            assert name not in cobbler_support.system_names()
            proxy.release()  # Cobbler answers: the provisioner carries on into its next step
            await ctx.provisioner.wait(gid)
            assert name not in {d.name for d in await ctx.hosts.get("h1").list_domains()}
            assert name not in cobbler_support.system_names()
            row = pv.guest(ctx, gid)
            assert row is None or row.step == Step.RETIRED
            assert (await api.call("GET", "/api/v1/hosts/h1")).json["placed_memory_mb"] == 0
        finally:
            proxy.release()
            await ctx.provisioner.wait()
            cobbler_support.remove_systems(name)
