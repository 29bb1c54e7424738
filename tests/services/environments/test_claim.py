"""Claiming an environment through the running server: every tier placed in one transaction, or nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Environment, Guest, GuestState, Step, utcnow
from fogmachine.errors import NoCapacity, NotFound, PermissionDenied, ValidationError
from fogmachine.services import checkout as co
from fogmachine.services.actor import Actor
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from tests.services.environments.conftest import DB_AND_WEB, add_template, count_environments, env_req
from tests.support import provisioning as pv
from tests.support import testhosts


def _audit(ctx: Any, action: str) -> list[tuple[str, str, str]]:
    return ctx.db.run_sync(lambda s: [(e.object_name, e.result, e.message) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))])


def _nothing_claimed(srv: Any) -> None:
    assert count_environments(srv.ctx) == 0 and pv.count_guests(srv.ctx) == 0


async def test_a_two_tier_environment_is_claimed_whole_and_only_its_first_tier_provisioned(cloud: Any) -> None:
    srv = await cloud()
    ctx = srv.ctx
    env = await checkout_environment(ctx, srv.alice, env_req(days=3, keep_failed=True))
    assert (env.name, env.live_name, env.owner_id, env.template_name) == ("lab1", "lab1", srv.alice.user_id,
                                                                          "db-and-web")
    assert (env.step, env.tier, env.keep_failed, env.purpose) == ("provisioning", -1, True, "testing")
    assert json.loads(env.spec)["tiers"][1] == {**DB_AND_WEB["tiers"][1], "name_pattern": "{env}-{tier}{n}",
                                                "variables": {}}
    assert env.expires_at is not None and abs(env.expires_at - (utcnow() + dt.timedelta(days=3))) < dt.timedelta(
        minutes=5)
    guests = {g.name: g for g in env.guests}
    assert sorted(guests) == ["lab1-db1", "lab1-web1", "lab1-web2"]
    assert [(guests[n].tier, guests[n].tier_index) for n in sorted(guests)] == [(0, 0), (1, 0), (1, 1)]
    assert {g.expires_at for g in guests.values()} == {env.expires_at}
    assert len({g.mac for g in guests.values()}) == 3 and len({g.uuid for g in guests.values()}) == 3
    assert guests["lab1-web1"].host.name != guests["lab1-web2"].host.name  # anti-affinity
    # Every guest holds its capacity and waits: no domain name, token, record or worker yet. The engine
    # starts tier 0 once the claim has committed (test_engine.py follows the tiers).
    for name in ("lab1-db1", "lab1-web1", "lab1-web2"):
        web = guests[name]
        assert (web.step, web.state, web.domain_name, web.worker, web.phonehome_token_hash, web.cobbler_system) == (
            Step.WAITING, GuestState.UNDEFINED, None, "", "", "")
        assert web.environment_id == env.id and web.owner_id == srv.alice.user_id
    # The waiting guests' capacity is held: what the preview (placement) counts as used.
    preview = await co.preview(ctx, srv.alice, "unit")
    assert sum(h["free_ram_mb"] for h in preview["hosts"]) == 2 * 8192 - 3 * 1024
    assert _audit(ctx, "environment.checkout") == [
        ("lab1", "ok", "template db-and-web for 3 day(s): 3 guest(s) in tiers db x1, web x2")]
    lines = _audit(ctx, "guest.checkout")
    assert [(n, r) for n, r, _ in lines] == [("lab1-db1", "ok"), ("lab1-web1", "ok"), ("lab1-web2", "ok")]
    assert all(m.endswith(", tier " + ("db" if n.endswith("db1") else "web")) and "; environment lab1" in m
               for n, _, m in lines)


async def test_anti_affinity_with_fewer_hosts_than_guests_is_a_409_naming_the_tier_and_nothing_is_made(
        cloud: Any) -> None:
    srv = await cloud(hosts={"h1": {"cpus": 16, "memory_mb": 65536}})
    with pytest.raises(NoCapacity) as info:
        await checkout_environment(srv.ctx, srv.alice, env_req())
    error = info.value
    assert error.status == 409 and error.message.startswith("tier web cannot be placed: its guest lab1-web2")
    assert "h1: takes another guest of tier web (anti-affinity)" in error.message
    assert (error.details["tier"], error.details["guest"]) == ("web", "lab1-web2")
    assert error.details["hosts"] == {"h1": "takes another guest of tier web (anti-affinity)"}
    assert error.details["most_free"] == {"ram_mb": 0, "vcpus": 0, "host": None}
    await pv.settle(srv.ctx)
    _nothing_claimed(srv)
    assert await pv.Domains(srv.ctx).names("h1") == set()
    assert [(n, r) for n, r, _ in _audit(srv.ctx, "environment.checkout")] == [("lab1", "refused")]
    assert _audit(srv.ctx, "guest.checkout") == []


async def test_no_room_for_a_later_tier_says_what_the_best_host_had_free(cloud: Any) -> None:
    srv = await cloud()
    add_template(srv.ctx, "heavy", {"tiers": [{"name": "db", "target": "unit"},
                                              {"name": "app", "target": "big", "count": 3}]})
    with pytest.raises(NoCapacity) as info:
        await checkout_environment(srv.ctx, srv.alice, env_req(template="heavy"))
    error = info.value
    # db on h1, app1 on h2 (spread: the most free), app2 beside db: app3 finds 2048 MiB at most, on h2.
    assert (error.details["tier"], error.details["guest"]) == ("app", "lab1-app3")
    assert error.details["most_free"] == {"ram_mb": 2048, "vcpus": 14, "host": "h2"}
    assert "the most any host has free is 2048 MiB (on h2)" in error.message
    assert error.details["requested"] == {"ram_mb": 6144, "vcpus": 2, "virt_type": "kvm"}
    _nothing_claimed(srv)


async def test_names_already_live_are_refused_and_nothing_is_made(cloud: Any) -> None:
    srv = await cloud(hosts={"h1": {"cpus": 16, "memory_mb": 65536}, "h2": {"cpus": 16, "memory_mb": 65536}})
    ctx = srv.ctx
    await checkout_environment(ctx, srv.alice, env_req("lab1"))
    bob = pv.add_user(ctx, "bob")
    with pytest.raises(ValidationError) as info:
        await checkout_environment(ctx, bob, env_req("lab1"))
    assert info.value.details["field"] == "name" and "an environment named lab1 already exists" in info.value.message
    await co.checkout(ctx, bob, co.CheckoutRequest("lab2-web2", "unit", 1, "mine"))
    with pytest.raises(ValidationError) as info:
        await checkout_environment(ctx, srv.alice, env_req("lab2"))
    assert info.value.details["field"] == "name" and "a guest named lab2-web2 already exists" in info.value.message
    await pv.settle(ctx)
    assert count_environments(ctx) == 1 and pv.count_guests(ctx) == 4


async def test_a_domain_of_the_same_name_keeps_its_host_from_taking_the_guest(cloud: Any) -> None:
    """As for a checkout of its own: someone else's domain named like a guest rules its host out."""
    srv = await cloud(hosts={"h1": {"cpus": 16, "memory_mb": 65536, "domains": [testhosts.TestDomain("lab1-db1")]},
                             "h2": {"cpus": 4, "memory_mb": 8192}})
    mirrored = await pv.wait_for(lambda: srv.ctx.db.run_sync(lambda s: s.scalar(
        select(Guest.id).where(Guest.domain_name == "lab1-db1"))), lambda found: found is not None)
    assert mirrored is not None
    env = await checkout_environment(srv.ctx, srv.alice, env_req())
    assert {g.name: g.host.name for g in env.guests}["lab1-db1"] == "h2"
    await pv.settle(srv.ctx)


