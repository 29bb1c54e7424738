"""Environments under faults, on the real Cobbler and both real libvirtd/QEMU hosts with the tiny guest.

Whatever breaks, an environment ends failed and clean, or finishes: never half-made and forgotten.

- A tier-2 guest fails to install: its profile's guests are defined but cannot start (their libvirt network does
  not exist; the xen profile the unit tests use cannot be placed on these qemu hosts at all). The environment
  fails naming the guest and its step, and everything it made is torn down, the ready db guest included.
- The host of tier 1 dies (its libvirtd is SIGKILLed; its QEMU guests keep running) while tier 2 waits.
- The server is SIGKILLed between tiers (db phoned home, web not started) and started again.

Tier-1 guests of the last two install from the gated kickstart (tests/support/gate.py): they wait at a URL of
the test's before they phone home, so the test acts while the tier is installing for certain, then lets it go.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.config import Config
from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent, Environment, Guest, Host, Step, User
from fogmachine.db.session import Database
from fogmachine.services import tokens
from fogmachine.services.actor import Actor
from fogmachine.services.environments import templates
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from tests.support import cobbler as cb
from tests.support import databases, serverproc
from tests.support import provisioning as pv
from tests.support import realhosts as rh
from tests.support.gate import Gate
from tests.support.tcpproxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent.parent
PREFIX = "fmtest-envf-"
HOST_NUMBER = {"rh1": "1", "rh2": "2"}  # tests/infra/libvirt_hosts.sh's numbers for the real hosts
GATE_WAIT = 300  # seconds a gated guest may take to boot and reach its gate (a deadline, not an expectation)


def libvirt_host(command: str, name: str) -> None:
    subprocess.run(["bash", str(ROOT / "tests/infra/libvirt_hosts.sh"), command, HOST_NUMBER[name]], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def read(db: Any, env_id: int) -> tuple[Environment, list[tuple[Guest, str]]]:
    """The environment and its guests in tier order, each with its host's name (``db``: a Database or a
    server's)."""
    def query(session: Any) -> tuple[Environment, list[tuple[Guest, str]]]:
        guests = [(guest, host) for guest, host in session.execute(
            select(Guest, Host.name).join(Host, Guest.host_id == Host.id).where(Guest.environment_id == env_id)
            .order_by(Guest.tier, Guest.tier_index))]
        return session.get(Environment, env_id), guests

    return db.run_sync(query)


def audit_of(db: Any, name: str) -> list[tuple[str, str, str]]:
    return db.run_sync(lambda s: [(e.action, e.result, e.message) for e in s.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "environment", AuditEvent.object_name == name)
        .order_by(AuditEvent.id))])


def left_behind(guests: list[tuple[Guest, str]]) -> list[str]:
    """What of the environment's guests is still on a real host or in Cobbler."""
    systems = set(cb.system_names())
    return [f"domain {g.name} on {host}" for g, host in guests if g.name in rh.domain_names(host)] + [
        f"Cobbler system {g.name}" for g, _ in guests if g.name in systems]


async def wait_clean(db: Any, env_id: int, deadline: float = 180) -> tuple[Environment, list[tuple[Guest, str]]]:
    """Wait until the environment is retired, its guests too, and nothing of them is left anywhere."""
    def clean(state: tuple[Environment, list[tuple[Guest, str]]]) -> bool:
        env, guests = state
        return env.step == "retired" and all(g.step == Step.RETIRED for g, _ in guests) and not left_behind(guests)

    state = await pv.wait_for(lambda: read(db, env_id), clean, deadline=deadline)
    env, guests = state
    assert env.step == "retired", (env.step, env.step_reason)
    assert {g.name: g.step for g, _ in guests} == {g.name: Step.RETIRED for g, _ in guests}
    assert left_behind(guests) == []
    return state


def consoles(guests: list[tuple[Guest, str]]) -> str:
    return "\n".join(f"--- {g.name} ({g.step}: {g.step_reason}) ---\n{rh.console(g.name)}" for g, _ in guests)


