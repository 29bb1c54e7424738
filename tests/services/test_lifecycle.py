"""Lifecycle actions through the real hypervisor layer on test-driver hosts, on each database."""

import asyncio
import json

import pytest
from sqlalchemy import select

from fogmachine.catalog import CobblerCatalog
from fogmachine.db.models import AuditEvent, Environment, Guest, GuestState, Step
from fogmachine.errors import Conflict, HostUnreachable, NotFound, PermissionDenied, ValidationError
from fogmachine.services import lifecycle
from fogmachine.services.actor import Actor
from fogmachine.virt.domainxml import DomainSpec, build_domain_xml
from tests.support import testhosts
from tests.support.hostfleet import fleet, write_pool_host  # noqa: F401


async def audit_log(running):
    return await running.db(lambda s: [(e.action, e.result, e.actor_name, e.message)
                                       for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))])


async def make_guest(running, owner_id, name="web1", *, host="a", state="running", **columns):
    """A managed guest row plus its domain (defined with Fogmachine's mark), as a checkout leaves it."""
    host_row = await running.host_row(host)

    def add(s):
        guest = Guest(name=name, live_name=name, domain_name=name, owner_id=owner_id, host_id=host_row.id,
                      step=Step.READY, **columns)
        s.add(guest)
        s.flush()
        return guest.id

    gid = await running.db(add)
    conn = running.hosts.get(host)
    await conn.define(build_domain_xml(DomainSpec(name=name, domain_type="test", memory_mb=256, vcpus=1,
                                                  guest_id=gid)))
    if state == "running":
        await conn.start(name)
    await conn.resync()
    return gid


@pytest.fixture
async def cloud(make_config, fleet, tmp_path, database_url):  # noqa: F811
    uri = write_pool_host(tmp_path / "hosts", "a", tmp_path / "pool",
                          domains=[testhosts.TestDomain("stranger")])
    running = await fleet(make_config(hosts={"a": uri, "gone": "test:///nonexistent/gone.xml"},
                                      resync_interval="3600", shutdown_timeout="0.2",
                                      database_connection=database_url))
    ann = await running.add_user("ann")
    bob = await running.add_user("bob")
    running.ann = Actor(user_id=ann, username="ann")
    running.bob = Actor(user_id=bob, username="bob")
    running.admin = Actor(user_id=await running.add_user("root", admin=True), username="root", is_admin=True)
    return running


async def test_every_action_changes_the_state_and_is_audited(cloud):
    gid = await make_guest(cloud, cloud.ann.user_id)
    expected = [("pause", "paused"), ("unpause", "running"), ("restart", "running"), ("stop", "shutoff"),
                ("start", "running"), ("destroy", "shutoff"), ("refresh", "shutoff")]
    for action, state in expected:
        guest = await lifecycle.perform(cloud.ctx, cloud.ann, gid, action)
        assert (action, guest.state) == (action, state)
        assert guest.owner.username == "ann" and guest.host.name == "a"  # loaded for the caller
    log = await audit_log(cloud)
    assert [(a, r, who) for a, r, who, _ in log] == [(f"guest.{a}", "ok", "ann") for a, _ in expected]


@pytest.mark.parametrize(("setup", "action", "message"), [
    ([], "start", "guest web1 is already running"),
    (["pause"], "pause", "guest web1 is already paused"),
    ([], "unpause", "guest web1 is not paused"),
    (["destroy"], "destroy", "guest web1 is not running"),
    (["destroy"], "stop", "guest web1 is not running"),
    (["destroy"], "pause", "guest web1 is not running"),
    (["pause"], "start", "guest web1 is paused; unpause it instead"),
    (["pause"], "stop", "guest web1 is paused; unpause it to shut it down, or destroy it"),
])
async def test_actions_that_make_no_sense_are_conflicts(cloud, setup, action, message):
    gid = await make_guest(cloud, cloud.ann.user_id)
    for step in setup:
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, step)
    with pytest.raises(Conflict) as info:
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, action)
    assert info.value.message == message and info.value.status == 409
    assert (await audit_log(cloud))[-1] == (f"guest.{action}", "failed", "ann", message)


