"""API tokens and the audit query against SQLite, MariaDB and PostgreSQL; the token cache on its own."""

from __future__ import annotations

import datetime as dt

import pytest

from fogmachine.composition import build_context, release_context
from fogmachine.db import migrate
from fogmachine.db.models import ApiToken, User, utcnow
from fogmachine.db.session import Database
from fogmachine.errors import Conflict, NotFound, PermissionDenied, ValidationError
from fogmachine.services import audit, tokens
from fogmachine.services.actor import Actor
from fogmachine.services.tokens import CachedIdentity, NewToken, TokenCache, TokenFilter


@pytest.fixture
def ctx(make_config, database_url):
    config = make_config(database_connection=database_url)
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    with db.session() as s:
        s.add_all([User(username="ann"), User(username="ben"), User(username="root", is_admin=True)])
    ctx = build_context(config, db)
    yield ctx
    release_context(ctx)
    db.dispose()


def actor(ctx, name):
    with ctx.db.session() as s:
        user = s.query(User).filter_by(username=name).one()
        return Actor(user.id, user.username, user.is_admin, "10.0.0.1")


def test_create_resolve_list_revoke(ctx):
    ann, ben, root = actor(ctx, "ann"), actor(ctx, "ben"), actor(ctx, "root")
    with ctx.db.session() as s:
        row, secret = tokens.create_token(s, ann, NewToken("ci", "write", 10))
        token_id = row.id
        assert row.token_hash == tokens.hash_token(secret) and row.prefix in secret
        assert dt.timedelta(days=9, hours=23) < row.expires_at - utcnow() <= dt.timedelta(days=10)
    with ctx.db.session() as s:
        user, found = tokens.resolve_token(s, secret)
        assert user.username == "ann" and found.id == token_id and found.last_used_at is not None
        assert tokens.resolve_token(s, secret + "x") is None
    with ctx.db.session() as s:
        with pytest.raises(Conflict):
            tokens.create_token(s, ann, NewToken("ci"))
        for bad, field in ((NewToken(""), "name"), (NewToken("x", "admin"), "scope"),
                           (NewToken("x", "read", 366), "expires_in_days"), (NewToken("x", "read", 0),
                                                                             "expires_in_days")):
            with pytest.raises(ValidationError) as info:
                tokens.create_token(s, ann, bad)
            assert info.value.field == field
        with pytest.raises(PermissionDenied):
            tokens.create_token(s, Actor(ann.user_id, "ann", scope="read"), NewToken("more"))
    with ctx.db.session() as s:
        assert tokens.list_tokens(s, ben)[1] == 0
        with pytest.raises(NotFound):
            tokens.get_token(s, ben, token_id)
        with pytest.raises(NotFound):
            tokens.revoke_token(s, ben, token_id)
        with pytest.raises(PermissionDenied):
            tokens.list_tokens(s, ben, TokenFilter(user="ann"))
        rows, total = tokens.list_tokens(s, root, TokenFilter(user="ann"))
        assert total == 1 and rows[0].id == token_id
    with ctx.db.session() as s:
        assert tokens.revoke_token(s, ann, token_id).revoked
    with ctx.db.session() as s:
        assert tokens.resolve_token(s, secret) is None
        assert tokens.list_tokens(s, ann)[1] == 0
        assert tokens.list_tokens(s, ann, TokenFilter(include_inactive=True))[1] == 1
        with pytest.raises(Conflict):
            tokens.revoke_token(s, ann, token_id)
        actions = [e.action for e in audit.list_events(s, root, audit.AuditFilter(object_type="token"))[0]]
        assert actions == ["token.revoke", "token.create"]


async def test_cache_is_cleared_by_any_commit_that_changes_a_user_or_token(ctx):
    ann = actor(ctx, "ann")
    with ctx.db.session() as s:
        _, secret = tokens.create_token(s, ann, NewToken("ci", "write", 10))
    identity = await tokens.authenticate(ctx, secret)
    assert identity.username == "ann" and identity.scope == "write"
    cache = ctx.tokens
    assert cache.get(secret) == identity

    def touch_last_used(session):  # bookkeeping only: the cache stays
        session.query(ApiToken).one().last_used_at = utcnow()

    await ctx.db.run(touch_last_used)
    assert cache.get(secret) == identity

    def make_admin(session):
        session.query(User).filter_by(username="ann").one().is_admin = True

    await ctx.db.run(make_admin)
    assert cache.get(secret) is None
    assert (await tokens.authenticate(ctx, secret)).is_admin is True


def test_token_cache_expires_entries():
    now = [0.0]
    cache = TokenCache(ttl=5, clock=lambda: now[0])
    ident = CachedIdentity(1, "ann", False, "read", None)
    cache.put("fm_a_b", ident)
    assert cache.get("fm_a_b") == ident
    now[0] = 5.1
    assert cache.get("fm_a_b") is None
    expired = CachedIdentity(1, "ann", False, "read", utcnow() - dt.timedelta(seconds=1))
    cache.put("fm_a_c", expired)
    assert cache.get("fm_a_c") is None
    small = TokenCache(max_entries=2)
    for i in range(3):
        small.put(f"fm_{i}", ident)
    assert len(small._entries) <= 2


def test_audit_filters(ctx):
    root, ann = actor(ctx, "root"), actor(ctx, "ann")
    with ctx.db.session() as s:
        audit.record(s, ann, "guest.start", object_type="guest", object_id=7, object_name="web1")
        audit.record(s, ann, "guest.stop", object_type="guest", object_id=7, object_name="web1", result="failed")
        audit.record(s, root, "host.disable", object_type="host", object_id=1, object_name="h1")
    with ctx.db.session() as s:
        def names(**kw):
            rows, total = audit.list_events(s, root, audit.AuditFilter(**kw))
            return [e.action for e in rows], total

        assert names() == (["host.disable", "guest.stop", "guest.start"], 3)
        assert names(action="guest") == (["guest.stop", "guest.start"], 2)
        assert names(action="guest.start", actor="ann") == (["guest.start"], 1)
        assert names(result="failed") == (["guest.stop"], 1)
        assert names(object_type="guest", object_id="7", limit=1, offset=1) == (["guest.start"], 2)
        assert names(since=utcnow() + dt.timedelta(minutes=1)) == ([], 0)
        assert names(until=utcnow() + dt.timedelta(minutes=1))[1] == 3
        with pytest.raises(PermissionDenied):
            audit.list_events(s, ann)
        event = audit.event_to_dict(audit.list_events(s, root)[0][0])
        assert event["at"].endswith("Z") and event["remote_addr"] == "10.0.0.1"
