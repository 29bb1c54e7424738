"""The profile's API tokens: make one (its secret shown once), list them, revoke one.

The page calls the token service directly, as the API does; it never asks the
API over HTTP. A new token's secret has to survive one redirect (post, then
redirect, then get, so a reload cannot make a second token) and must never be
in a URL or a log: it rides in a signed, HttpOnly cookie scoped to
``/profile`` that lives at most ``SHOW_SECONDS``, names the user it was made
for, and is deleted by the page that shows it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.orm import Session
from tornado.web import RequestHandler

from fogmachine.errors import ValidationError
from fogmachine.services import tokens
from fogmachine.services.actor import Actor

NEW_TOKEN_COOKIE = "fm_new_token"
COOKIE_PATH = "/profile"
SHOW_SECONDS = 300
LISTED = 100
# What a Host header may look like in the curl line (a name or address, a port); anything else is replaced.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def token_form(name: str = "", scope: str = "read", days: str = str(tokens.DEFAULT_DAYS)) -> dict[str, str]:
    """The "new token" form's values, as typed (shown again beside an error)."""
    return {"name": name, "scope": scope, "days": days}


def listed(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """The user's own active tokens, newest first (an administrator's page lists only theirs too)."""
    rows, _ = tokens.list_tokens(session, actor, tokens.TokenFilter(user=actor.username, limit=LISTED))
    return [tokens.token_to_dict(row) for row in rows]


def parse_new(form: dict[str, str]) -> tokens.NewToken:
    """The service's request from the form; the service checks name, scope and range itself."""
    try:
        days = int(form["days"].strip())
    except ValueError:
        raise ValidationError("expires_in_days must be a whole number of days", field="expires_in_days") from None
    return tokens.NewToken(name=form["name"], scope=form["scope"], expires_in_days=days)


def create(session: Session, actor: Actor, new: tokens.NewToken) -> tuple[int, str, str]:
    row, secret = tokens.create_token(session, actor, new)
    return row.id, row.name, secret


def revoke(session: Session, actor: Actor, token_id: int) -> str:
    return tokens.revoke_token(session, actor, token_id).name


def origin(handler: RequestHandler) -> str:
    """This server as the browser reached it, for the curl line.

    ``request.protocol`` is already the truth (``X-Forwarded-Proto`` counts only
    from ``trusted_proxies``, fogmachine.web.proxies); a Host header that is not
    a plain host name or address is not echoed.
    """
    host = handler.request.host or ""
    if not _HOST.fullmatch(host):
        host = "FOGMACHINE-HOST"
    return f"{handler.request.protocol}://{host}"


def keep_new(handler: RequestHandler, user_id: int, token_id: int, name: str, secret: str) -> None:
    """Hold the new secret for the one page that shows it."""
    value = json.dumps({"user": user_id, "id": token_id, "name": name, "token": secret})
    handler.set_signed_cookie(NEW_TOKEN_COOKIE, value, expires_days=None, path=COOKIE_PATH, httponly=True,
                              samesite="Strict")


def take_new(handler: RequestHandler, user_id: int) -> dict[str, Any] | None:
    """The token just made by this user, once: the cookie is deleted whatever it held."""
    raw = handler.get_signed_cookie(NEW_TOKEN_COOKIE, max_age_days=SHOW_SECONDS / 86400)
    if handler.get_cookie(NEW_TOKEN_COOKIE) is not None:
        handler.clear_cookie(NEW_TOKEN_COOKIE, path=COOKIE_PATH)
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(found, dict) or found.get("user") != user_id or not isinstance(found.get("token"), str):
        return None
    secret: str = found["token"]
    return {"id": found.get("id"), "name": str(found.get("name", "")), "token": secret,
            "curl": f"curl -H 'Authorization: Bearer {secret}' {origin(handler)}/api/v1/guests"}

