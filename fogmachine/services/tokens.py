"""API tokens: made with a name, a scope and an expiry, shown once, stored as SHA-256.

A token is ``fm_`` + 8 characters of prefix (kept in clear to tell tokens
apart in lists) + ``_`` + the secret. SHA-256 rather than a password hash:
the token has 256 bits of entropy, and checking it is on every API request.

Every token expires (at most ``MAX_DAYS`` after it was made): a token pasted
into a CI job outlives everyone's memory of it, and an expiry bounds the harm
when it leaks. Revoking keeps the row, so lists and the audit log still say
which token did what.

Resolved tokens are remembered by ``TokenCache`` for a few seconds, so that a
script polling the API does not cost a database round trip per request for
its credentials. A revocation, expiry or disabled account in this process
takes effect at once (the cache is cleared); made by another process sharing
the database, it takes effect within ``TokenCache.ttl`` seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import InstanceState, Session, sessionmaker

from fogmachine.db.models import ApiToken, User, utcnow
from fogmachine.errors import Conflict, NotFound, PermissionDenied, ValidationError
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.timestamps import iso_utc

if TYPE_CHECKING:
    from fogmachine.context import Context

SCOPES = ("read", "write")
MAX_DAYS = 365
DEFAULT_DAYS = 90
MAX_NAME = 128
PREFIX_CHARS = 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def resolve_token(session: Session, token: str) -> tuple[User, ApiToken] | None:
    """The active user and token behind a bearer token, or None."""
    if not token.startswith("fm_") or len(token) > 200:
        return None
    row = session.execute(
        select(ApiToken, User).join(User, ApiToken.user_id == User.id).where(ApiToken.token_hash == hash_token(token))
    ).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.revoked or not user.is_active or (api_token.expires_at is not None and api_token.expires_at <= now):
        return None
    if api_token.last_used_at is None or (now - api_token.last_used_at).total_seconds() > 60:
        api_token.last_used_at = now  # at most once a minute: no write per request
    return user, api_token


def new_secret() -> tuple[str, str]:
    """A fresh token and its prefix: 8 hex characters in clear, 256 random bits behind."""
    prefix = secrets.token_hex(PREFIX_CHARS // 2)
    return f"fm_{prefix}_{secrets.token_urlsafe(32)}", prefix


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("name must not be empty", field="name")
    if len(name) > MAX_NAME:
        raise ValidationError(f"name must be at most {MAX_NAME} characters", field="name")
    # Cc is every C0/C1 control (NUL, newline, ESC, ...); Zl/Zp are the Unicode line and paragraph breaks.
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        raise ValidationError("name must not contain control characters or line breaks", field="name")
    return name


@dataclass(frozen=True)
class NewToken:
    name: str
    scope: str = "read"
    expires_in_days: int = DEFAULT_DAYS


def create_token(session: Session, actor: Actor, new: NewToken) -> tuple[ApiToken, str]:
    """Make a token for the actor; returns the row and the token, which is never stored."""
    actor.require_write()
    if actor.user_id is None:
        raise PermissionDenied("only a user can own an API token")
    name = validate_name(new.name)
    if new.scope not in SCOPES:
        raise ValidationError(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    days = new.expires_in_days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"expires_in_days must be between 1 and {MAX_DAYS}", field="expires_in_days")
    taken = session.scalar(select(ApiToken.id).where(
        ApiToken.user_id == actor.user_id, ApiToken.name == name, ApiToken.revoked.is_(False),
        ApiToken.expires_at > utcnow()))
    if taken is not None:
        raise Conflict(f"you already have an active token named {name!r}", details={"field": "name"})
    token, prefix = new_secret()
    row = ApiToken(user_id=actor.user_id, name=name, token_hash=hash_token(token), prefix=prefix, scope=new.scope,
                   created_at=utcnow(), expires_at=utcnow() + dt.timedelta(days=days))
    session.add(row)
    session.flush()
    audit.record(session, actor, "token.create", object_type="token", object_id=row.id, object_name=name,
                 message=f"scope {new.scope}, expires {row.expires_at:%Y-%m-%d %H:%M} UTC")
    return row, token


@dataclass(frozen=True)
class TokenFilter:
    user: str | None = None
    include_inactive: bool = False
    offset: int = 0
    limit: int = 100


def _visible(actor: Actor):  # type: ignore[no-untyped-def]
    query = select(ApiToken).join(User, ApiToken.user_id == User.id)
    if not actor.is_admin:
        query = query.where(ApiToken.user_id == actor.user_id)
    return query


def list_tokens(session: Session, actor: Actor, flt: TokenFilter = TokenFilter()) -> tuple[list[ApiToken], int]:
    """The actor's tokens (an administrator's: everyone's), newest first, and how many match."""
    if flt.user is not None and not actor.is_admin and flt.user != actor.username:
        raise PermissionDenied("only administrators may list other users' tokens")
    query = _visible(actor)
    if flt.user is not None:
        query = query.where(User.username == flt.user)
    if not flt.include_inactive:
        query = query.where(ApiToken.revoked.is_(False), ApiToken.expires_at > utcnow())
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = session.scalars(query.order_by(ApiToken.id.desc()).offset(flt.offset).limit(flt.limit))
    return list(rows), total


