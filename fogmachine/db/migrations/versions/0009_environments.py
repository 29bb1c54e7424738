"""environments: templates of ordered tiers, environments made from them, and their guests

``env_templates`` holds environment templates (their tiers as one JSON spec),
``environments`` the environments checked out from them (with a copy of the
spec as it was then), and each guest of an environment names it, its tier and
its place in the tier, and keeps the variables its tier was given. A guest of
a later tier waits at the new step ``waiting`` (a plain string in
``guests.step``: no schema change for it). SQLite rebuilds ``guests`` for the
foreign key, keeping AUTOINCREMENT (0007).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('env_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_env_templates_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_env_templates')),
    sa.UniqueConstraint('name', name=op.f('uq_env_templates_name')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('env_templates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_env_templates_owner_id'), ['owner_id'], unique=False)

    op.create_table('environments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('live_name', sa.String(length=63), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('template_name', sa.String(length=63), nullable=False),
    sa.Column('spec', sa.Text(), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('step_reason', sa.Text(), nullable=False),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('keep_failed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('retired_at', sa.DateTime(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_environments_owner_id_users')),
    sa.ForeignKeyConstraint(['template_id'], ['env_templates.id'],
                            name=op.f('fk_environments_template_id_env_templates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_environments')),
    sa.UniqueConstraint('live_name', name=op.f('uq_environments_live_name')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('environments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_environments_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_template_id'), ['template_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_step'), ['step'], unique=False)
        batch_op.create_index(batch_op.f('ix_environments_updated_at'), ['updated_at'], unique=False)

    # SQLite rebuilds the table for the foreign key: it must keep AUTOINCREMENT (0007) as it does so.
    with op.batch_alter_table('guests', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('environment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tier', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('tier_index', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('env_vars', sa.Text(), server_default='', nullable=False))
        batch_op.create_index(batch_op.f('ix_guests_environment_id'), ['environment_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_guests_environment_id_environments'), 'environments',
                                    ['environment_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('guests', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_guests_environment_id_environments'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_guests_environment_id'))
        batch_op.drop_column('env_vars')
        batch_op.drop_column('tier_index')
        batch_op.drop_column('tier')
        batch_op.drop_column('environment_id')
    with op.batch_alter_table('environments', schema=None) as batch_op:
        for index in ('updated_at', 'step', 'expires_at', 'template_id', 'owner_id', 'name'):
            batch_op.drop_index(batch_op.f(f'ix_environments_{index}'))
    op.drop_table('environments')
    with op.batch_alter_table('env_templates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_env_templates_owner_id'))
    op.drop_table('env_templates')
