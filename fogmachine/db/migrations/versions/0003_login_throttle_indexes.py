"""indexes for login throttling from the audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_action_result_name_at', ['action', 'result', 'object_name', 'at'],
                              unique=False)
        batch_op.create_index('ix_audit_events_action_result_addr_at', ['action', 'result', 'remote_addr', 'at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_action_result_addr_at')
        batch_op.drop_index('ix_audit_events_action_result_name_at')
