"""Faults survived, with real servers: Fogmachine processes killed and paired, Cobbler stopped,
MariaDB restarted. Each test starts Fogmachine as separate processes (tests/support/serverproc.py).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt
import pytest
from sqlalchemy import func, select

from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent, Guest, Host, Step, TaskLease, User, utcnow
from fogmachine.db.session import Database
from fogmachine.services import tokens
from fogmachine.services.actor import Actor
from tests.support import cobbler as cobbler_support
from tests.support import databases, serverproc, testhosts
from tests.support.smtp import smtp_server

ROOT = Path(__file__).resolve().parent.parent.parent
REAL_URI = "qemu+tcp://127.0.0.1/system"


def add_user_and_token(db: Database, username: str = "ann", email: str = "") -> str:
    def add(session):
        user = User(username=username, email=email or f"{username}@example.org")
        session.add(user)
        session.flush()
        _row, token = tokens.create_token(session, Actor(user.id, username), tokens.NewToken("faults", "write"))
        return token

    return db.run_sync(add)


def base_settings(tmp_path: Path, hosts: dict[str, str], **extra: str) -> dict[str, str]:
    virthosts = testhosts.write_virthosts(tmp_path / "virthosts.conf", hosts,
                                          virt_type="qemu" if any("qemu" in u for u in hosts.values()) else "test")
    settings = {"data_dir": str(tmp_path / "data"), "virthosts": str(virthosts),
                "local_catalog": str(ROOT / "catalog.conf"), "log_level": "info"}
    settings.update(extra)
    return settings


async def in_thread(fn, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


def cobbler_sh(command: str) -> None:
    subprocess.run(["bash", str(ROOT / "tests/infra/cobbler_server.sh"), command], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


# -- Cobbler stopped ------------------------------------------------------------------------------

@pytest.mark.cobbler
@pytest.mark.disruptive
def test_cobbler_stopped_checkouts_fail_fast_catalog_stale_then_recovers(tmp_path, cobbler_server):
    host = testhosts.write_host(tmp_path / "hosts", "h1", cpus=8, memory_mb=16384)
    settings = base_settings(tmp_path, {"h1": host}, cobbler_url=cobbler_support.XMLRPC_URL,
                             cobbler_user="cobbler", cobbler_password="cobbler", catalog_ttl="1",
                             cobbler_timeout="3")
    db_url = f"sqlite:///{tmp_path}/data/fogmachine.db"
    server = serverproc.spawn(tmp_path, "a", settings)
    db = Database(db_url, threads=2)
    try:
        token = add_user_and_token(db)
        catalog = server.request("/api/v1/catalog", token=token)
        assert catalog.code == 200 and catalog.body["stale"] is False
        assert cobbler_support.PROFILE in [e["name"] for e in catalog.body["entries"]]
        cobbler_sh("stop")
        try:
            time.sleep(1.2)  # past catalog_ttl: the next catalog read goes to Cobbler and fails
            order = {"name": "cobdown", "target": cobbler_support.PROFILE, "days": 1, "purpose": "fault test"}
            refused = server.request("/api/v1/guests", method="POST", body=order, token=token)
            print(f"\ncheckout with Cobbler stopped answered {refused.code} in {refused.seconds:.2f} s")
            assert refused.code == 502, refused.body
            assert cobbler_support.XMLRPC_URL.rstrip("/") in refused.body["error"]["message"]
            stale = server.request("/api/v1/catalog", token=token)
            assert stale.code == 200 and stale.body["stale"] is True
            assert cobbler_support.PROFILE in [e["name"] for e in stale.body["entries"]]
            live = db.run_sync(lambda s: s.scalar(select(func.count()).select_from(Guest).where(
                Guest.managed.is_(True), Guest.step != Step.FAILED)))
            assert live == 0  # nothing left behind
        finally:
            cobbler_sh("start")
        # Cobbler is back: the same server checks out again, no restart
        order = {"name": "cobback", "target": cobbler_support.PROFILE, "days": 1, "purpose": "fault test"}
        deadline = time.monotonic() + 30
        accepted = server.request("/api/v1/guests", method="POST", body=order, token=token)
        while accepted.code == 502 and time.monotonic() < deadline:  # the client retries its login
            time.sleep(0.5)
            accepted = server.request("/api/v1/guests", method="POST", body=order, token=token)
        assert accepted.code == 202, accepted.body
        gid = accepted.body["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            step = server.request(f"/api/v1/guests/{gid}", token=token).body["step"]
            if step not in ("placing", "registering", "defining", "booting"):
                break
            time.sleep(0.2)
        assert step in ("installing", "ready"), step
        assert "cobback" in cobbler_support.system_names()
        assert server.request(f"/api/v1/guests/{gid}", method="DELETE", token=token).code in (200, 204)
        assert "cobback" not in cobbler_support.system_names()
    finally:
        server.stop()
        db.dispose()
        cobbler_support.remove_systems("cob")


# -- MariaDB restarted ----------------------------------------------------------------------------

def mariadb(action: str) -> None:
    if action == "stop":
        subprocess.run(["mariadb-admin", "-uroot", "-h127.0.0.1", "shutdown"], check=True, timeout=60)
        deadline = time.monotonic() + 60  # shutdown returns early; the server is gone when its process is
        while subprocess.run(["pgrep", "-x", "mariadbd"], capture_output=True).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError("MariaDB did not stop within 60 s")
            time.sleep(0.1)
    else:
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
                       check=True, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if subprocess.run(["mariadb-admin", "-uroot", "-h127.0.0.1", "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError("MariaDB did not come back within 60 s")


@pytest.mark.mysql
@pytest.mark.disruptive
def test_mariadb_restart_under_a_running_server(tmp_path):
    with databases.fresh_database("mariadb") as url:
        host = testhosts.write_host(tmp_path / "hosts", "h1")
        db = Database(url, threads=2)
        migrate.ensure_schema(db.engine)
        token = add_user_and_token(db)
        db.dispose()
        server = serverproc.spawn(tmp_path, "a", base_settings(tmp_path, {"h1": host}, database_connection=url,
                                                                 db_timeout="2"))
        try:
            assert server.request("/api/v1/guests", token=token).code == 200
            mariadb("stop")
            try:
                during = [server.request(path, token=token) for path in ("/healthz", "/api/v1/guests",
                                                                          "/api/v1/hosts")]
                for reply in during:
                    print(f"\nduring the outage: {reply.code} in {reply.seconds:.2f} s")
                assert [r.code for r in during] == [503, 503, 503], [r.body for r in during]
                assert during[1].body["error"]["code"] == "database_unavailable"
            finally:
                mariadb("start")
            deadline = time.monotonic() + 30
            reply = server.request("/api/v1/guests", token=token)
            while reply.code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
                reply = server.request("/api/v1/guests", token=token)
            assert reply.code == 200, reply.body
            assert server.request("/healthz").code == 200
            assert server.proc.poll() is None  # the same process, never restarted
        finally:
            server.stop()


# -- two processes on one MariaDB -----------------------------------------------------------------

@pytest.mark.mysql
def test_two_processes_retire_each_guest_and_send_each_warning_once(tmp_path):
    with databases.fresh_database("mariadb") as url, smtp_server() as (inbox, smtp_port):
        db = Database(url, threads=2)
        migrate.ensure_schema(db.engine)
        host = testhosts.write_host(tmp_path / "hosts", "h1", cpus=64, memory_mb=262144)
        add_user_and_token(db, email="ann@example.org")

        settings = base_settings(tmp_path, {"h1": host}, database_connection=url, expiry_interval="0.5",
                                 notice_interval="0.5", smtp_host="127.0.0.1", smtp_port=str(smtp_port),
                                 reconcile_interval="3600")
        servers = [serverproc.spawn(tmp_path / name, name, settings) for name in ("a", "b")]
        try:
            def add_guests(session):
                owner = session.scalar(select(User))
                host_row = session.scalar(select(Host))
                now = utcnow()
                for i in range(10):
                    # old: expired, still installing (no "ready" mail races its retirement); soon: ready, 30 min left
                    for prefix, delta, step in (("old", dt.timedelta(seconds=-5), Step.INSTALLING),
                                                ("soon", dt.timedelta(minutes=30), Step.READY)):
                        name = f"{prefix}{i}"
                        session.add(Guest(name=name, live_name=name, domain_name=name, owner=owner, host=host_row,
                                          step=step, ram_mb=128, vcpus=1, expires_at=now + delta))

            db.run_sync(add_guests)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                retired = db.run_sync(lambda s: s.scalar(select(func.count()).select_from(Guest).where(
                    Guest.step == Step.RETIRED)))
                if retired == 10 and len(inbox.messages) >= 30:
                    break
                time.sleep(0.3)
            # No sleep-and-hope for the duplicate that did not come: wait until both tasks have made two
            # full passes after the work was done (their leases are renewed before each pass), so a
            # duplicate either of them would have sent is in by then.
            def lease_ends(s: Any) -> dict[str, dt.datetime]:
                rows = s.execute(select(TaskLease.name, TaskLease.expires_at).where(
                    TaskLease.name.in_(["task:expiry", "task:notices"]))).all()
                return {name: expires for name, expires in rows}

            done = db.run_sync(lease_ends)
            assert sorted(done) == ["task:expiry", "task:notices"], done
            deadline = time.monotonic() + 60
            while not all(end >= done[name] + dt.timedelta(seconds=2) for name, end in db.run_sync(lease_ends).items()):
                assert time.monotonic() < deadline, "the expiry and notice tasks stopped running"
                time.sleep(0.2)
            events = db.run_sync(lambda s: s.scalars(select(AuditEvent.object_name).where(
                AuditEvent.action == "guest.retire", AuditEvent.result == "ok")).all())
            per_guest = collections.Counter(events)
            assert sorted(per_guest) == [f"old{i}" for i in range(10)]
            assert set(per_guest.values()) == {1}, per_guest
            subjects = collections.Counter(m["Subject"].split(" expires in ")[0] + (
                " expires" if " expires in " in m["Subject"] else "") for m in inbox.messages)
            expected = {f"[Fogmachine] soon{i} expires" for i in range(10)}
            expected |= {f"[Fogmachine] soon{i} is ready" for i in range(10)}
            expected |= {f"[Fogmachine] old{i} was retired" for i in range(10)}
            assert set(subjects) == expected
            assert set(subjects.values()) == {1}, [s for s, n in subjects.items() if n > 1]
            logs = [s.log.read_text() for s in servers]
            assert all("Traceback" not in text for text in logs)
        finally:
            for server in servers:
                server.stop()
            db.dispose()


# -- killed in the middle of a checkout -----------------------------------------------------------

@pytest.mark.realhosts
@pytest.mark.cobbler
def test_sigkill_mid_checkout_is_undone_after_restart(tmp_path, real_hosts, cobbler_server):
    settings = base_settings(tmp_path, {"q1": REAL_URI}, cobbler_url=cobbler_support.XMLRPC_URL,
                             cobbler_user="cobbler", cobbler_password="cobbler", reconcile_interval="1",
                             public_url="http://10.0.2.2:1")
    db = Database(f"sqlite:///{tmp_path}/data/fogmachine.db", threads=2)
    server = serverproc.spawn(tmp_path, "first", settings)
    caught = None
    try:
        token = add_user_and_token(db)
        for attempt in range(5):
            name = f"fmkill{attempt}"
            order = {"name": name, "target": cobbler_support.PROFILE, "days": 1, "purpose": "crash test"}
            reply = server.request("/api/v1/guests", method="POST", body=order, token=token)
            assert reply.code == 202, reply.body
            gid = reply.body["id"]
            step = None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                step = db.run_sync(lambda s, gid=gid: s.scalar(select(Guest.step).where(Guest.id == gid)))
                if step in ("defining", "booting", "installing", "ready", "failed"):
                    break
                time.sleep(0.002)
            if step in ("defining", "booting"):
                server.kill()
                caught = (gid, name, step)
                break
        assert caught is not None, "never caught a checkout between its Cobbler system and its start"
    finally:
        if caught is None:
            server.stop()
    gid, name, step = caught
    print(f"\nkilled the server while guest {name} was {step}")
    conn = libvirt.open(REAL_URI)
    try:
        assert name in cobbler_support.system_names()  # the crash left it behind
        restarted = serverproc.spawn(tmp_path, "second", settings)
        try:
            deadline = time.monotonic() + 60  # the dead process's heartbeat lease must expire first
            row = None
            while time.monotonic() < deadline:
                row = db.run_sync(lambda s: s.get(Guest, gid))
                if row.step == Step.FAILED:
                    break
                time.sleep(0.5)
            assert row is not None and row.step == Step.FAILED, row.step
            assert "interrupted" in row.step_reason
            assert name not in cobbler_support.system_names()
            assert name not in [d.name() for d in conn.listAllDomains()]
            # capacity released: a failed guest holds none (placement counts only live steps)
            from fogmachine.placement import RELEASED_STEPS

            assert row.step in RELEASED_STEPS
        finally:
            for g in db.run_sync(lambda s: s.scalars(select(Guest).where(Guest.name.like("fmkill%"),
                                                                         Guest.step != Step.FAILED)).all()):
                restarted.request(f"/api/v1/guests/{g.id}", method="DELETE", token=token)
            restarted.stop()
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith("fmkill"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        conn.close()
        cobbler_support.remove_systems("fmkill")
        db.dispose()
