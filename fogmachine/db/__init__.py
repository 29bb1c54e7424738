"""State: the ORM models, sessions and the Alembic migrations."""