@pytest.mark.parametrize(("request_", "field", "says"), [
    (env_req("Lab1"), "name", "DNS label"),
    (env_req("-lab"), "name", "DNS label"),
    (env_req("a" * 64), "name", "DNS label"),
    (env_req("a" * 60), "name", f"would name guest 1 of tier db '{'a' * 60}-db1', which is not a valid guest name"),
    (env_req(days=0), "days", "between"),
    (env_req(purpose=" "), "purpose", "purpose"),
    (env_req(keep_failed="yes"), "keep_failed", "true or false"),
    (env_req(template=""), "template", "required"),
    (env_req(template="x" * 64), "template", "at most 63"),
])
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(cloud: Any, request_: EnvironmentRequest,
                                                                       field: str, says: str) -> None:
    srv = await cloud()
    with pytest.raises(ValidationError) as info:
        await checkout_environment(srv.ctx, srv.alice, request_)
    assert info.value.status == 400 and info.value.details["field"] == field and says in info.value.message
    _nothing_claimed(srv)


async def test_a_template_that_names_two_guests_alike_or_an_unknown_target_is_refused(cloud: Any) -> None:
    srv = await cloud()
    add_template(srv.ctx, "twins", {"tiers": [{"name": "db", "target": "unit", "name_pattern": "{env}-x"},
                                              {"name": "web", "target": "unit", "name_pattern": "{env}-x"}]})
    with pytest.raises(ValidationError) as info:
        await checkout_environment(srv.ctx, srv.alice, env_req(template="twins"))
    assert info.value.details["field"] == "name" and "tiers db and web would both name a guest lab1-x" in str(
        info.value)
    add_template(srv.ctx, "gone", {"tiers": [{"name": "db", "target": "unit"}, {"name": "web", "target": "nope"}]})
    with pytest.raises(ValidationError) as info:
        await checkout_environment(srv.ctx, srv.alice, env_req(template="gone"))
    assert info.value.details == {"field": "template", "tier": "web", "target": "nope"}
    assert info.value.message.startswith("tier web: unknown") and "'nope'" in info.value.message
    _nothing_claimed(srv)


