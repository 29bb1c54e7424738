"""The ``fogmachine`` command, run as an operator runs it: a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args, *, cwd, input_=None, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOGMACHINE_")}
    full_env["PYTHONPATH"] = str(ROOT)  # this checkout's package, not whatever the venv's editable install points at
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "fogmachine.cli", *args], cwd=cwd, input=input_,
                          capture_output=True, text=True, env=full_env, timeout=60)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "virthosts.conf").write_text("demo, test:///default, test\n")
    (tmp_path / "fogmachine.conf").write_text("[fogmachine]\ndata_dir = data\n")
    return tmp_path


@pytest.mark.parametrize("sub", [[], ["serve"], ["db"], ["db", "upgrade"], ["db", "current"], ["user", "add"],
                                 ["hosts", "sync"], ["hosts", "list"], ["config", "check"],
                                 ["env-template", "import"], ["env-template", "export"]])
def test_help_for_each_command(sub, workdir):
    r = run([*sub, "--help"], cwd=workdir)
    assert r.returncode == 0
    assert "usage: fogmachine" in r.stdout


def test_db_upgrade_current_hosts_and_users(workdir):
    r = run(["db", "current"], cwd=workdir)
    assert r.returncode == 1 and "empty" in r.stdout
    r = run(["db", "upgrade"], cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run(["db", "current"], cwd=workdir)
    assert r.returncode == 0 and "up to date" in r.stdout
    r = run(["hosts", "sync"], cwd=workdir)
    assert r.returncode == 0 and "added: demo" in r.stdout
    r = run(["hosts", "list"], cwd=workdir)
    assert "demo" in r.stdout and "test:///default" in r.stdout
    r = run(["user", "add", "root1", "--admin", "--password-stdin"], cwd=workdir, input_="ochre lantern quietly\n")
    assert r.returncode == 0 and "admin root1 created" in r.stdout
    r = run(["user", "add", "root1"], cwd=workdir, input_="ochre lantern quietly\n")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run(["user", "add", "bob"], cwd=workdir, input_="short\n")
    assert r.returncode == 1 and "at least 8 characters" in r.stderr
    for weak, why in (("password", "too easy to guess"), ("12345678", "too easy to guess"),
                      ("B0b-2026!", "must not be your username")):
        r = run(["user", "add", "bob"], cwd=workdir, input_=weak + "\n")
        assert r.returncode == 1 and why in r.stderr, (weak, r.stderr)
    r = run(["user", "add", "Bob"], cwd=workdir, input_="ochre lantern quietly\n")
    assert r.returncode == 0 and "user bob created" in r.stdout
    r = run(["config", "check"], cwd=workdir)
    assert r.returncode == 0 and "configuration OK" in r.stdout and "catalog source: local" in r.stdout


@pytest.mark.parametrize(
    ("conf", "virthosts", "env", "expected"),
    [
        ("colour = blue\n", None, {}, "unknown key 'colour'"),
        ("listen_port = 70000\n", None, {}, "bad value '70000' for listen_port"),
        ("", None, {"FOGMACHINE_LISTEN_PORT": "x"}, "FOGMACHINE_LISTEN_PORT: bad value 'x'"),
        ("database_connection = mysql+mysqldb://root@127.0.0.1:1/test\n", None, {}, "database mysql+mysqldb://"),
        ("", "demo test:///default test\n", {}, "line 1: expected 'name, libvirt-uri, virt-type'"),
        ("catalog_source = ldap\n", None, {}, "bad value 'ldap' for catalog_source: must be one of auto, cobbler"),
        ("catalog_source = cobbler\n", None, {}, "catalog_source = cobbler needs cobbler_url"),
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["serve"]])
def test_bad_configuration_is_one_clear_line(workdir, conf, virthosts, env, expected, command):
    port = "" if "listen_port" in conf else "listen_port = 0\n"
    (workdir / "fogmachine.conf").write_text("[fogmachine]\ndata_dir = data\n" + port + conf)
    if virthosts:
        (workdir / "virthosts.conf").write_text(virthosts)
    r = run(command, cwd=workdir, env=env)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("fogmachine: error:")]
    assert len(errors) == 1, r.stderr
    assert expected in errors[0]


def test_serve_refuses_old_schema(workdir, monkeypatch):
    assert run(["db", "upgrade"], cwd=workdir).returncode == 0
    import sqlite3

    con = sqlite3.connect(workdir / "data" / "fogmachine.db")
    con.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    con.commit()
    con.close()
    r = run(["serve"], cwd=workdir)
    assert r.returncode == 1
    assert "fogmachine: error: the database is at revision zzzz" in r.stderr


def test_env_template_import_and_export_round_trip_and_refusals_name_the_tier_and_variable(workdir):
    catalog = ROOT / "catalog.conf"
    (workdir / "fogmachine.conf").write_text(f"[fogmachine]\ndata_dir = data\nlocal_catalog = {catalog}\n")
    sample = ROOT / "samples" / "environments" / "db-web.yaml"
    r = run(["env-template", "import", str(sample)], cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "environment template db-web saved (shared): 2 tier(s), 3 guest(s)" in r.stdout
    r = run(["env-template", "export", "db-web"], cwd=workdir)
    assert r.returncode == 0, r.stderr
    exported = r.stdout
    assert exported.startswith("name: db-web\n") and "db_host: '{{ db.ip }}'" in exported
    # The export imports back as it is, also under another name; importing twice replaces.
    (workdir / "copy.yaml").write_text(exported)
    for _ in range(2):
        r = run(["env-template", "import", "copy.yaml", "--name", "db-web-2"], cwd=workdir)
        assert r.returncode == 0, r.stderr
    r = run(["env-template", "export", "db-web-2"], cwd=workdir)
    assert r.stdout == exported.replace("name: db-web\n", "name: db-web-2\n", 1)
    bad = exported.replace("{{ db.ip }}", "{{ web.ip }}", 1)
    (workdir / "bad.yaml").write_text(bad)
    r = run(["env-template", "import", "bad.yaml"], cwd=workdir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "tiers[1] (web), variable db_host: it names its own tier web" in r.stderr
    (workdir / "nameless.yaml").write_text("tiers: []\n")
    r = run(["env-template", "import", "nameless.yaml"], cwd=workdir)
    assert r.returncode == 1 and "has no name" in r.stderr
    r = run(["env-template", "export", "nosuch"], cwd=workdir)
    assert r.returncode == 1 and "no environment template named nosuch" in r.stderr
