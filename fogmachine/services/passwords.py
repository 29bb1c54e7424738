"""Password hashing with Argon2id (argon2-cffi).

Chosen over bcrypt/PBKDF2 because Argon2id is the current OWASP recommendation
and argon2-cffi ships wheels. Hashing costs tens of milliseconds on purpose, so
the web layer calls these through an executor, never on the IOLoop.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
