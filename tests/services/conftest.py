"""Fixtures the service tests share."""

import pytest

from fogmachine.composition import build_context, release_context
from fogmachine.db import migrate
from fogmachine.db.session import Database


@pytest.fixture
def make_ctx(make_config, database_url):
    """Contexts over a fresh database on each backend, with no hosts: the services' rules alone."""
    made = []

    def make(**settings):
        config = make_config(database_connection=database_url, **settings)
        db = Database(config.database_url, threads=2)
        migrate.ensure_schema(db.engine)
        ctx = build_context(config, db)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        release_context(ctx)
        ctx.db.dispose()
