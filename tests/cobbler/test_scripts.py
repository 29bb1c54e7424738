"""ks_scripts: installed through Cobbler's API by the CLI, rendered by Cobbler, run by a shell."""

from __future__ import annotations

import asyncio
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


def test_the_shipped_scripts_are_found() -> None:
    found = {(s.kind, s.name) for s in find_scripts(DEFAULT_DIR)}
    assert {("snippet", "fogmachine_update"), ("snippet", "fogmachine_user"), ("template", "fogmachine.ks"),
            ("template", "fogmachine-minimal.ks")} <= found


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
        # A PATH of busybox applets plus curl: like an installer's, and without useradd, so running the
        # snippets here can never add an account to this machine.
        tools = tmp_path / "bin"
        tools.mkdir()
        for applet in ("sh", "ip", "awk", "sed", "hostname", "sleep", "timeout", "wget", "cut", "printf", "id",
                       "cat", "mkdir", "chmod", "chown", "getent"):
            (tools / applet).symlink_to("/usr/bin/busybox")
        (tools / "curl").symlink_to(shutil.which("curl") or "/usr/bin/curl")
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
