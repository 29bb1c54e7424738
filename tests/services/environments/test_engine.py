"""The environment engine through the running server: tiers in order, their variables, failures, the sweep.

Guests of the ``announce`` entry boot a kernel whose command line carries their phone-home URL (with
the token) and their tier's variables; the tests read it from the domain, as the guest would, and phone
home over HTTP with it, as the guest's installer does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select, update
from tornado.httpclient import AsyncHTTPClient

from fogmachine.db.models import AuditEvent, Environment, Guest, GuestStep, Host, Step, utcnow
from fogmachine.services import phonehome, reconcile
from fogmachine.services.environments import actions
from fogmachine.services.environments.claim import checkout_environment
from tests.services.environments.conftest import add_template, env_req
from tests.support import provisioning as pv

TIERED = {"tiers": [
    {"name": "db", "target": "announce", "variables": {"owner_env": "{{ owner.username }}@{{ env.name }}"}},
    {"name": "web", "target": "announce", "count": 2, "anti_affinity": True,
     "variables": {"db_host": "{{ db.ip }}", "db_name": "{{ db.hostname }}",
                   "all_db": "{{ db | map(attribute='ip') | join(',') }}"}},
]}


def _env(ctx: Any, env_id: int) -> Environment:
    return ctx.db.run_sync(lambda s: s.get(Environment, env_id))


def _guests(ctx: Any, env_id: int) -> dict[str, Guest]:
    return {g.name: g for g in ctx.db.run_sync(lambda s: list(s.scalars(
        select(Guest).where(Guest.environment_id == env_id))))}


async def _wait_steps(ctx: Any, env_id: int, want: dict[str, str]) -> dict[str, Guest]:
    got = await pv.wait_for(lambda: _guests(ctx, env_id),
                            lambda g: all(g[name].step == step for name, step in want.items()))
    assert {name: got[name].step for name in want} == want
    return got


async def _cmdline(ctx: Any, guest: Guest) -> str:
    """The guest's kernel command line, read from its domain on its host (as the guest boots it)."""
    host = ctx.db.run_sync(lambda s: s.get(Host, guest.host_id).name)
    seen: list[str] = []
    await ctx.hosts.get(host).redefine(guest.domain_name, lambda xml: seen.append(xml) and None)
    found = re.search(r"<cmdline>(.*?)</cmdline>", seen[0], re.S)
    assert found is not None
    return found.group(1)


async def _phone_home(srv: Any, guest: Guest, ip: str, hostname: str) -> str:
    """Phone home as the guest's installer does, with the token from its command line; the token."""
    url = re.search(r"fm\.phonehome=(\S+)", (await _cmdline(srv.ctx, guest)).replace("&amp;", "&"))
    assert url is not None
    token = parse_qs(urlsplit(url.group(1)).query)["token"][0]
    answer = await AsyncHTTPClient().fetch(f"{srv.base_url}/guest/{guest.mac}/set?token={token}&ip={ip}"
                                           f"&hostname={hostname}")
    assert answer.code == 200
    return token


async def _env_vars(srv: Any, guest: Guest, token: str) -> dict[str, Any]:
    answer = await AsyncHTTPClient().fetch(f"{srv.base_url}/guest/{guest.mac}/env?token={token}")
    body: dict[str, Any] = json.loads(answer.body)
    return body


def _audit(ctx: Any, name: str) -> list[tuple[str, str, str]]:
    return ctx.db.run_sync(lambda s: [(e.action, e.result, e.message) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "environment", AuditEvent.object_name == name)
        .order_by(AuditEvent.id))])


async def test_tiers_start_in_order_each_with_variables_from_the_tiers_before(cloud: Any) -> None:
    srv = await cloud()
    ctx = srv.ctx
    add_template(ctx, "tiered", TIERED)
    env = await checkout_environment(ctx, srv.alice, env_req(template="tiered"))
    assert env.tier == -1 and {g.step for g in env.guests} == {Step.WAITING}  # the engine starts tier 0

    guests = await _wait_steps(ctx, env.id, {"lab1-db1": Step.INSTALLING, "lab1-web1": Step.WAITING,
                                             "lab1-web2": Step.WAITING})
    db = guests["lab1-db1"]
    assert "fogmachine_var_owner_env=alice@lab1" in await _cmdline(ctx, db)
    db_token = await _phone_home(srv, db, "10.0.2.15", "db.lab.example")
    assert await _env_vars(srv, db, db_token) == {"environment": "lab1", "tier": "db", "index": 0,
                                                  "variables": {"owner_env": "alice@lab1"}}

    guests = await _wait_steps(ctx, env.id, {"lab1-db1": Step.READY, "lab1-web1": Step.INSTALLING,
                                             "lab1-web2": Step.INSTALLING})
    assert guests["lab1-web1"].host_id != guests["lab1-web2"].host_id
    want = {"all_db": "10.0.2.15", "db_host": "10.0.2.15", "db_name": "db.lab.example"}
    for index, name in enumerate(("lab1-web1", "lab1-web2")):
        line = await _cmdline(ctx, guests[name])
        assert "fogmachine_var_db_host=10.0.2.15 fogmachine_var_db_name=db.lab.example" in line
        token = await _phone_home(srv, guests[name], f"10.0.2.{16 + index}", f"web{index + 1}.lab.example")
        assert await _env_vars(srv, guests[name], token) == {"environment": "lab1", "tier": "web", "index": index,
                                                             "variables": want}
    await pv.wait_for(lambda: _env(ctx, env.id).step, lambda step: step == "ready")
    assert _env(ctx, env.id).step == "ready"
    assert [(a, r) for a, r, _ in _audit(ctx, "lab1")] == [
        ("environment.checkout", "ok"), ("environment.tier", "ok"), ("environment.tier", "ok"),
        ("environment.ready", "ok")]
    shown = ctx.db.run_sync(actions.show, srv.alice, env.id)
    assert [(t["name"], t["state"]) for t in shown["tiers"]] == [("db", "ready"), ("web", "ready")]


