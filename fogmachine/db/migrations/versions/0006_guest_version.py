"""guests.version: a row version, so a write made from an earlier read can be refused

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Every ORM write to a guest bumps it and is made only where it is still the
version read (SQLAlchemy's version_id_col); a host resync writes each row
``WHERE version = :read`` and skips the row when it moved on. Existing rows
start at 1.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.drop_column('version')
