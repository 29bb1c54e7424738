"""The migrations are the one source of schema: they must produce exactly the models."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from fogmachine.db import migrate
from fogmachine.db.models import Base
from fogmachine.errors import SchemaOutOfDate

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_models(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], f"migrations and models differ on {engine.dialect.name}: {diff}"


def test_empty_database_is_created_at_head(database_url):
    engine = create_engine(database_url)
    assert migrate.ensure_schema(engine) == migrate.head_revision()
    assert {"users", "hosts", "guests", "api_tokens", "audit_events"} <= set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_head_is_alembics_head():
    """``migrate.HEAD`` stands in for Alembic's own reading of the migrations at every start: a new
    migration that leaves it behind would make every server refuse its freshly upgraded database."""
    assert migrate.head_revision() == ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


def test_current_revision_reads_as_alembic_does(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/rev.db")
    for step in (None, "0001", "head"):
        if step is not None:
            migrate.upgrade(engine, step)
        with engine.connect() as conn:
            alembic_says = MigrationContext.configure(conn).get_current_revision()
        assert migrate.current_revision(engine) == alembic_says
    assert alembic_says == migrate.HEAD
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version VALUES ('0001')"))
    with pytest.raises(SchemaOutOfDate, match="names 2 revisions"):
        migrate.current_revision(engine)
    engine.dispose()


def test_a_server_start_imports_no_alembic(tmp_path):
    """The schema check at every start is a SELECT; Alembic (~10 MB resident) comes in only to migrate."""
    engine = create_engine(f"sqlite:///{tmp_path}/lazy.db")
    migrate.upgrade(engine)
    engine.dispose()
    code = ("import sys; from sqlalchemy import create_engine; from fogmachine.db import migrate; "
            f"print(migrate.ensure_schema(create_engine('sqlite:///{tmp_path}/lazy.db')), "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split(None, 1)
    assert out == [migrate.HEAD, "[]\n"]


def test_older_schema_refuses_and_names_the_command(tmp_path, monkeypatch):
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(engine)
    real_head = migrate.head_revision()
    monkeypatch.setattr(migrate, "head_revision", lambda: "9999")
    with pytest.raises(SchemaOutOfDate) as info:
        migrate.ensure_schema(engine)
    assert f"at revision {real_head}" in info.value.message
    assert "fogmachine db upgrade" in info.value.message
    engine.dispose()


def test_unknown_revision_and_foreign_tables_refused(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something (id INTEGER)"))
    with pytest.raises(SchemaOutOfDate, match="has tables but no Fogmachine schema"):
        migrate.ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('abcdef')"))
    with pytest.raises(SchemaOutOfDate, match="does not know"):
        migrate.ensure_schema(engine)
    engine.dispose()


def _rows(conn, table):
    return conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()


def test_sqlite_upgrade_keeps_rows_and_never_reuses_ids_again(tmp_path):
    """Before 0007, SQLite gave a new row the largest id + 1: deleting the newest guest handed its id (and
    its audit history) to the next guest. The upgrade rebuilds the tables with AUTOINCREMENT through
    Fogmachine's own engine (foreign keys enforced, as `fogmachine db upgrade` runs it), keeping every row."""
    from fogmachine.db.session import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    migrate.upgrade(engine, "0003")
    now = "2026-11-01 10:00:00"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, email, password_hash, is_admin, is_active, ssh_key, "
                          "description, notify_expiry, notify_ready, created_at) VALUES "
                          f"(1, 'ann', '', '', 0, 1, '', '', 1, 1, '{now}'), (2, 'bob', '', '', 0, 1, '', '', 1, 1, "
                          f"'{now}')"))
        conn.execute(text("INSERT INTO hosts (id, name, uri, virt_type, enabled, in_config, state, state_reason, "
                          "total_memory_mb, free_memory_mb, cpus, committed_memory_mb, committed_vcpus, guest_count, "
                          f"hypervisor_type, hypervisor_version, updated_at) VALUES (1, 'h1', 'test:///default', "
                          f"'test', 1, 1, 'up', '', 0, 0, 0, 0, 0, 0, '', '', '{now}')"))
        for gid, name in ((1, "web1"), (2, "web2")):
            conn.execute(text(
                "INSERT INTO guests (id, name, live_name, domain_name, managed, owner_id, host_id, target, "
                "target_kind, ram_mb, vcpus, disk_gb, purpose, state, step, step_reason, ip, hostname, "
                "cobbler_system, volume_path, phonehome_token_hash, created_at, updated_at, worker) VALUES "
                f"({gid}, '{name}', '{name}', '{name}', 1, 1, 1, 'small', 'local', 256, 1, 0, '', 'running', "
                f"'ready', '', '', '', '', '', '', '{now}', '{now}', '')"))
        conn.execute(text(f"INSERT INTO guest_notices (id, guest_id, kind, sent_at, delivered) "
                          f"VALUES (1, 2, 'ready', '{now}', 1)"))
        conn.execute(text("INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, scope, created_at, "
                          f"revoked) VALUES (1, 2, 'ci', 'abc', 'fm_x', 'read', '{now}', 0)"))
        conn.execute(text("INSERT INTO audit_events (id, at, actor_id, actor_name, action, object_type, object_id, "
                          "object_name, result, message, remote_addr) VALUES "
                          f"(1, '{now}', 1, 'ann', 'guest.checkout', 'guest', '2', 'web2', 'ok', '', '')"))
    migrate.upgrade(engine, "0006")  # the revisions between add columns; 0007 is the one under test
    tables = ("users", "hosts", "guests", "guest_notices", "api_tokens", "audit_events")
    with engine.connect() as conn:
        before = {table: _rows(conn, table) for table in tables}

    migrate.upgrade(engine)

    with engine.connect() as conn:
        after = {table: _rows(conn, table) for table in tables}
        # every row, id and value kept (later revisions may append columns: compare the ones there were)
        assert {table: [tuple(row)[:len(before[table][0])] for row in rows] if rows else rows
                for table, rows in after.items()} == before
        for table in tables:
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type='table' AND name=:t"), {"t": table})
            assert "AUTOINCREMENT" in sql.scalar_one(), table
    with engine.begin() as conn:  # the newest guest goes (its notice with it), then a new one comes
        conn.execute(text("DELETE FROM guests WHERE id = 2"))
        assert _rows(conn, "guest_notices") == []  # the cascade still works: foreign keys are back on
        conn.execute(text(
            "INSERT INTO guests (name, live_name, domain_name, managed, target, target_kind, ram_mb, vcpus, "
            "disk_gb, purpose, state, step, step_reason, ip, hostname, cobbler_system, volume_path, "
            f"phonehome_token_hash, created_at, updated_at, worker) VALUES ('web3', 'web3', 'web3', 1, 'small', "
            f"'local', 256, 1, 0, '', 'undefined', 'placing', '', '', '', '', '', '', '{now}', '{now}', '')"))
        assert conn.execute(text("SELECT id FROM guests WHERE name = 'web3'")).scalar_one() == 3  # not 2
    engine.dispose()
    db_engine = create_engine(f"sqlite:///{tmp_path}/old.db")  # the models' view: nothing to migrate
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    db_engine.dispose()
    assert diff == []


