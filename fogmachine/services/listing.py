"""What the searched, sorted and paged lists share in SQL: a search's LIKE pattern, an order that puts
empty values last on every database, and the count of what a query picks.

The user list (``useradmin.find_users``) and the guest lists (``guests.list_guests``) both filter, order
and page in the database, so a page of 50 costs the same however many rows there are; these are the
parts where SQLite, MariaDB and PostgreSQL would otherwise disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select
from sqlalchemy.orm import Session


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own characters escaped (use with ``escape="\\\\"``): "_" is a character here,
    not a wildcard."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """The column holds ``text`` somewhere, in any case."""
    return func.lower(column).like(like_pattern(text.lower()), escape="\\")


def ordered(key: Any, descending: bool, *, empty_last: bool = False) -> list[Any]:
    """ORDER BY terms for ``key`` in either direction.

    With ``empty_last``, rows whose key is NULL (a guest with no host yet, no owner, no expiry) come after
    the others in both directions: PostgreSQL sorts NULL last going up and first going down, SQLite and
    MariaDB the other way round, and MariaDB has no ``NULLS LAST``, so a CASE says it for all three.
    """
    terms: list[Any] = [case((key.is_(None), 1), else_=0)] if empty_last else []
    return [*terms, key.desc() if descending else key.asc()]


def count(session: Session, query: Select[*tuple[Any, ...]]) -> int:
    """How many rows ``query`` picks, its order and paging aside."""
    return session.scalar(select(func.count()).select_from(query.order_by(None).limit(None).offset(None)
                                                            .subquery())) or 0
