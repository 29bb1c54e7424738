"""Real databases for the tests: SQLite always, MariaDB and PostgreSQL on 127.0.0.1.

Each test that asks gets a database of its own, created and dropped around it,
so tests never see each other's rows. When a server is unreachable its tests
fail with the reason (tests/support/realparts.py: skipped only under FM_ALLOW_MISSING).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from tests.support import realparts

MARIADB_ADMIN = "mysql+mysqldb://root@127.0.0.1:3306/test"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "mariadb", "postgresql")


def unreachable(backend: str) -> str | None:
    """Why a server cannot be used, or None when it can."""
    return realparts.check(backend, lambda: _probe(backend))


def _probe(backend: str) -> str | None:
    admin = {"mariadb": MARIADB_ADMIN, "postgresql": POSTGRES_ADMIN}[backend]
    try:
        engine = create_engine(admin, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: the part is missing, for this reason
        return f"{backend} at {admin.split('@')[1]} unreachable: {str(exc).splitlines()[0][:200]}"
    return None


@contextmanager
def fresh_database(backend: str, tmp_path_factory: pytest.TempPathFactory | None = None,
                   tmp_dir: str | None = None) -> Iterator[str]:
    """Yield the URL of a new, empty database on ``backend``; drop it afterwards."""
    realparts.use(backend)
    if backend == "sqlite":
        import tempfile

        directory = tmp_dir or tempfile.mkdtemp(prefix="fm-sqlite-")
        yield f"sqlite:///{directory}/fogmachine.db"
        return
    reason = unreachable(backend)
    if reason:
        realparts.missing(backend, reason)
    name = f"fm_{uuid.uuid4().hex[:12]}"
    admin_url = MARIADB_ADMIN if backend == "mariadb" else POSTGRES_ADMIN
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        if backend == "mariadb":
            conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        else:
            conn.execute(text(f"CREATE DATABASE {name}"))
    url: URL = admin.url.set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