@pytest.fixture
async def cloud(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                real_hosts: None, cobbler_server: None, database_url: str) -> Any:
    """A server in this process on both real hosts and the real Cobbler; alice checks out, root keeps templates.
    Reconciliation and the environments' sweep run every few seconds: the fault tests wait for what they do."""
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    port = rh.free_port()
    config = make_config(
        hosts={}, virthosts=str(rh.write_virthosts(tmp_path / "real-virthosts.conf")), listen_port=str(port),
        public_url=f"http://10.0.2.2:{port}", cobbler_url=cb.XMLRPC_URL, cobbler_password=cb.PASSWORD,
        cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op", console_log_dir=str(rh.CONSOLE_DIR),
        database_connection=database_url, reconcile_interval="2", environment_interval="1")
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    srv.admin = pv.add_user(srv.ctx, "root", admin=True)
    yield srv
    rh.remove_domains(PREFIX)
    cb.remove_systems(PREFIX)


async def test_a_tier_2_guest_that_fails_to_install_fails_the_environment_and_everything_goes(cloud: Any) -> None:
    ctx, tag = cloud.ctx, uuid.uuid4().hex[:6]
    name = f"{PREFIX}{tag}"
    await templates.save(ctx, cloud.admin, f"breaks-{tag}", "", {"tiers": [
        {"name": "db", "target": cb.ENV_PROFILE},
        {"name": "web", "target": cb.NO_NETWORK_PROFILE, "count": 2, "anti_affinity": True,
         "variables": {"db_host": "{{ db.ip }}"}}]})
    env = await checkout_environment(ctx, cloud.alice, EnvironmentRequest(f"breaks-{tag}", name, 1, "fault a"))

    failed = await pv.wait_for(lambda: read(ctx.db, env.id), lambda s: s[0].step != "provisioning", deadline=300)
    assert failed[0].step in ("failed", "retired"), f"{failed[0].step}\n{consoles(failed[1])}"
    # The reason names the guest and the step it failed at: db was ready, a web guest could not start.
    assert failed[0].step_reason.startswith(f"guest {name}-web"), failed[0].step_reason
    assert " (tier web) failed at booting: " in failed[0].step_reason and "fmtest-missing" in failed[0].step_reason
    assert ("environment.provision", "failed") in [(a, r) for a, r, _ in audit_of(ctx.db, name)]
    # db got ready first, with its domain on a real host, before the web tier started.
    steps = ctx.db.run_sync(lambda s: s.scalars(select(AuditEvent.action).where(
        AuditEvent.object_name == f"{name}-db1").order_by(AuditEvent.id)).all())
    assert "guest.ready" in steps
    # Torn down: every guest retired, no domain on either host, no Cobbler system; the environment retired.
    env_row, _guests = await wait_clean(ctx.db, env.id)
    assert env_row.step_reason == failed[0].step_reason  # the failure stays its reason