async def test_who_may_act(cloud):
    gid = await make_guest(cloud, cloud.ann.user_id)
    with pytest.raises(NotFound):  # someone else's guest is not even there for bob
        await lifecycle.perform(cloud.ctx, cloud.bob, gid, "stop")
    with pytest.raises(NotFound):
        await lifecycle.delete(cloud.ctx, cloud.bob, gid)
    reader = Actor(user_id=cloud.ann.user_id, username="ann", scope="read")
    with pytest.raises(PermissionDenied):
        await lifecycle.perform(cloud.ctx, reader, gid, "stop")
    assert (await lifecycle.perform(cloud.ctx, reader, gid, "refresh")).state == "running"
    with pytest.raises(ValidationError) as info:
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, "explode")
    assert info.value.field == "action"
    # admins act on everyone's guests
    assert (await lifecycle.perform(cloud.ctx, cloud.admin, gid, "pause")).state == "paused"


async def test_unmanaged_guests_are_never_touched(cloud):
    stranger = await cloud.guest_row("stranger")
    assert stranger is not None and not stranger.managed
    with pytest.raises(NotFound):
        await lifecycle.perform(cloud.ctx, cloud.ann, stranger.id, "destroy")
    for attempt in (lifecycle.perform(cloud.ctx, cloud.admin, stranger.id, "destroy"),
                    lifecycle.delete(cloud.ctx, cloud.admin, stranger.id)):
        with pytest.raises(Conflict, match="was not created by Fogmachine"):
            await attempt
    assert (await cloud.guest_row("stranger")).state == "running"
    assert (await lifecycle.perform(cloud.ctx, cloud.admin, stranger.id, "refresh")).state == "running"


async def test_a_guest_on_a_down_host_is_unreachable(cloud):
    host = await cloud.host_row("gone")

    def add(s):
        guest = Guest(name="lost", live_name="lost", domain_name="lost", owner_id=cloud.ann.user_id,
                      host_id=host.id, step=Step.READY, state=GuestState.UNKNOWN)
        s.add(guest)
        s.flush()
        return guest.id

    gid = await cloud.db(add)
    with pytest.raises(HostUnreachable, match="host gone is down"):
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, "start")
    with pytest.raises(HostUnreachable):
        await lifecycle.delete(cloud.ctx, cloud.ann, gid)
    assert await cloud.guest_row("lost") is not None  # nothing was changed
    assert [r for _, r, _, _ in await audit_log(cloud)] == ["failed", "failed"]


async def make_waiting_guest(running, owner_id, host="a"):
    """A later tier's guest as an environment's claim leaves it: its capacity held, no domain yet."""
    host_row = await running.host_row(host)
    spec = {"tiers": [{"name": "db", "target": "unit"}, {"name": "web", "target": "unit"}]}

    def add(s):
        env = Environment(name="lab1", live_name="lab1", owner_id=owner_id, template_name="db-and-web",
                          spec=json.dumps(spec), step="provisioning", tier=0)
        guest = Guest(name="lab1-web1", live_name="lab1-web1", domain_name=None, owner_id=owner_id,
                      host_id=host_row.id, step=Step.WAITING, state=GuestState.UNDEFINED, environment=env, tier=1,
                      tier_index=0, ram_mb=256, vcpus=1)
        s.add(guest)
        s.flush()
        return guest.id

    return await running.db(add)


@pytest.mark.parametrize("action", ["start", "stop", "pause"])
async def test_a_guest_waiting_for_its_tier_is_a_conflict_naming_that_tier(cloud, action):
    gid = await make_waiting_guest(cloud, cloud.ann.user_id)
    with pytest.raises(Conflict) as info:
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, action)
    message = ("guest lab1-web1 is waiting for tier db of environment lab1 to be ready; its own provisioning has "
               "not begun")
    assert info.value.status == 409 and info.value.message == message
    assert (await audit_log(cloud))[-1] == (f"guest.{action}", "failed", "ann", message)
    assert (await row(cloud, gid)).step == Step.WAITING


