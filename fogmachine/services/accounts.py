"""Accounts: registration, logging in, profiles and passwords (administrators' functions: ``useradmin``).

Password hashing and verification cost tens of milliseconds of CPU by design
(Argon2id), so they run on a small pool of their own, never on the IOLoop and
never on the database threads: a burst of logins then queues behind two
hashing threads instead of starving every page of database connections.
Passwords are never logged, never stored in clear and never echoed back.

Failed logins, wrong current passwords and self-registrations are throttled
(``loginthrottle``, where the rule is) by counting them in the audit log,
which every Fogmachine process sharing the database writes and reads.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import User, utcnow
from fogmachine.errors import (
    AuthenticationRequired,
    Conflict,
    FogmachineError,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    ValidationError,
)
from fogmachine.services import audit, loginthrottle, passwordpolicy, passwords, sessions
from fogmachine.services.actor import Actor
from fogmachine.services.users import (
    create_user,
    normalize_username,
    taken_message,
    username_taken,
    validate_email,
    validate_username,
)

if TYPE_CHECKING:
    from fogmachine.context import Context

T = TypeVar("T")

HASH_THREADS = 2
LOGIN_FAILED = "wrong username or password"
SSH_KEY_RE = re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)"
                        r"@openssh\.com) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?")
MAX_SSH_KEYS_CHARS = 16 * 1024
MAX_DESCRIPTION_CHARS = 2000


class HashingPool:
    """The accounts service's threads for password hashing and checking: built and stopped by the server.

    Its threads start on the first hash; ``stop`` shuts them down (the server has drained its requests
    by then, so no login is waiting on them).
    """

    def __init__(self, threads: int = HASH_THREADS) -> None:
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="fm-hash")
        # A hash to verify against when the username does not exist, so that the answer
        # takes as long as for a real user and does not reveal which names exist.
        self.dummy_hash = ""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Shut the threads down, waiting for a hash under way (for callers that never started the pool)."""
        self.executor.shutdown(wait=True)


