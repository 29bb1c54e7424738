"""server-side login sessions; usernames in their normal form

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

The ``sessions`` table holds login sessions (services/sessions.py): the
SHA-256 of the cookie's random id, the user, created/last seen, address, user
agent and when and why it ended. Cookies of the old kind (a signed user id)
find no row, so everyone logs in once after the upgrade.

Usernames are now stored normalized (NFKC + casefold, ASCII [a-z0-9._-] only;
services/users.py). Names accepted before need no change, because the old rule
allowed only those characters, except the ones the old ``$``-anchored check
let through with a trailing newline (``admin\\n``, a look-alike of ``admin``).
Such a row is renamed to its plain name when that is free, and disabled when
it is taken (it was an impersonation attempt; its owner could not log in
anyway, since logins strip the name they are given). Nothing is deleted: the
guests and the audit history of the row stay.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_users = sa.table('users', sa.column('id', sa.Integer), sa.column('username', sa.String),
                  sa.column('is_active', sa.Boolean))


def _fix_usernames() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_users.c.id, _users.c.username)).all()
    names = {name for _, name in rows}
    for user_id, name in rows:
        plain = name.strip()
        if plain == name:
            continue
        if plain and plain not in names:
            bind.execute(sa.update(_users).where(_users.c.id == user_id).values(username=plain))
            names.discard(name)
            names.add(plain)
        else:
            bind.execute(sa.update(_users).where(_users.c.id == user_id).values(is_active=False))


def upgrade() -> None:
    op.create_table('sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=255), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('end_reason', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_sessions_token_hash'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_user_id'), ['user_id'], unique=False)
    _fix_usernames()


def downgrade() -> None:
    # The username renames are not undone: the old names were the defect.
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_user_id'))
    op.drop_table('sessions')