async def test_a_guest_of_no_environment_gets_empty_variables(cloud: Any) -> None:
    from fogmachine.services import checkout as co

    srv = await cloud()
    guest = await co.checkout(srv.ctx, srv.alice, co.CheckoutRequest("solo", "announce", 1, "testing"))
    await pv.settle(srv.ctx)
    token = await _phone_home(srv, pv.guest(srv.ctx, guest.id), "10.0.2.20", "solo")
    assert await _env_vars(srv, pv.guest(srv.ctx, guest.id), token) == {
        "environment": "", "tier": "", "index": None, "variables": {}}


async def _failing_web(cloud: Any, keep_failed: bool) -> tuple[Any, int]:
    """An environment whose db tier gets ready and whose web tier fails (its host refuses a xen domain)."""
    srv = await cloud(hosts={"h1": {"cpus": 4, "memory_mb": 8192}, "x1": {"cpus": 4, "memory_mb": 8192},
                             "x2": {"cpus": 4, "memory_mb": 8192}})
    srv.ctx.db.run_sync(lambda s: s.execute(update(Host).where(Host.name.in_(["x1", "x2"]))
                                            .values(virt_type="xen")))
    add_template(srv.ctx, "breaks", {"tiers": [{"name": "db", "target": "unit"},
                                               {"name": "web", "target": "vm-xen", "count": 2,
                                                "anti_affinity": True}]})
    env = await checkout_environment(srv.ctx, srv.alice, env_req(template="breaks", keep_failed=keep_failed))
    await pv.wait_for(lambda: _env(srv.ctx, env.id).step, lambda step: step == "failed")
    await srv.ctx.environments.wait()
    await pv.settle(srv.ctx)
    return srv, env.id


async def test_a_failed_tier_fails_the_environment_and_everything_it_made_is_torn_down(cloud: Any) -> None:
    srv, env_id = await _failing_web(cloud, keep_failed=False)
    ctx = srv.ctx
    env = _env(ctx, env_id)
    assert re.fullmatch(r"guest lab1-web\d \(tier web\) failed at defining: .*domain type.*", env.step_reason)
    guests = await pv.wait_for(lambda: _guests(ctx, env_id), lambda g: all(x.step == Step.RETIRED for x in g.values()))
    assert {x.step for x in guests.values()} == {Step.RETIRED}
    for host in ("h1", "x1", "x2"):
        assert not {n for n in await pv.Domains(ctx).names(host) if n.startswith("lab1-")}
    await pv.wait_for(lambda: _env(ctx, env_id).step, lambda step: step == "retired")
    assert _env(ctx, env_id).step == "retired" and _env(ctx, env_id).live_name is None
    assert ("environment.provision", "failed") in [(a, r) for a, r, _ in _audit(ctx, "lab1")]


async def test_a_failed_environment_kept_for_inspection_keeps_what_it_made(cloud: Any) -> None:
    srv, env_id = await _failing_web(cloud, keep_failed=True)
    ctx = srv.ctx
    env = _env(ctx, env_id)
    assert env.step == "failed" and "tier web" in env.step_reason
    guests = _guests(ctx, env_id)
    assert guests["lab1-db1"].step == Step.READY
    assert "lab1-db1" in await pv.Domains(ctx).names("h1")  # the only kvm host
    # the sweep leaves it as it is
    await srv.parts.tasks.run_once("environments")
    assert _env(ctx, env_id).step == "failed" and _guests(ctx, env_id)["lab1-db1"].step == Step.READY
    # deleting it removes everything
    await actions.delete(ctx, srv.alice, env_id)
    guests = _guests(ctx, env_id)
    assert {x.step for x in guests.values()} == {Step.RETIRED}
    assert not {n for n in await pv.Domains(ctx).names("h1") if n.startswith("lab1-")}
    assert _env(ctx, env_id).step == "retired"