def test_guest_steps_start_with_the_step_each_guest_is_at(database_url):
    """0008 adds the step history; guests older than it get one row, for the step they are at, dated by
    their last change (a retired one by its retirement), and an unmanaged row none."""
    engine = create_engine(database_url)
    migrate.upgrade(engine, "0007")
    when, retired = "2026-11-01 10:00:00", "2026-11-02 11:00:00"
    with engine.begin() as conn:
        for gid, name, managed, step, reason, retired_at in (
                (1, "web1", True, "ready", "", None), (2, "old", True, "retired", "deleted by ann", retired),
                (3, "legacy", False, "ready", "", None)):
            conn.execute(text(
                "INSERT INTO guests (id, name, managed, target, target_kind, ram_mb, vcpus, disk_gb, purpose, state, "
                "step, step_reason, ip, hostname, cobbler_system, volume_path, phonehome_token_hash, created_at, "
                "updated_at, retired_at, worker) VALUES (:id, :name, :managed, 'small', 'local', 256, 1, 0, '', "
                "'running', :step, :reason, '', '', '', '', '', :at, :at, :retired_at, '')"),
                {"id": gid, "name": name, "managed": managed, "step": step, "reason": reason, "at": when,
                 "retired_at": retired_at})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT guest_id, step, at, reason FROM guest_steps ORDER BY guest_id")).all()
    engine.dispose()
    assert [(g, s, str(at), r) for g, s, at, r in rows] == [(1, "ready", when, ""),
                                                             (2, "retired", retired, "deleted by ann")]