@pytest.mark.disruptive
async def test_the_host_of_tier_1_dies_while_tier_2_waits(cloud: Any) -> None:
    """db's host loses its libvirtd while db installs. db's QEMU keeps running, so it still phones home and web
    starts, but the claim placed one web guest on each host (anti-affinity, two hosts), and a host that is down
    cannot define a domain: that guest fails at defining.

    Expected: the environment fails, naming that guest and its host, and is torn down. What could be removed at
    once is (the other web guest, the Cobbler systems); db's domain, on the dead host, is left named on its retired
    row, and reconciliation removes it as soon as the host is back. A half-made environment is never left: the
    claim does not place again on the surviving host (it holds the capacity it was given, nothing more)."""
    ctx, tag = cloud.ctx, uuid.uuid4().hex[:6]
    name = f"{PREFIX}{tag}"
    gate = Gate().start()
    dead: str | None = None
    try:
        await templates.save(ctx, cloud.admin, f"host-dies-{tag}", "", {"tiers": [
            {"name": "db", "target": cb.GATED_PROFILE, "variables": {"gate": gate.url}},
            {"name": "web", "target": cb.ENV_PROFILE, "count": 2, "anti_affinity": True,
             "variables": {"db_host": "{{ db.ip }}"}}]})
        env = await checkout_environment(ctx, cloud.alice, EnvironmentRequest(f"host-dies-{tag}", name, 1, "fault b"))
        assert await asyncio.to_thread(gate.arrived.wait, GATE_WAIT), consoles(read(ctx.db, env.id)[1])
        _env, guests = read(ctx.db, env.id)
        (db, db_host), *webs = guests
        assert db.step == Step.INSTALLING and {g.step for g, _ in webs} == {Step.WAITING}
        assert {host for _, host in webs} == {"rh1", "rh2"}

        libvirt_host("stop-host", db_host)
        dead = db_host
        await pv.wait_for(lambda: pv.host_row(ctx, db_host).state, lambda state: state == "down", deadline=60)
        assert pv.host_row(ctx, db_host).state == "down"
        gate.open()  # db phones home (its QEMU runs on), and the web tier starts

        failed = await pv.wait_for(lambda: read(ctx.db, env.id), lambda s: s[0].step != "provisioning",
                                   deadline=300)
        reason = failed[0].step_reason
        assert failed[0].step in ("failed", "retired"), f"{failed[0].step}\n{consoles(failed[1])}"
        on_dead = next(g.name for g, host in webs if host == db_host)
        assert reason.startswith(f"guest {on_dead} (tier web) failed at defining: "), reason
        assert f"host {db_host} is down" in reason, reason
        assert "guest.ready" in ctx.db.run_sync(lambda s: s.scalars(select(AuditEvent.action).where(
            AuditEvent.object_name == db.name)).all())
        # Everything that could go went; db's domain waits on the dead host, named on its row.
        _env, guests = await pv.wait_for(lambda: read(ctx.db, env.id),
                                         lambda s: all(g.step == Step.RETIRED for g, _ in s[1]), deadline=180)
        assert all(g.step == Step.RETIRED for g, _ in guests)
        row = next(g for g, _ in guests if g.name == db.name)
        assert row.domain_name == db.name and db.name not in cb.system_names()

        libvirt_host("start-host", db_host)
        dead = None
        env_row, _guests = await wait_clean(ctx.db, env.id)  # reconciliation removed db's domain
        assert env_row.step_reason == reason
    finally:
        gate.stop()
        if dead is not None:
            libvirt_host("start-host", dead)


# -- the server SIGKILLed between tiers ------------------------------------------------------------

def add_admin_with_token(db: Database) -> str:
    def add(session: Any) -> str:
        user = User(username="ann", email="ann@example.org", is_admin=True)
        session.add(user)
        session.flush()
        _row, token = tokens.create_token(session, Actor(user.id, "ann", is_admin=True),
                                          tokens.NewToken("env faults", "write"))
        return token

    return db.run_sync(add)


