"""API tokens: made with a name, a scope and an expiry, shown once, stored as SHA-256.

A token is ``fm_`` + 8 characters of prefix (kept in clear to tell tokens
apart in lists) + ``_`` + the secret. SHA-256 rather than a password hash:
the token has 256 bits of entropy, and checking it is on every API request.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import ApiToken, User, utcnow


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
