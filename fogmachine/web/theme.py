"""The colour theme a browser asked for: system (follow ``prefers-color-scheme``), light or dark.

Kept in a long-lived cookie, not in the user's row: a column would need a
migration, and the choice belongs to the device as much as to the person (a
dark phone, a light office screen). ``base.html`` reads it on every page and
puts it on ``<html data-theme=...>`` in the page itself, so the page is never
first drawn in the wrong colours; a value the server did not write counts as
"system".
"""

from __future__ import annotations

from tornado.web import RequestHandler

from fogmachine.errors import ValidationError

COOKIE = "fm_theme"
CHOICES = ("system", "light", "dark")
LABELS = {"system": "As the system (light or dark)", "light": "Light", "dark": "Dark"}
KEEP_DAYS = 400


def chosen(handler: RequestHandler) -> str:
    """The theme this browser chose; "system" when it chose none, or sent something else."""
    value = handler.get_cookie(COOKIE, "system")
    return value if value in CHOICES else "system"


def color_scheme(theme: str) -> str:
    """The page's ``<meta name=color-scheme>``: which schemes its form controls and scrollbars may take."""
    return "light dark" if theme == "system" else theme


def remember(handler: RequestHandler, theme: str) -> None:
    """Keep the choice on this browser; "system" removes the cookie. Anything else is refused."""
    if theme not in CHOICES:
        raise ValidationError(f"theme must be one of {', '.join(CHOICES)}", field="theme")
    if theme == "system":
        handler.clear_cookie(COOKIE)
    else:
        handler.set_cookie(COOKIE, theme, expires_days=KEEP_DAYS, httponly=True, samesite="Lax")