async def test_a_template_the_actor_may_not_see_is_not_found(cloud: Any) -> None:
    srv = await cloud()
    ctx = srv.ctx
    bob = pv.add_user(ctx, "bob")
    root = pv.add_user(ctx, "root", admin=True)
    add_template(ctx, "bobs", DB_AND_WEB, owner_id=bob.user_id)
    for template in ("bobs", "nope"):
        with pytest.raises(NotFound) as info:
            await checkout_environment(ctx, srv.alice, env_req(template=template))
        assert info.value.status == 404 and info.value.message == f"no environment template named {template!r}"
    _nothing_claimed(srv)
    # Its owner and administrators may use it; the shared one is everyone's.
    assert (await checkout_environment(ctx, bob, env_req("lab1", "bobs"))).template_name == "bobs"
    assert (await checkout_environment(ctx, root, env_req("lab2", "bobs"))).owner_id == root.user_id
    assert (await checkout_environment(ctx, srv.alice, env_req("lab3"))).template_name == "db-and-web"
    await pv.settle(ctx)
    assert count_environments(ctx) == 3


async def test_read_only_tokens_and_ownerless_actors_cannot_check_out(cloud: Any) -> None:
    srv = await cloud()
    for actor in (Actor(srv.alice.user_id, "alice", scope="read"), Actor.system()):
        with pytest.raises(PermissionDenied):
            await checkout_environment(srv.ctx, actor, env_req())
    _nothing_claimed(srv)


async def test_deleting_a_waiting_guest_removes_only_its_row(cloud: Any) -> None:
    """Nothing of it exists but its row; the environment goes on without it (test_engine.py: its tiers)."""
    from fogmachine.services import lifecycle

    srv = await cloud()
    env = await checkout_environment(srv.ctx, srv.alice, env_req())
    web = next(g for g in env.guests if g.name == "lab1-web1")
    await lifecycle.delete(srv.ctx, srv.alice, web.id)
    row = pv.guest(srv.ctx, web.id)
    assert (row.step, row.live_name, row.environment_id, row.domain_name) == (Step.RETIRED, None, env.id, None)
    await pv.wait_for(lambda: srv.ctx.db.run_sync(lambda s: s.get(Environment, env.id)).step,
                      lambda step: step == "ready")
    rows = srv.ctx.db.run_sync(lambda s: {g.name: g.step for g in s.scalars(
        select(Guest).where(Guest.environment_id == env.id))})
    assert rows == {"lab1-db1": Step.READY, "lab1-web1": Step.RETIRED, "lab1-web2": Step.READY}
    assert "lab1-web1" not in (await pv.Domains(srv.ctx).names("h1") | await pv.Domains(srv.ctx).names("h2"))
