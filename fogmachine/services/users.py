"""Creating and finding users; the rules for names and e-mail addresses live here.

Usernames are compared in one normal form, ``normalize_username``: Unicode
NFKC (fullwidth ``U+FF41 U+FF44 ...`` and ligatures become plain letters) plus
casefolding (``Admin``, and the Kelvin sign ``K``, become ``admin``, ``k``).
The stored name is that normal form, and what may be stored is ASCII only
(``USERNAME_RE``), so two names that look alike either fold to the same
stored name (and the second is refused as taken, by the unique constraint if
two registrations race) or contain a look-alike from another script (Cyrillic
``U+0430``) and are refused as malformed. Every check is a full match: ``$`` would
let a trailing newline through (``admin\\n``).

Existing databases need no rewrite for this: the rule before it already
allowed only ``[a-z0-9._-]``, which NFKC and casefolding leave unchanged. The
one exception, names with a trailing newline that the old ``$`` let in, is
handled by migration 0004 (renamed when the plain name is free, else disabled).
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import User
from fogmachine.errors import Conflict, ValidationError
from fogmachine.services import passwordpolicy
from fogmachine.services.passwords import hash_password

USERNAME_RE = re.compile(r"[a-z][a-z0-9._-]{1,31}")
# No whitespace and no control characters anywhere (they would forge log lines and
# mail headers); one @ with something on each side. Deliverability is the mailer's business.
EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+")
MAX_EMAIL = 255
USERNAME_RULE = ("username must be 2 to 32 characters: lower-case letters a-z, digits, '.', '_' or '-', "
                 "starting with a letter")


def normalize_username(username: str) -> str:
    """The one form in which names are stored and compared (NFKC, casefolded, NFKC again:
    casefolding can undo a composition, e.g. of ``ǰ``)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def validate_username(username: str) -> str:
    """The normalized name, or ValidationError; nothing is stripped (a newline is refused, not dropped)."""
    if not isinstance(username, str) or len(username) > 64:
        raise ValidationError(USERNAME_RULE, field="username")
    normal = normalize_username(username)
    if not USERNAME_RE.fullmatch(normal):
        raise ValidationError(USERNAME_RULE, field="username")
    return normal


def validate_email(email: str) -> str:
    if not isinstance(email, str) or (email and not EMAIL_RE.fullmatch(email)) or len(email) > MAX_EMAIL:
        raise ValidationError("email is not a valid address", field="email")
    return email


def username_taken(session: Session, username: str) -> str | None:
    """The stored name that ``username`` collides with once normalized, or None."""
    return session.scalar(select(User.username).where(User.username == normalize_username(username)))


def taken_message(asked: str, existing: str) -> str:
    if asked == existing:
        return f"user {existing} already exists"
    return (f"the name {asked!r} is taken: it is the same as the existing user {existing} once case and "
            "look-alike characters are folded")


def create_user(session: Session, username: str, password: str, *, email: str = "",
                is_admin: bool = False, password_hash: str | None = None) -> User:
    """Add a user under the normalized name; ``password_hash`` lets callers hash off the IOLoop
    beforehand (they have applied the password policy themselves, as ``accounts.register`` does)."""
    name = validate_username(username)
    validate_email(email)
    if password_hash is None:
        password_hash = hash_password(passwordpolicy.check(password, username=name, email=email))
    existing = username_taken(session, name)
    if existing is not None:
        raise Conflict(taken_message(username, existing), details={"field": "username"})
    user = User(username=name, email=email, password_hash=password_hash, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user
