"""End to end: an environment of two tiers on the real Cobbler and both real libvirtd/QEMU hosts, with the tiny guest.

The template is the issue's: ``db`` x1, then ``web`` x2 with anti-affinity, each web guest given
``db_host: "{{ db.ip }}"`` and ``db_name: "{{ db.hostname }}"``; every guest is of the Cobbler profile whose
kickstart is ks_scripts' sample ``fogmachine-env.ks``. The db guest installs (its %post: owner, environment,
phone-home); once it is ready the web tier starts with what db reported. Each web guest's %post then receives
the variables twice and echoes both on its serial console: Cobbler's rendering of its system's
``fogmachine_var_*`` keys (the env file) and ``GET /guest/MAC/env`` (env.json). The test reads the consoles
and compares with db's phone-home. Deleting the environment leaves no domain and no Cobbler system.

Every tiny guest is 10.0.2.15 on QEMU's user network, so ``db_host`` alone could not tell db's address from
a web guest's own; ``db_name`` (db's host name, its guest name) can.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fogmachine.config import Config
from fogmachine.db.models import Environment, Guest, Host, Step
from fogmachine.services.environments import actions, templates
from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment
from tests.support import cobbler as cb
from tests.support import provisioning as pv
from tests.support import realhosts as rh

pytestmark = [pytest.mark.realhosts, pytest.mark.cobbler]
PREFIX = "fmtest-e2env-"
ENV_JSON = "fogmachine: env.json "


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 real_hosts: None, cobbler_server: None, database_url: str) -> Any:
    rh.CONSOLE_DIR.mkdir(parents=True, exist_ok=True)
    port = rh.free_port()
    config = make_config(
        hosts={}, virthosts=str(rh.write_virthosts(tmp_path / "real-virthosts.conf")), listen_port=str(port),
        public_url=f"http://10.0.2.2:{port}", cobbler_url=cb.XMLRPC_URL, cobbler_password=cb.PASSWORD,
        cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op", console_log_dir=str(rh.CONSOLE_DIR),
        database_connection=database_url)
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    srv.admin = pv.add_user(srv.ctx, "root", admin=True)
    yield srv
    rh.remove_domains(PREFIX)
    cb.remove_systems(PREFIX)


def environment(ctx: Any, env_id: int) -> Environment:
    return ctx.db.run_sync(lambda s: s.get(Environment, env_id))


def members(ctx: Any, env_id: int) -> list[tuple[Guest, str]]:
    """The environment's guests in tier order, each with its host's name."""
    return ctx.db.run_sync(lambda s: [(guest, host) for guest, host in s.execute(
        select(Guest, Host.name).join(Host, Guest.host_id == Host.id).where(Guest.environment_id == env_id)
        .order_by(Guest.tier, Guest.tier_index))])


def consoles(ctx: Any, env_id: int) -> str:
    return "\n".join(f"--- {g.name} ({g.step}: {g.step_reason}) ---\n{rh.console(g.name)}"
                     for g, _ in members(ctx, env_id))


def served(console: str) -> list[Any]:
    """What the guest's %post echoed of its env.json, parsed."""
    return [json.loads(line.split(ENV_JSON, 1)[1]) for line in console.splitlines() if ENV_JSON in line]


async def test_each_web_guest_receives_the_db_guests_address_through_cobbler_and_the_env_route(server: Any) -> None:
    ctx, tag = server.ctx, uuid.uuid4().hex[:6]
    name, template = f"{PREFIX}{tag}", f"db-web-{tag}"
    await templates.save(ctx, server.admin, template, "the issue's two tiers", {"tiers": [
        {"name": "db", "target": cb.ENV_PROFILE},
        {"name": "web", "target": cb.ENV_PROFILE, "count": 2, "anti_affinity": True,
         "variables": {"db_host": "{{ db.ip }}", "db_name": "{{ db.hostname }}"}}]})
    env = await checkout_environment(ctx, server.alice, EnvironmentRequest(template, name, 1, "end to end"))

    done = await pv.wait_for(lambda: environment(ctx, env.id), lambda e: e.step != "provisioning", deadline=420)
    assert done.step == "ready", f"{done.step}: {done.step_reason}\n{consoles(ctx, env.id)}"
    (db, db_host), *webs = members(ctx, env.id)
    assert [g.name for g, _ in [(db, db_host), *webs]] == [f"{name}-db1", f"{name}-web1", f"{name}-web2"]
    assert {g.step for g, _ in [(db, db_host), *webs]} == {Step.READY}
    # What db reported at its phone-home: the address and name its web tier was started with.
    assert (db.ip, db.hostname) == ("10.0.2.15", db.name)
    assert {host for _, host in webs} == {"rh1", "rh2"}  # anti-affinity: one web guest on each real host
    want = {"db_host": db.ip, "db_name": db.hostname}

    for index, (web, _host) in enumerate(webs):
        # Its line comes after the server's answer reaches it: under load, a moment after the row says ready.
        log = await pv.wait_for(lambda web=web: rh.console(web.name),
                                lambda text: "fogmachine: phoned home" in text, deadline=60)
        # Cobbler's rendering of the system's fogmachine_var_* keys, written to /etc/fogmachine/env and echoed.
        assert f"fogmachine: env db_host={db.ip}\n" in log and f"fogmachine: env db_name={db.hostname}\n" in log, log
        # The same values fetched from /guest/MAC/env with the guest's token.
        assert served(log) == [{"environment": name, "tier": "web", "index": index, "variables": want}], log
        # And the sample kickstart's own use of them, from the env file, before the phone-home.
        assert f"fogmachine: this guest's database is at {db.ip}" in log
        assert log.index("fogmachine: env.json") < log.index("fogmachine: phoned home")
        system = await ctx.cobbler.get_system(web.name)
        assert system is not None
        assert {k: v for k, v in system["autoinstall_meta"].items() if k.startswith("fogmachine_var_")} == {
            "fogmachine_var_db_host": db.ip, "fogmachine_var_db_name": db.hostname}
    # db, the first tier, has no variables: an empty env file, and /env says so.
    db_log = await pv.wait_for(lambda: rh.console(db.name), lambda text: "fogmachine: phoned home" in text,
                               deadline=60)
    assert served(db_log) == [{"environment": name, "tier": "db", "index": 0, "variables": {}}], db_log
    assert "fogmachine: env db_" not in db_log

    await actions.delete(ctx, server.alice, env.id)
    assert environment(ctx, env.id).step == "retired"
    for guest, host in members(ctx, env.id):
        assert guest.step == Step.RETIRED
        assert guest.name not in rh.domain_names(host)
        assert await ctx.cobbler.get_system(guest.name) is None
