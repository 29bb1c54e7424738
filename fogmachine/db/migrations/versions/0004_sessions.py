"""usernames in their normal form

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

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
    _fix_usernames()


def downgrade() -> None:
    pass  # the renames are not undone: the old names were the defect
