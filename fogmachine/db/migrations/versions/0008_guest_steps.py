"""guest_steps: when each guest entered each provisioning step

``guests.step`` says where a guest is now; the guest page shows its steps with
their times, so every change of the step is also written here, in the same
transaction (``fogmachine.db.models._record_step_changes``). A row goes with
its guest (ON DELETE CASCADE). Guests that exist before this revision get one
row for the step they are at, dated by their last change: the best the
database knows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('guest_steps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('guest_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['guest_id'], ['guests.id'], name=op.f('fk_guest_steps_guest_id_guests'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_guest_steps')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('guest_steps', schema=None) as batch_op:
        batch_op.create_index('ix_guest_steps_guest_id_at', ['guest_id', 'at'], unique=False)
    guests = sa.table('guests', sa.column('id', sa.Integer()), sa.column('step', sa.String()),
                      sa.column('step_reason', sa.Text()), sa.column('managed', sa.Boolean()),
                      sa.column('updated_at', sa.DateTime()), sa.column('retired_at', sa.DateTime()))
    steps = sa.table('guest_steps', sa.column('guest_id', sa.Integer()), sa.column('step', sa.String()),
                     sa.column('at', sa.DateTime()), sa.column('reason', sa.Text()))
    op.execute(steps.insert().from_select(
        ['guest_id', 'step', 'at', 'reason'],
        sa.select(guests.c.id, guests.c.step, sa.func.coalesce(guests.c.retired_at, guests.c.updated_at),
                  guests.c.step_reason).where(guests.c.managed == sa.true())))


def downgrade() -> None:
    with op.batch_alter_table('guest_steps', schema=None) as batch_op:
        batch_op.drop_index('ix_guest_steps_guest_id_at')
    op.drop_table('guest_steps')