def get_token(session: Session, actor: Actor, token_id: int, *, for_update: bool = False) -> ApiToken:
    """The token, or NotFound when it does not exist or belongs to someone else (ids are not probed)."""
    query = _visible(actor).where(ApiToken.id == token_id)
    if for_update:
        query = query.with_for_update(of=ApiToken)
    token: ApiToken | None = session.scalar(query)
    if token is None:
        raise NotFound(f"no token with id {token_id}")
    return token


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    actor.require_write()
    token = get_token(session, actor, token_id, for_update=True)
    if token.revoked:
        raise Conflict(f"token {token.name!r} is already revoked")
    token.revoked = True
    audit.record(session, actor, "token.revoke", object_type="token", object_id=token.id, object_name=token.name,
                 message=f"owner {token.user.username}")
    return token


def token_state(token: ApiToken, now: dt.datetime | None = None) -> str:
    if token.revoked:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def token_to_dict(token: ApiToken) -> dict[str, Any]:
    """A token as lists show it: never its secret, nor its hash."""
    return {
        "id": token.id,
        "name": token.name,
        "owner": token.user.username,
        "prefix": f"fm_{token.prefix}_" if token.prefix else "",
        "scope": token.scope,
        "state": token_state(token),
        "created_at": iso_utc(token.created_at),
        "expires_at": iso_utc(token.expires_at),
        "last_used_at": iso_utc(token.last_used_at),
    }


@dataclass(frozen=True)
class CachedIdentity:
    """What a request needs of a resolved token, detached from any session."""

    user_id: int
    username: str
    is_admin: bool
    scope: str
    expires_at: dt.datetime | None


class TokenCache:
    """Resolved bearer tokens, remembered for ``ttl`` seconds, keyed by the token's hash.

    Only successful look-ups are kept (a wrong token always asks the database,
    so guessing gains nothing), and never past the token's own expiry.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, CachedIdentity]] = {}
        self._lock = threading.Lock()
        self._watched: tuple[sessionmaker[Session], list[tuple[str, Callable[..., None]]]] | None = None

    def get(self, token: str) -> CachedIdentity | None:
        key = hash_token(token)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] <= self.clock() or (found[1].expires_at is not None and found[1].expires_at <= utcnow()):
                del self._entries[key]
                return None
            return found[1]

    def put(self, token: str, identity: CachedIdentity) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[hash_token(token)] = (self.clock() + self.ttl, identity)

    def clear(self) -> None:
        """Forget everything: called after a revocation or an account change in this process."""
        with self._lock:
            self._entries.clear()

    def watch(self, factory: sessionmaker[Session]) -> None:
        """Clear the cache after any commit of ``factory``'s sessions that changes a user or a token.

        The hooks sit on the database's session factory, so they see every service's changes in this
        process (revocations, disabled accounts, revoked admin rights), whichever door they came through.
        The server calls this when it builds the cache, and ``stop`` takes the hooks off again.
        """
        self.unwatch()
        # Bound methods: SQLAlchemy tells them apart by their instance, so two caches on one factory (two
        # contexts in a test) each take off only their own.
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("after_flush", self._note_changes), ("after_commit", self._clear_if_changed),
            ("after_rollback", self._forget_changes)]
        for name, hook in hooks:
            event.listen(factory, name, hook)
        self._watched = (factory, hooks)

    def unwatch(self) -> None:
        if self._watched is not None:
            factory, hooks = self._watched
            for name, hook in hooks:
                event.remove(factory, name, hook)
            self._watched = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.unwatch()

    def _note_changes(self, session: Session, _context: Any) -> None:
        if any(_changes_authority(o) for o in (*session.dirty, *session.deleted)):
            session.info["fm_auth_changed"] = True

    def _clear_if_changed(self, session: Session) -> None:
        if session.info.pop("fm_auth_changed", False):
            self.clear()

    def _forget_changes(self, session: Session) -> None:
        session.info.pop("fm_auth_changed", None)


def _identity(session: Session, token: str) -> CachedIdentity | None:
    found = resolve_token(session, token)
    if found is None:
        return None
    user, api_token = found
    return CachedIdentity(user.id, user.username, user.is_admin, api_token.scope, api_token.expires_at)


# Columns whose change does not alter what a token may do: touched on use and on login.
_BOOKKEEPING = frozenset({"last_used_at", "last_login_at"})


def _changes_authority(obj: object) -> bool:
    if not isinstance(obj, (User, ApiToken)):
        return False
    state: InstanceState[Any] = inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in _BOOKKEEPING)


async def authenticate(ctx: Context, token: str) -> CachedIdentity | None:
    """Who a bearer token speaks for: from the cache, else from the database (then cached)."""
    cache = ctx.tokens
    identity = cache.get(token)
    if identity is None:
        identity = await ctx.db.run(_identity, token)
        if identity is not None:
            cache.put(token, identity)
    return identity
