"""Creating and finding users; the rules for names and passwords live here."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import User
from fogmachine.errors import Conflict, ValidationError
from fogmachine.services.passwords import MIN_LENGTH, hash_password

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise ValidationError(
            "username must be 2 to 32 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter", field="username")
    return username


def validate_email(email: str) -> str:
    if not isinstance(email, str) or (email and not EMAIL_RE.match(email)) or len(email) > 255:
        raise ValidationError("email is not a valid address", field="email")
    return email


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise ValidationError(f"password must be at least {MIN_LENGTH} characters", field="password")
    if len(password) > 1024:
        raise ValidationError("password is too long", field="password")
    return password


def create_user(session: Session, username: str, password: str, *, email: str = "",
                is_admin: bool = False, password_hash: str | None = None) -> User:
    """Add a user; ``password_hash`` lets callers hash off the IOLoop beforehand."""
    validate_username(username)
    validate_email(email)
    if password_hash is None:
        password_hash = hash_password(validate_password(password))
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username} already exists", details={"field": "username"})
    user = User(username=username, email=email, password_hash=password_hash, is_admin=is_admin)
    session.add(user)
    session.flush()
    return user
