"""Schema versions: create, upgrade and check the database with Alembic.

The server never calls ``create_all``: an empty database is brought to the
newest revision by the migrations themselves, so there is one source of schema.
A database at an older revision makes the server refuse to start and name the
command that upgrades it, because upgrading a shared production database is
the operator's decision, not a side effect of starting one process.

Alembic is imported only when a migration runs (or a revision this code does
not have must be looked up): importing it brings Mako, Pygments and
SQLAlchemy's MySQL, PostgreSQL and MSSQL dialects, about 10 MB of a server's
resident memory (bench/virt_memory.py), for a check that is one SELECT. So
the check reads the version table itself and compares it with ``HEAD``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from fogmachine.errors import FogmachineError, SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision. A new migration changes it; tests/db/test_migrations.py checks
# that it is the head Alembic finds in MIGRATIONS_DIR.
HEAD = "0009"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    return HEAD


def current_revision(engine: Engine) -> str | None:
    """The revision in Alembic's version table, as ``MigrationContext.get_current_revision`` reads it:
    None when the table is missing or empty."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    if len(rows) > 1:
        raise SchemaOutOfDate(f"the database's {VERSION_TABLE} table names {len(rows)} revisions "
                              f"({', '.join(sorted(rows))}); it must name one")
    return rows[0] if rows else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` in one transaction.

    On SQLite, migrations rebuild tables (copy, drop the old, rename): with foreign keys enforced,
    dropping a parent table would cascade to its children's rows (``guest_notices``) or be refused.
    SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, so it is turned off before the
    transaction begins, the references are checked before the commit, and the setting is put back.
    """
    from alembic import command

    cfg = alembic_config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = conn.connection.dbapi_connection if sqlite else None
        enforced = bool(raw.execute("PRAGMA foreign_keys").fetchone()[0]) if sqlite else False
        if enforced:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise FogmachineError(f"the upgrade would break {len(broken)} reference(s) between "
                                              f"tables (first: {tuple(broken[0])}); nothing was changed")
        finally:
            if enforced:
                raw.execute("PRAGMA foreign_keys=ON")


def ensure_schema(engine: Engine) -> str:
    """Create an empty database at head; refuse an old one. Returns the revision."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return head
    if current is None:
        tables = set(inspect(engine).get_table_names())
        if tables - {"alembic_version"}:
            raise SchemaOutOfDate(
                "the database has tables but no Fogmachine schema version; "
                "point database_connection at an empty database"
            )
        upgrade(engine)
        return head
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    try:
        known = script.get_revision(current) is not None
    except Exception:  # alembic raises CommandError/ResolutionError for an unknown id
        known = False
    if not known:
        raise SchemaOutOfDate(
            f"the database is at revision {current}, which this Fogmachine does not know "
            "(it is newer than this code?); upgrade Fogmachine"
        )
    raise SchemaOutOfDate(
        f"the database is at revision {current}, this Fogmachine needs {head}; "
        "run: fogmachine db upgrade"
    )
