"""Accounts against real databases: registration, logging in, throttling, profiles, admin functions."""

import threading

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, User
from fogmachine.errors import (
    AuthenticationRequired,
    Conflict,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    ValidationError,
)
from fogmachine.services import accounts, loginthrottle, passwords, useradmin
from fogmachine.services.accounts import NewUser, ProfileUpdate
from fogmachine.services.actor import Actor

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx7 ann@laptop"


def actor_of(user):
    return Actor(user_id=user.id, username=user.username, is_admin=user.is_admin, remote_addr="10.0.0.9")


async def test_register_login_and_audit(make_ctx):
    ctx = make_ctx()
    user = await accounts.register(ctx, None, NewUser("ann", "correct horse", "ann@example.org"))
    assert user.id and not user.is_admin
    with ctx.db.session() as s:
        stored = s.get(User, user.id)
        assert stored.password_hash.startswith("$argon2id$") and "correct horse" not in stored.password_hash
        assert stored.last_login_at is None
    logged = await accounts.authenticate(ctx, "ann", "correct horse", "10.0.0.1")
    assert logged.id == user.id and logged.last_login_at is not None
    # user names are case-insensitive on the way in
    assert (await accounts.authenticate(ctx, " ANN ", "correct horse", "10.0.0.1")).id == user.id
    with pytest.raises(Conflict, match="already exists"):
        await accounts.register(ctx, None, NewUser("ann", "another password"))
    with ctx.db.session() as s:
        events = [(e.action, e.result) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert events[0] == ("user.create", "ok") and ("user.login", "ok") in events


async def test_bad_logins_look_alike_and_never_store_the_password(make_ctx, caplog):
    ctx = make_ctx()
    await accounts.register(ctx, None, NewUser("bob", "bobs amber ledger"))
    admin = await accounts.register(ctx, None, NewUser("root", "root amber ledger"))
    with ctx.db.session() as s:
        s.get(User, admin.id).is_admin = True
    await accounts.register(ctx, Actor(admin.id, "root", True), NewUser("carl", "carls amber ledger"))
    with ctx.db.session() as s:
        carl_id = s.scalar(select(User.id).where(User.username == "carl"))
        useradmin.set_active(s, Actor(admin.id, "root", True), carl_id, False)
    messages = set()
    for username, password in (("bob", "wrong-password"), ("nobody", "whatever!"), ("carl", "carls amber ledger")):
        with pytest.raises(AuthenticationRequired) as info:
            await accounts.authenticate(ctx, username, password, "10.0.0.2")
        messages.add(info.value.message)
    assert messages == {accounts.LOGIN_FAILED}
    with ctx.db.session() as s:
        failed = s.scalars(select(AuditEvent).where(AuditEvent.result == "failed")).all()
    assert {e.message for e in failed} == {"wrong password", "unknown user", "account disabled"}
    for text in ("wrong-password", "carls amber ledger", "whatever!"):
        assert text not in caplog.text
        assert all(text not in e.message for e in failed)


async def test_registration_rules(make_ctx):
    closed = make_ctx(open_registration="false")
    with pytest.raises(PermissionDenied, match="registration is closed"):
        await accounts.register(closed, None, NewUser("dan", "dans amber ledger"))
    ctx = make_ctx()
    with pytest.raises(PermissionDenied):
        await accounts.register(ctx, None, NewUser("eve", "eves amber ledger", is_admin=True))
    with pytest.raises(ValidationError) as info:
        await accounts.register(ctx, None, NewUser("Eve!", "eves amber ledger"))
    assert info.value.field == "username"
    with pytest.raises(ValidationError) as info:
        await accounts.register(ctx, None, NewUser("eve", "short"))
    assert info.value.field == "password"
    with pytest.raises(ValidationError) as info:
        await accounts.register(ctx, None, NewUser("eve", "longer than enough", email="not-an-address"))
    assert info.value.field == "email"
    # an administrator may create users (and administrators) even when registration is closed
    boss = Actor(user_id=None, username="boss", is_admin=True)
    made = await accounts.register(closed, boss, NewUser("fay", "fays amber ledger", is_admin=True))
    assert made.is_admin
    with pytest.raises(PermissionDenied):
        await accounts.register(ctx, Actor(user_id=99, username="gil"), NewUser("hal", "hals amber ledger"))


async def test_hashing_runs_off_the_event_loop(make_ctx, monkeypatch):
    ctx = make_ctx()
    threads = []
    real_hash, real_verify = passwords.hash_password, passwords.verify_password

    def spy_hash(password):
        threads.append(threading.current_thread().name)
        return real_hash(password)

    def spy_verify(stored, password):
        threads.append(threading.current_thread().name)
        return real_verify(stored, password)

    monkeypatch.setattr(passwords, "hash_password", spy_hash)
    monkeypatch.setattr(passwords, "verify_password", spy_verify)
    await accounts.register(ctx, None, NewUser("ivy", "ivys amber ledger"))
    await accounts.authenticate(ctx, "ivy", "ivys amber ledger", "10.0.0.3")
    assert len(threads) == 2
    assert all(name.startswith("fm-hash") for name in threads), threads


async def test_login_throttled_with_429_and_no_hashing(make_ctx, monkeypatch):
    ctx = make_ctx()
    await accounts.register(ctx, None, NewUser("jan", "jans amber ledger"))
    for _ in range(loginthrottle.DEFAULT.per_pair):
        with pytest.raises(AuthenticationRequired):
            await accounts.authenticate(ctx, "jan", "wrong password", "10.0.0.4")
    calls = []
    monkeypatch.setattr(passwords, "verify_password", lambda *a: calls.append(a) or True)
    with pytest.raises(TooManyRequests) as info:
        await accounts.authenticate(ctx, "jan", "jans amber ledger", "10.0.0.4")
    assert info.value.status == 429 and info.value.details["retry_after"] > 0
    assert calls == []  # a locked-out attempt costs no Argon2


async def test_processes_sharing_the_database_throttle_together(make_ctx):
    """Two Fogmachine processes on one database: failures made through either count for both."""
    first, second = make_ctx(), make_ctx()
    await accounts.register(first, None, NewUser("kay", "kays amber ledger"))
    for i in range(loginthrottle.DEFAULT.per_pair):
        with pytest.raises(AuthenticationRequired):
            await accounts.authenticate((first, second)[i % 2], "kay", "wrong password", "10.1.0.1")
    for ctx in (first, second):
        with pytest.raises(TooManyRequests):
            await accounts.authenticate(ctx, "kay", "kays amber ledger", "10.1.0.1")
    # From another address the owner still logs in: no lock of the account itself.
    assert (await accounts.authenticate(second, "kay", "kays amber ledger", "10.1.9.9")).username == "kay"


async def test_profile_and_password_change(make_ctx):
    ctx = make_ctx()
    kim = actor_of(await accounts.register(ctx, None, NewUser("kim", "kims amber ledger")))
    lou = actor_of(await accounts.register(ctx, None, NewUser("lou", "lous amber ledger")))
    with ctx.db.session() as s:
        user = accounts.update_profile(s, kim, kim.user_id, ProfileUpdate(
            email="kim@example.org", ssh_key=KEY + "\r\n# work\n", description=" team A ", notify_expiry=False))
        assert (user.email, user.ssh_key, user.description) == ("kim@example.org", KEY + "\n# work", "team A")
        assert user.notify_expiry is False and user.notify_ready is True
    with ctx.db.session() as s, pytest.raises(ValidationError) as info:
        accounts.update_profile(s, kim, kim.user_id, ProfileUpdate(ssh_key="hello world"))
    assert info.value.field == "ssh_key"
    with ctx.db.session() as s, pytest.raises(NotFound):  # another user's profile does not exist for kim
        accounts.update_profile(s, kim, lou.user_id, ProfileUpdate(email="x@example.org"))
    with pytest.raises(ValidationError) as info:
        await accounts.change_password(ctx, kim, "not my password", "kims new password", "kims new password")
    assert info.value.field == "current_password"
    with pytest.raises(ValidationError) as info:
        await accounts.change_password(ctx, kim, "kims amber ledger", "kims new password", "kims other password")
    assert info.value.field == "confirm_password"
    with pytest.raises(ValidationError) as info:
        await accounts.change_password(ctx, kim, "kims amber ledger", "short", "short")
    assert info.value.field == "new_password"
    await accounts.change_password(ctx, kim, "kims amber ledger", "kims new password", "kims new password")
    with pytest.raises(AuthenticationRequired):
        await accounts.authenticate(ctx, "kim", "kims amber ledger", "10.0.0.6")
    assert (await accounts.authenticate(ctx, "kim", "kims new password", "10.0.0.6")).id == kim.user_id
