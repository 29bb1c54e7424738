"""ids are never reused: AUTOINCREMENT on SQLite

SQLite gives a new row the largest id + 1, so deleting the newest row hands its
id to the next one: the audit log of "guest 22" then names several guests, and a
domain's mark (the guest id) could point at a newer guest. AUTOINCREMENT makes
SQLite remember the largest id ever used. SQLite cannot add it to an existing
table, so each table with an integer id is rebuilt (batch mode copies the rows,
keeping their ids, and the counter starts at the largest id present).
MariaDB's and PostgreSQL's counters and sequences never go back: nothing to do.

``fogmachine.db.migrate.upgrade`` turns SQLite's foreign keys off around the
migrations: dropping the old ``guests`` would otherwise cascade to
``guest_notices``, and dropping ``users`` would be refused.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Parents before children, so each rebuilt child's foreign keys are declared against the rebuilt parent.
TABLES = ('users', 'hosts', 'guests', 'api_tokens', 'audit_events', 'guest_notices', 'sessions')


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always',
                                  table_kwargs={'sqlite_autoincrement': autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