async def _off_loop(ctx: Context, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(ctx.accounts.executor, fn, *args)


async def hash_password(ctx: Context, password: str) -> str:
    return await _off_loop(ctx, passwords.hash_password, password)


async def verify_password(ctx: Context, password_hash: str, password: str) -> bool:
    return await _off_loop(ctx, passwords.verify_password, password_hash, password)


async def check_password(ctx: Context, password: str, *, username: str, email: str,
                         field: str = "password") -> str:
    """The password policy (``passwordpolicy``) with this server's minimum score; zxcvbn
    costs milliseconds of CPU per password, so it runs on the hashing pool too."""
    return await _off_loop(ctx, functools.partial(passwordpolicy.check, password, username=username, email=email,
                                                  min_score=ctx.config.password_min_score, field=field))


# --- registration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewUser:
    username: str
    password: str
    email: str = ""
    is_admin: bool = False


def _insert_user(session: Session, actor: Actor | None, new: NewUser, password_hash: str,
                 remote_addr: str = "") -> User:
    user = create_user(session, new.username, new.password, email=new.email, is_admin=new.is_admin,
                       password_hash=password_hash)
    who = actor if actor is not None else Actor(user_id=user.id, username=user.username, remote_addr=remote_addr)
    audit.record(session, who, "user.create", object_type="user", object_id=user.id, object_name=user.username,
                 message="administrator" if user.is_admin else "")
    if actor is None:  # what the per-address registration limit counts (loginthrottle)
        audit.record(session, who, loginthrottle.REGISTER, object_type="user", object_id=user.id,
                     object_name=user.username)
    return user


async def register(ctx: Context, actor: Actor | None, new: NewUser, remote_addr: str = "") -> User:
    """Create an account.

    ``actor`` None is someone registering themselves: allowed only while
    ``open_registration`` is on, and never as an administrator. An
    administrator may always create users, administrators included.
    """
    if actor is None:
        if not ctx.config.open_registration:
            raise PermissionDenied("registration is closed; ask an administrator for an account")
        if new.is_admin:
            raise PermissionDenied("only administrators may create administrators")
        wait = await ctx.db.run(loginthrottle.register_wait, remote_addr, utcnow())
        if wait > 0:
            raise _too_many("too many registrations from your address", wait)
        try:
            return await _create(ctx, None, new, remote_addr)
        except FogmachineError as exc:
            # Counted by the per-address limit: a refused name is what enumeration looks like.
            await ctx.db.run(_register_failed, new.username, remote_addr, exc.message)
            raise
    actor.require_write()
    actor.require_admin()
    return await _create(ctx, actor, new, remote_addr)


def _too_many(what: str, wait: float) -> TooManyRequests:
    minutes = max(1, round(wait / 60))
    return TooManyRequests(f"{what}; try again in about {minutes} minute(s)", details={"retry_after": int(wait) + 1})


def _register_failed(session: Session, username: str, address: str, reason: str) -> None:
    name = "".join(c for c in str(username) if c.isprintable())[:64]
    audit.record(session, Actor(None, name, remote_addr=address), loginthrottle.REGISTER, object_type="user",
                 object_name=name, result="failed", message=reason[:500])


async def _create(ctx: Context, actor: Actor | None, new: NewUser, remote_addr: str) -> User:
    username = validate_username(new.username)
    validate_email(new.email)
    await check_password(ctx, new.password, username=username, email=new.email)
    existing = await ctx.db.run(username_taken, new.username)
    if existing is not None:
        # Checked before hashing so that a taken name costs no Argon2; the unique
        # constraint (create_user) still decides a race.
        raise Conflict(taken_message(new.username, existing), details={"field": "username"})
    password_hash = await hash_password(ctx, new.password)
    return await ctx.db.run(_insert_user, actor, new, password_hash, remote_addr)


# --- logging in -------------------------------------------------------------------------------


def _login_record(session: Session, username: str,
                  address: str) -> tuple[loginthrottle.Verdict, tuple[int, str, bool] | None]:
    """(what the throttle says, (id, password hash, active) of the user or None)."""
    verdict = loginthrottle.check_login(session, username, address, utcnow())
    if verdict.retry_after > 0 or not username:
        return verdict, None
    row = session.execute(select(User.id, User.password_hash, User.is_active)
                          .where(User.username == username)).first()
    return verdict, (row[0], row[1], row[2]) if row is not None else None


def _login_succeeded(session: Session, user_id: int, address: str, new_hash: str | None) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AuthenticationRequired(LOGIN_FAILED)
    user.last_login_at = utcnow()
    if new_hash is not None:
        user.password_hash = new_hash
    audit.record(session, Actor(user.id, user.username, user.is_admin, address), "user.login",
                 object_type="user", object_id=user.id, object_name=user.username)
    return user


def _login_failed(session: Session, username: str, address: str, reason: str) -> None:
    audit.record(session, Actor(None, username[:64], remote_addr=address), "user.login", object_type="user",
                 object_name=username[:255], result="failed", message=reason)


async def authenticate(ctx: Context, username: str, password: str, address: str) -> User:
    """The user with this name and password, or AuthenticationRequired / TooManyRequests.

    The answer to a wrong password, an unknown user and a disabled account is
    the same message, and takes the same time: it must not tell which names exist.
    """
    st = ctx.accounts
    username = normalize_username((username or "").strip())[:64]
    verdict, record = await ctx.db.run(_login_record, username, address)
    if verdict.retry_after > 0:
        raise _too_many("too many failed logins", verdict.retry_after)
    if verdict.delay > 0:
        # The per-account backoff: slower answers for a name under attack, never a refusal.
        await asyncio.sleep(verdict.delay)
    if record is None:
        if not st.dummy_hash:
            st.dummy_hash = await hash_password(ctx, "fogmachine-dummy-password")
        await verify_password(ctx, st.dummy_hash, password or "")
        ok, reason = False, "unknown user"
    else:
        ok = await verify_password(ctx, record[1], password or "")
        reason = "wrong password"
        if ok and not record[2]:
            ok, reason = False, "account disabled"
    if not ok:
        await ctx.db.run(_login_failed, username, address, reason)  # also what the throttle counts
        raise AuthenticationRequired(LOGIN_FAILED)
    new_hash = None
    if passwords.needs_rehash(record[1]):  # type: ignore[index]
        new_hash = await hash_password(ctx, password)
    return await ctx.db.run(_login_succeeded, record[0], address, new_hash)  # type: ignore[index]


# --- profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileUpdate:
    """Fields a user may change on their own profile; None leaves one unchanged."""

    email: str | None = None
    ssh_key: str | None = None
    description: str | None = None
    notify_expiry: bool | None = None
    notify_ready: bool | None = None


def validate_ssh_keys(text: str) -> str:
    """One or more OpenSSH public keys, one a line; blank lines and # comments allowed."""
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_SSH_KEYS_CHARS:
        raise ValidationError(f"SSH keys must be at most {MAX_SSH_KEYS_CHARS} characters", field="ssh_key")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if line and not line.startswith("#") and not SSH_KEY_RE.fullmatch(line):
            raise ValidationError(f"line {number} of the SSH keys is not an OpenSSH public key "
                                  "(ssh-ed25519 AAAA... comment)", field="ssh_key")
    return text


def _user_for(session: Session, actor: Actor, user_id: int, *, for_update: bool = False) -> User:
    if not actor.is_admin and actor.user_id != user_id:
        raise NotFound(f"no user with id {user_id}")
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    user = session.scalar(query)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def get_user(session: Session, actor: Actor, user_id: int) -> User:
    """A user's own account, or any account for an administrator."""
    return _user_for(session, actor, user_id)


def update_profile(session: Session, actor: Actor, user_id: int, change: ProfileUpdate) -> User:
    actor.require_write()
    user = _user_for(session, actor, user_id, for_update=True)
    changed = []
    if change.email is not None:
        user.email = validate_email(change.email.strip())
        changed.append("email")
    if change.ssh_key is not None:
        user.ssh_key = validate_ssh_keys(change.ssh_key)
        changed.append("ssh_key")
    if change.description is not None:
        description = change.description.strip()
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValidationError(f"description must be at most {MAX_DESCRIPTION_CHARS} characters",
                                  field="description")
        user.description = description
        changed.append("description")
    if change.notify_expiry is not None:
        user.notify_expiry = change.notify_expiry
        changed.append("notify_expiry")
    if change.notify_ready is not None:
        user.notify_ready = change.notify_ready
        changed.append("notify_ready")
    audit.record(session, actor, "user.update", object_type="user", object_id=user.id, object_name=user.username,
                 message=", ".join(changed))
    return user


def _password_record(session: Session, user_id: int) -> tuple[str, str, str]:
    """(password hash, username, e-mail) of a user: the policy refuses the name and address."""
    row = session.execute(select(User.password_hash, User.username, User.email).where(User.id == user_id)).first()
    return (row[0] or "", row[1], row[2]) if row is not None else ("", "", "")


def _password_failed(session: Session, actor: Actor, username: str) -> None:
    audit.record(session, actor, loginthrottle.PASSWORD_CHANGE, object_type="user", object_id=actor.user_id,
                 object_name=username, result="failed", message="wrong current password")


def _store_password(session: Session, actor: Actor, user_id: int, old_hash: str, new_hash: str) -> None:
    user = _user_for(session, actor, user_id, for_update=True)
    if user.password_hash != old_hash:
        # Changed by someone else between the check and now: make the user try again.
        raise ValidationError("the password was changed meanwhile; try again", field="current_password")
    user.password_hash = new_hash
    # Whoever knew the old password may hold a session: every other one ends now.
    ended = sessions.end_for_user(session, user.id, "password changed", keep=actor.session_id)
    audit.record(session, actor, "user.password", object_type="user", object_id=user.id, object_name=user.username,
                 message=f"{ended} other session(s) ended" if ended else "")


async def change_password(ctx: Context, actor: Actor, current: str, new: str, confirm: str | None = None) -> None:
    """Change the actor's own password; the current one must be given, whoever asks.

    Every other login session of the user ends (the one making the change stays)."""
    actor.require_write()
    if actor.user_id is None:
        raise PermissionDenied("only a user can change their password")
    if confirm is not None and confirm != new:
        raise ValidationError("the new passwords differ", field="confirm_password")
    old_hash, username, email = await ctx.db.run(_password_record, actor.user_id)
    await check_password(ctx, new, username=username, email=email, field="new_password")
    wait = await ctx.db.run(loginthrottle.password_change_wait, username, actor.remote_addr, utcnow())
    if wait > 0:
        raise _too_many("too many wrong current passwords", wait)
    if not await verify_password(ctx, old_hash, current or ""):
        await ctx.db.run(_password_failed, actor, username)
        raise ValidationError("the current password is wrong", field="current_password")
    new_hash = await hash_password(ctx, new)
    await ctx.db.run(_store_password, actor, actor.user_id, old_hash, new_hash)
