"""the phone-home token's window, and the after-install work still to do

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``phonehome_until``: when a guest's phone-home token stops working (set at its
first phone-home: then plus ``phonehome_grace_seconds``). ``diskboot_pending``:
the guest is installed but its domain still boots its installer's kernel (the
switch to disk boot is retried until done; a restart must not forget it).
``cobbler_token_pending``: Cobbler's record of the guest still carries the token
(it is blanked once the install is finished). Existing rows get NULL and false:
a guest that is ready already has a closed window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phonehome_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('diskboot_pending', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('cobbler_token_pending', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('guests', schema=None) as batch_op:
        batch_op.drop_column('cobbler_token_pending')
        batch_op.drop_column('diskboot_pending')
        batch_op.drop_column('phonehome_until')