@pytest.mark.parametrize("backend", databases.BACKENDS)
def test_the_server_killed_between_tiers_is_finished_by_the_restarted_servers_start_up_sweep(
        backend: str, tmp_path: Path, real_hosts: None, cobbler_server: None) -> None:
    """db phoned home and its tier is ready; the web tier has not started, because the server could not reach
    Cobbler at that moment (the engine leaves the tier to the sweep then: a Cobbler of its own behind a proxy the
    test cuts). The server is SIGKILLed there: no shutdown code runs. A new server on the same database (and the
    same address, which the guests were given) is started with the periodic sweep an hour apart, so what moves
    the environment on is its sweep at start.

    Expected: it finishes. The restarted server's start-up sweep finds db ready and web waiting, starts web with
    db's variables, and web's guests install and phone home: every guest ready, each web guest on its own host."""
    name = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    with databases.fresh_database(backend, tmp_dir=str(tmp_path)) as url:
        db = Database(url, threads=2)
        migrate.ensure_schema(db.engine)
        token = add_admin_with_token(db)
        port = serverproc.free_port()
        settings = {"data_dir": str(tmp_path / "data"), "database_connection": url, "log_level": "info",
                    "virthosts": str(rh.write_virthosts(tmp_path / "virthosts.conf")),
                    "public_url": f"http://10.0.2.2:{port}", "console_log_dir": str(rh.CONSOLE_DIR),
                    "cobbler_user": cb.USER, "cobbler_password": cb.PASSWORD,
                    "cobbler_autoinstall_url": "http://10.0.2.2:25152/cblr/svc/op", "environment_interval": "3600"}
        proxy = TcpProxy(("127.0.0.1", 25151)).start()
        gate = Gate().start()
        servers: list[serverproc.ServerProcess] = []
        try:
            first = serverproc.spawn(tmp_path / "first", "first",
                                     {**settings, "cobbler_url": f"http://127.0.0.1:{proxy.port}/"}, port=port)
            servers.append(first)
            spec = {"tiers": [{"name": "db", "target": cb.GATED_PROFILE, "variables": {"gate": gate.url}},
                              {"name": "web", "target": cb.ENV_PROFILE, "count": 2, "anti_affinity": True,
                               "variables": {"db_host": "{{ db.ip }}", "db_name": "{{ db.hostname }}"}}]}
            saved = first.request("/api/v1/environment-templates/killed", method="PUT", body=spec, token=token)
            assert saved.code == 200, saved.body
            order = {"template": "killed", "name": name, "days": 1, "purpose": "fault c"}
            made = first.request("/api/v1/environments", method="POST", body=order, token=token)
            assert made.code == 202, made.body
            env_id = made.body["id"]
            assert gate.arrived.wait(GATE_WAIT), consoles(read(db, env_id)[1])

            proxy.cut()  # Cobbler is away for this server from here on
            gate.open()
            deadline = time.monotonic() + 120
            while read(db, env_id)[1][0][0].step != Step.READY and time.monotonic() < deadline:
                time.sleep(0.1)
            first.kill()
            env, guests = read(db, env_id)
            (db_guest, _), *webs = guests
            assert db_guest.step == Step.READY, consoles(guests)
            assert (env.step, env.tier) == ("provisioning", 0)
            assert [(g.step, g.worker) for g, _ in webs] == [(Step.WAITING, "")] * 2  # nothing of web was made
            print(f"\n{backend}: killed the server with {db_guest.name} ready and the web tier waiting")

            restarted = serverproc.spawn(tmp_path / "second", "second",
                                         {**settings, "cobbler_url": cb.XMLRPC_URL}, port=port)
            servers.append(restarted)
            started = time.monotonic()
            deadline = started + 420
            while read(db, env_id)[0].step == "provisioning" and time.monotonic() < deadline:
                time.sleep(0.5)
            env, guests = read(db, env_id)
            assert env.step == "ready", f"{env.step}: {env.step_reason}\n{consoles(guests)}"
            print(f"{backend}: ready {time.monotonic() - started:.1f} s after the restart")
            assert {g.step for g, _ in guests} == {Step.READY}
            assert {host for _, host in guests[1:]} == {"rh1", "rh2"}
            for web, _host in guests[1:]:
                log = rh.console(web.name)
                assert f"fogmachine: env db_name={db_guest.hostname}" in log, log
            tiers = [m for a, _r, m in audit_of(db, name) if a == "environment.tier"]
            assert [m.split(":")[0] for m in tiers] == ["tier db started", "tier web started"]
            assert "Traceback" not in restarted.log.read_text()

            gone = restarted.request(f"/api/v1/environments/{env_id}", method="DELETE", token=token)
            assert gone.code in (200, 204), gone.body
            assert left_behind(read(db, env_id)[1]) == []
        finally:
            for server in servers:
                server.stop()
            gate.stop()
            proxy.cut()
            rh.remove_domains(PREFIX)
            cb.remove_systems(PREFIX)
            db.dispose()