async def test_deleting_a_waiting_guest_removes_its_row_even_while_its_host_is_down(cloud):
    """It has nothing on any host yet, so its host (here one that is down) is not asked."""
    gid = await make_waiting_guest(cloud, cloud.ann.user_id, host="gone")
    await lifecycle.delete(cloud.ctx, cloud.ann, gid)
    guest = await row(cloud, gid)
    assert (guest.step, guest.live_name, guest.step_reason) == (Step.RETIRED, None, "deleted by ann")
    assert (await audit_log(cloud))[-1][:3] == ("guest.delete", "ok", "ann")


async def test_missing_domain_is_a_conflict(cloud):
    gid = await make_guest(cloud, cloud.ann.user_id)
    conn = cloud.hosts.get("a")
    await asyncio.to_thread(lambda: (conn._conn.lookupByName("web1").destroy(),
                                     conn._conn.lookupByName("web1").undefine()))
    await conn.resync()
    assert (await cloud.guest_row("web1")).state == GuestState.MISSING
    with pytest.raises(Conflict, match="guest web1 has no domain on host a any more"):
        await lifecycle.perform(cloud.ctx, cloud.ann, gid, "start")


async def row(running, gid):
    return await running.db(lambda s: s.get(Guest, gid))


async def test_delete_removes_domain_volume_cobbler_system_and_keeps_the_row_as_history(cloud):
    conn = cloud.hosts.get("a")
    path = await conn.create_volume("web1", 2)
    removed: list[str] = []

    class Cobbler:  # the real client is tested against the real Cobbler in tests/cobbler/
        async def remove_system(self, name: str) -> None:
            removed.append(name)

    cloud.ctx.catalog = CobblerCatalog(cloud.ctx.config, Cobbler())  # type: ignore[arg-type]
    gid = await make_guest(cloud, cloud.ann.user_id, volume_path=path, cobbler_system="web1")
    await lifecycle.delete(cloud.ctx, cloud.ann, gid)
    guest = await row(cloud, gid)
    assert (guest.step, guest.step_reason, guest.live_name, guest.state) == (
        Step.RETIRED, "deleted by ann", None, GuestState.UNDEFINED)
    assert (guest.domain_name, guest.volume_path, guest.cobbler_system) == (None, "", "")
    assert guest.name == "web1" and guest.retired_at is not None
    assert "web1" not in [d.name for d in await conn.list_domains()]
    with pytest.raises(NotFound):
        await conn.delete_volume(path)  # already gone
    assert removed == ["web1"]
    assert (await audit_log(cloud))[-1] == ("guest.delete", "ok", "ann", "removed domain, volume, Cobbler system; "
                                            "deleted by ann; the record is kept as history")
    with pytest.raises(Conflict, match="retired; its record is kept as history"):
        await lifecycle.delete(cloud.ctx, cloud.ann, gid)
    # The name is free again, and the history row keeps its own id (the new guest gets another).
    again = await make_guest(cloud, cloud.ann.user_id)
    assert again != gid and (await row(cloud, gid)).step == Step.RETIRED


async def test_delete_of_a_guest_whose_domain_is_already_gone(cloud):
    gid = await make_guest(cloud, cloud.ann.user_id, state="shutoff")
    await cloud.hosts.get("a").undefine("web1")
    await lifecycle.delete(cloud.ctx, cloud.ann, gid)
    assert (await row(cloud, gid)).step == Step.RETIRED


async def test_obeyed_shutdown_is_not_reported_as_ignored(cloud):
    gid = await make_guest(cloud, cloud.ann.user_id)
    await lifecycle.perform(cloud.ctx, cloud.ann, gid, "stop")
    # the watch has looked (its task ended), however long the loaded machine took: no sleep-and-hope
    watch = next(t for t in asyncio.all_tasks() if t.get_name() == "shutdown-watch-web1")
    await asyncio.wait_for(watch, 30)
    assert [r for a, r, _, _ in await audit_log(cloud) if a == "guest.stop"] == ["ok"]
    assert (await cloud.guest_row("web1")).step_reason == ""
