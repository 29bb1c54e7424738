"""The migrations are the one source of schema: they must produce exactly the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from fogmachine.db import migrate
from fogmachine.db.models import Base
from fogmachine.errors import SchemaOutOfDate


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
