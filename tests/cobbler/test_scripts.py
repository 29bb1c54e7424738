"""ks_scripts: installed through Cobbler's API by the CLI, rendered by Cobbler, run by a shell."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogmachine.cobbler.scripts import DEFAULT_DIR, find_scripts
from fogmachine.config import Config
from fogmachine.db.models import Step
from fogmachine.services import checkout as co
from tests.support import cobbler as cb
from tests.support import provisioning as pv

ROOT = Path(__file__).resolve().parent.parent.parent


def fogmachine(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FOGMACHINE_")}
    return subprocess.run([sys.executable, "-m", "fogmachine.cli", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


# Values a template may give (one line, printable) that a careless snippet would let the shell run or cut short.
AWKWARD = "it's {{ owner.username }}'s $HOME `id` $(id) \"q\" \\ #end raw ; exit 1"
AWKWARD_RENDERED = "it's alice's $HOME `id` $(id) \"q\" \\ #end raw ; exit 1"
# Sourced by a shell, the env file gives every value back: printed NUL-separated, so any text survives.
READ_BACK = r'''. "$1"; shift; for n; do eval "printf '%s\0' \"\$$n\""; done'''


def busybox_path(folder: Path, *extra: str) -> Path:
    """A PATH of busybox applets (plus ``extra`` tools of this machine): like an installer's, and without
    useradd, so running the snippets here can never add an account to this machine."""
    folder.mkdir()
    for applet in ("sh", "ip", "awk", "sed", "hostname", "sleep", "timeout", "wget", "cut", "printf", "id",
                   "cat", "mkdir", "chmod", "chown", "getent"):
        (folder / applet).symlink_to("/usr/bin/busybox")
    for tool in extra:
        (folder / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    return folder


async def run_post(rendered: str, tmp_path: Path, *extra_tools: str) -> tuple[str, Path]:
    """Run the %post of ``rendered`` with a busybox PATH, in a mount namespace of its own whose /etc is a folder
    of the test's (so the snippets write there, never into this machine's /etc); its output and that folder.
    Asynchronous: the snippets call the server running in this test's loop."""
    (tmp_path / "post.sh").write_text(rendered[rendered.index("%post") + len("%post"):rendered.rindex("%end")])
    tools = busybox_path(tmp_path / "bin", *extra_tools)
    etc = tmp_path / "etc"
    etc.mkdir()
    shell = await asyncio.create_subprocess_exec(
        "unshare", "--mount", "/bin/sh", "-c", 'mount --bind "$1" /etc && PATH="$2" exec "$2/sh" "$3"', "sh",
        str(etc), str(tools), str(tmp_path / "post.sh"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    out, err = await asyncio.wait_for(shell.communicate(), 120)
    assert shell.returncode == 0, err.decode()
    return out.decode(), etc


async def env_server(make_config: Callable[..., Config], start_server: Callable[..., Any]) -> Any:
    from tests.support.realhosts import free_port

    port = free_port()
    config = make_config(cobbler_url=cb.XMLRPC_URL, cobbler_password=cb.PASSWORD, listen_port=str(port),
                         public_url=f"http://127.0.0.1:{port}")
    srv = await start_server(config)
    srv.alice = pv.add_user(srv.ctx, "alice")
    return srv


def test_the_shipped_scripts_are_found() -> None:
    found = {(s.kind, s.name) for s in find_scripts(DEFAULT_DIR)}
    assert {("snippet", "fogmachine_update"), ("snippet", "fogmachine_user"), ("snippet", "fogmachine_env"),
            ("template", "fogmachine.ks"), ("template", "fogmachine-minimal.ks"),
            ("template", "fogmachine-env.ks")} <= found


def test_install_snippets_needs_cobbler_configured(tmp_path: Path) -> None:
    done = fogmachine("cobbler", "install-snippets", env={}, cwd=tmp_path)
    assert done.returncode == 1 and "cobbler_url is not set" in done.stderr


def test_install_snippets_from_an_empty_folder_says_so(tmp_path: Path) -> None:
    done = fogmachine("cobbler", "install-snippets", "--from", str(tmp_path),
                      env={"FOGMACHINE_COBBLER_URL": "http://127.0.0.1:9/"}, cwd=tmp_path)
    assert done.returncode == 1 and "no kickstarts/ or snippets/" in done.stderr


def test_install_snippets_against_an_unreachable_cobbler_is_one_line(tmp_path: Path) -> None:
    done = fogmachine("cobbler", "install-snippets", env={"FOGMACHINE_COBBLER_URL": "http://127.0.0.1:9/"},
                      cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "fogmachine: error: Cobbler at http://127.0.0.1:9/ is unreachable: " \
                                  "Connection refused"


@pytest.mark.cobbler
def test_install_snippets_writes_them_into_cobbler(tmp_path: Path, cobbler_server: None) -> None:
    scripts = tmp_path / "ks"
    (scripts / "snippets").mkdir(parents=True)
    (scripts / "kickstarts").mkdir()
    (scripts / "snippets" / "fmtest_snippet").write_text("echo from-a-test-snippet\n")
    (scripts / "kickstarts" / "fmtest.ks").write_text("%post\n$SNIPPET('fmtest_snippet')\n%end\n")
    env = {"FOGMACHINE_COBBLER_URL": cb.XMLRPC_URL, "FOGMACHINE_COBBLER_PASSWORD": cb.PASSWORD}
    done = fogmachine("cobbler", "install-snippets", "--from", str(scripts), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "installed snippet fmtest_snippet" in done.stdout and "installed template fmtest.ks" in done.stdout
    server, token = cb.proxy()
    try:
        assert server.read_autoinstall_snippet("fmtest_snippet", token) == "echo from-a-test-snippet\n"
        assert "$SNIPPET('fmtest_snippet')" in server.read_autoinstall_template("fmtest.ks", token)
    finally:
        server.remove_autoinstall_snippet("fmtest_snippet", token)
        server.remove_autoinstall_template("fmtest.ks", token)
    wrong = fogmachine("cobbler", "install-snippets", env={**env, "FOGMACHINE_COBBLER_PASSWORD": "wrong"},
                       cwd=tmp_path)
    assert wrong.returncode == 1 and "cobbler_password" in wrong.stderr


@pytest.mark.cobbler
async def test_the_rendered_post_section_phones_home_with_curl(make_config: Callable[..., Config],
                                                               start_server: Callable[..., Any],
                                                               tmp_path: Path, cobbler_server: None) -> None:
    """The %post Cobbler renders for a checked-out system, run by /bin/sh here (curl, not the guest's wget)."""
    from tests.support.realhosts import free_port

    port = free_port()
    config = make_config(cobbler_url=cb.XMLRPC_URL, cobbler_password=cb.PASSWORD, listen_port=str(port),
                         public_url=f"http://127.0.0.1:{port}")
    srv = await start_server(config)
    alice = pv.add_user(srv.ctx, "alice")
    name = "fmtest-curl"
    cb.remove_systems(name)
    try:
        guest = await co.checkout(srv.ctx, alice, co.CheckoutRequest(name, cb.PROFILE, 1, "curl branch"))
        await pv.settle(srv.ctx)
        assert pv.guest(srv.ctx, guest.id).step == Step.INSTALLING
        rendered = await srv.ctx.cobbler.generate_autoinstall(name)
        post = rendered[rendered.index("%post") + len("%post"):rendered.rindex("%end")]
        tools = busybox_path(tmp_path / "bin", "curl")
        shell = await asyncio.create_subprocess_exec(str(tools / "sh"), "-c", post, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE, env={"PATH": str(tools)})
        out, err = await asyncio.wait_for(shell.communicate(), 120)
        assert shell.returncode == 0, err.decode()
        assert "fogmachine: owner alice; no account made" in out.decode(), out.decode()
        assert "fogmachine: phoned home" in out.decode()
        row = pv.guest(srv.ctx, guest.id)
        assert row.step == Step.READY and row.ip and row.hostname
    finally:
        cb.remove_systems(name)


@pytest.mark.cobbler
async def test_rendered_for_a_profile_alone_the_snippets_are_empty(cobbler_server: None) -> None:
    server, _ = cb.proxy()
    rendered = await asyncio.get_running_loop().run_in_executor(None, server.generate_autoinstall, cb.PROFILE, "")
    post = rendered[rendered.index("%post") + len("%post"):rendered.rindex("%end")]
    assert post.strip() == ""


@pytest.mark.cobbler
@pytest.mark.parametrize("fetcher", ["curl", "wget"])
async def test_the_env_kickstart_writes_a_tiers_variables_both_ways(fetcher: str, make_config: Callable[..., Config],
                                                                    start_server: Callable[..., Any], tmp_path: Path,
                                                                    cobbler_server: None) -> None:
    """fogmachine-env.ks as Cobbler renders it for an environment's guest, its %post run by a shell here (with
    curl, or busybox wget as the tiny guest has): /etc/fogmachine/env gives back every value exactly when
    sourced, env.json is what /guest/MAC/env answers, and the console says both."""
    from fogmachine.services.environments import templates
    from fogmachine.services.environments.claim import EnvironmentRequest, checkout_environment

    srv = await env_server(make_config, start_server)
    admin = pv.add_user(srv.ctx, "root", admin=True)
    env_name = f"fmtest-envks-{fetcher}"
    cb.remove_systems(env_name)
    variables = {"db_host": "10.0.2.15", "awkward": AWKWARD, "none": "", "owner_env": "{{ owner.username }}"}
    await templates.save(srv.ctx, admin, "app-alone", "", {"tiers": [
        {"name": "app", "target": cb.ENV_PROFILE, "variables": variables}]})
    try:
        env = await checkout_environment(srv.ctx, srv.alice, EnvironmentRequest("app-alone", env_name, 1, "snippet"))
        guest_id = env.guests[0].id
        row = await pv.wait_for(lambda: pv.guest(srv.ctx, guest_id), lambda g: g.step not in (
            Step.WAITING, Step.REGISTERING, Step.DEFINING, Step.BOOTING))
        assert row.step == Step.INSTALLING, (row.step, row.step_reason)
        rendered = await srv.ctx.cobbler.generate_autoinstall(row.name)
        assert "# fogmachine_var_db_host: 10.0.2.15" in rendered  # Cobbler's own rendering of one variable
        out, etc = await run_post(rendered, tmp_path, *(["curl"] if fetcher == "curl" else []))
        want = {"db_host": "10.0.2.15", "awkward": AWKWARD_RENDERED, "none": "", "owner_env": "alice"}
        for name, value in want.items():
            assert f"fogmachine: env {name}={value}\n" in out, out
        names = sorted(want)
        read_back = subprocess.run([str(tmp_path / "bin" / "sh"), "-c", READ_BACK, "sh",
                                    str(etc / "fogmachine" / "env"), *names], capture_output=True, text=True,
                                   check=True)
        assert dict(zip(names, read_back.stdout.split("\0")[:-1], strict=True)) == want
        served = {"environment": env_name, "tier": "app", "index": 0, "variables": want}
        assert json.loads((etc / "fogmachine" / "env.json").read_text()) == served
        echoed = [line for line in out.splitlines() if line.startswith("fogmachine: env.json ")]
        assert [json.loads(line.removeprefix("fogmachine: env.json ")) for line in echoed] == [served]
        # The sample's own use of it, then the phone-home as always.
        assert "fogmachine: this guest's database is at 10.0.2.15" in out
        assert (etc / "sysconfig" / "fogmachine-app").read_text() == "DB_HOST=10.0.2.15\n"
        assert "fogmachine: phoned home" in out
        assert pv.guest(srv.ctx, guest_id).step == Step.READY
    finally:
        cb.remove_systems(env_name)


@pytest.mark.cobbler
async def test_the_env_snippet_of_a_guest_of_no_environment_writes_empty_files(
        make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
        cobbler_server: None) -> None:
    """One kickstart serves every guest: a guest checked out alone gets an empty env file and no variables."""
    srv = await env_server(make_config, start_server)
    name = "fmtest-envks-alone"
    cb.remove_systems(name)
    try:
        guest = await co.checkout(srv.ctx, srv.alice, co.CheckoutRequest(name, cb.ENV_PROFILE, 1, "no environment"))
        await pv.settle(srv.ctx)
        assert pv.guest(srv.ctx, guest.id).step == Step.INSTALLING
        out, etc = await run_post(await srv.ctx.cobbler.generate_autoinstall(name), tmp_path)
        assert (etc / "fogmachine" / "env").read_text() == ""
        assert json.loads((etc / "fogmachine" / "env.json").read_text()) == {
            "environment": "", "tier": "", "index": None, "variables": {}}
        assert "fogmachine: env " not in out and "database is at" not in out
        assert "fogmachine: phoned home" in out
    finally:
        cb.remove_systems(name)