async def test_the_sweep_starts_a_tier_whose_poke_was_lost(cloud: Any) -> None:
    """A process that wrote the last phone-home of a tier and died before it could start the next: the
    periodic sweep (any process, and at every start) starts it."""
    srv = await cloud(environment_interval="86400")
    ctx = srv.ctx
    add_template(ctx, "tiered", TIERED)
    env = await checkout_environment(ctx, srv.alice, env_req(template="tiered"))
    guests = await _wait_steps(ctx, env.id, {"lab1-db1": Step.INSTALLING})
    db = guests["lab1-db1"]
    url = re.search(r"fm\.phonehome=(\S+)", (await _cmdline(ctx, db)).replace("&amp;", "&"))
    assert url is not None
    token = parse_qs(urlsplit(url.group(1)).query)["token"][0]
    # The phone-home as the other process wrote it: committed, and nobody poked.
    ctx.db.run_sync(phonehome.record_address, db.mac, token, "10.0.2.15", "db", "127.0.0.1", lock=True)
    assert _guests(ctx, env.id)["lab1-web1"].step == Step.WAITING
    assert await srv.parts.tasks.run_once("environments")
    await ctx.environments.wait()
    await _wait_steps(ctx, env.id, {"lab1-web1": Step.INSTALLING, "lab1-web2": Step.INSTALLING})


async def test_extend_and_delete_go_to_every_guest(cloud: Any) -> None:
    srv = await cloud()
    ctx = srv.ctx
    add_template(ctx, "tiered", TIERED)
    env = await checkout_environment(ctx, srv.alice, env_req(template="tiered", days=2))
    await _wait_steps(ctx, env.id, {"lab1-db1": Step.INSTALLING})
    before = _env(ctx, env.id).expires_at
    shown = ctx.db.run_sync(actions.extend, ctx.config, srv.alice, env.id, 3, lock=True)
    after = _env(ctx, env.id).expires_at
    assert (after - before).days == 3 and shown["expires_at"] is not None
    assert {g.expires_at for g in _guests(ctx, env.id).values()} == {after}
    other = pv.add_user(ctx, "bob")
    from fogmachine.errors import NotFound

    try:
        ctx.db.run_sync(actions.show, other, env.id)
        raise AssertionError("bob sees alice's environment")
    except NotFound:
        pass
    # Deleted while its first tier installs: retired at once, every guest deleted, nothing left on a host.
    await actions.delete(ctx, srv.alice, env.id)
    await ctx.environments.wait()
    await pv.settle(ctx)
    assert _env(ctx, env.id).step == "retired"
    assert {g.step for g in _guests(ctx, env.id).values()} == {Step.RETIRED}
    for host in ("h1", "h2"):
        assert not {n for n in await pv.Domains(ctx).names(host) if n.startswith("lab1-")}


async def test_a_later_tier_has_the_whole_provision_timeout_from_its_own_start(cloud: Any) -> None:
    """Its guests were claimed with the environment, but their install began when their tier started: a tier that
    waited long for the ones before it is not timed out by reconciliation for that wait."""
    srv = await cloud(provision_timeout="600")
    ctx = srv.ctx
    add_template(ctx, "tiered", TIERED)
    env = await checkout_environment(ctx, srv.alice, env_req(template="tiered"))
    db = (await _wait_steps(ctx, env.id, {"lab1-db1": Step.INSTALLING}))["lab1-db1"]

    def shift(session: Any, guest_ids: list[int], minutes: int) -> None:
        """As if those guests had been claimed, and had started, ``minutes`` earlier."""
        earlier = utcnow() - dt.timedelta(minutes=minutes)
        session.execute(update(Guest).where(Guest.id.in_(guest_ids)).values(created_at=earlier))
        session.execute(update(GuestStep).where(GuestStep.guest_id.in_(guest_ids)).values(at=earlier))

    # db took 20 minutes to install (the whole environment was claimed then), and phones home now.
    ctx.db.run_sync(shift, [g.id for g in _guests(ctx, env.id).values()], 20)
    await _phone_home(srv, db, "10.0.2.15", "db.lab.example")
    guests = await _wait_steps(ctx, env.id, {"lab1-web1": Step.INSTALLING, "lab1-web2": Step.INSTALLING})
    report = await reconcile.reconcile(ctx)
    assert report.failed_provisioning == []
    assert {g.step for name, g in _guests(ctx, env.id).items() if name != "lab1-db1"} == {Step.INSTALLING}
    # Once their own install has taken longer than provision_timeout, they are late like any guest.
    ctx.db.run_sync(shift, [guests["lab1-web1"].id], 11)
    report = await reconcile.reconcile(ctx)
    assert report.failed_provisioning == ["lab1-web1"]
    assert "did not phone home within 600 s" in _guests(ctx, env.id)["lab1-web1"].step_reason
