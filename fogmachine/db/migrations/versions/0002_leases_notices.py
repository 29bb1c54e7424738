"""task leases, guest notices, provisioning worker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_leases',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_task_leases'))
    )
    op.create_table('guest_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('guest_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=False),
    sa.Column('delivered', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_guest_notices_guest_id_guests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guest_notices')),
    sa.UniqueConstraint('guest_id', 'kind', name='uq_guest_notices_guest_id_kind')
    )
    with op.batch_alter_table('guest_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_guest_notices_guest_id'), ['guest_id'], unique=False)

    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker', sa.String(length=64), nullable=False, server_default=''))

def downgrade() -> None:
    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.drop_column('worker')

    with op.batch_alter_table('guest_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_guest_notices_guest_id'))

    op.drop_table('guest_notices')
    op.drop_table('task_leases')
