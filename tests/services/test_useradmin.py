"""The administrators' user functions against real databases: list, grant and revoke, disable and enable."""

import pytest

from fogmachine.db.models import User
from fogmachine.errors import NotFound, PermissionDenied
from fogmachine.services import accounts, useradmin
from fogmachine.services.accounts import NewUser
from fogmachine.services.actor import Actor
from tests.services.test_accounts import actor_of


async def test_admin_functions(make_ctx):
    ctx = make_ctx()
    root = await accounts.register(ctx, None, NewUser("root", "root amber ledger"))
    with ctx.db.session() as s:
        s.get(User, root.id).is_admin = True
    admin = Actor(root.id, "root", True)
    mo = await accounts.register(ctx, None, NewUser("mo", "mos amber ledger"))
    with ctx.db.session() as s, pytest.raises(PermissionDenied):
        useradmin.set_admin(s, actor_of(mo), mo.id, True)
    with ctx.db.session() as s, pytest.raises(PermissionDenied):
        useradmin.list_users(s, actor_of(mo))
    with ctx.db.session() as s:
        assert useradmin.set_admin(s, admin, mo.id, True).is_admin
        assert not useradmin.set_active(s, admin, mo.id, False).is_active
        listed = {u.username: u for u in useradmin.list_users(s, admin)}
    assert listed["mo"].is_admin and not listed["mo"].is_active and listed["root"].live_guests == 0
    with ctx.db.session() as s, pytest.raises(PermissionDenied, match="own"):
        useradmin.set_admin(s, admin, root.id, False)
    with ctx.db.session() as s, pytest.raises(PermissionDenied, match="own"):
        useradmin.set_active(s, admin, root.id, False)
    with ctx.db.session() as s, pytest.raises(NotFound):
        useradmin.set_active(s, admin, 9999, True)
    reader = Actor(root.id, "root", True, scope="read")
    with ctx.db.session() as s, pytest.raises(PermissionDenied, match="read scope"):
        useradmin.set_active(s, reader, mo.id, True)
