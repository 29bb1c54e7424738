"""Which of this process's commits the live feed must hear of at once: the push half of live updates.

The feed polls the database (``feed.py`` says why: other processes write
too), but a change THIS process commits need not wait for the next poll. So
hooks on the database's session factory note, per session, whether a flush
or a bulk statement wrote a watched table, and after the COMMIT (not before:
a poll woken earlier could read the database before the change is there)
call the feed's ``wake`` with what kind of change it was:

* ``ROWS``: guests or hosts, what the pages show;
* ``PEOPLE``: users or login sessions, which decide who may still listen (a
  logout, a disabled account: the feed's next poll re-checks its sockets).

The hooks run on whichever thread committed (the database pool's), so
``wake`` must be safe to call from any thread. Statements written as raw SQL
text are not seen; the poll still finds their changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from fogmachine.db.models import Guest, Host, User, UserSession

ROWS = "rows"
PEOPLE = "people"

# Table name -> kind of change.
WATCHED: dict[str, str] = {
    Guest.__tablename__: ROWS,
    Host.__tablename__: ROWS,
    User.__tablename__: PEOPLE,
    UserSession.__tablename__: PEOPLE,
}


def _kind_of(obj: object) -> str | None:
    table = getattr(type(obj), "__tablename__", None)
    return WATCHED.get(table) if isinstance(table, str) else None


def _statement_kind(state: ORMExecuteState) -> str | None:
    """The kind of a bulk INSERT/UPDATE/DELETE, ORM (``update(Guest)``) or Core (``update(guests_table)``)."""
    if not (state.is_insert or state.is_update or state.is_delete):
        return None
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    return WATCHED.get(name) if isinstance(name, str) else None


class CommitWatch:
    """Calls ``wake(kinds)`` after each commit of ``factory``'s sessions that wrote a watched table.

    ``close()`` takes the hooks off; until then every session of the factory
    pays one set lookup per flushed object and per bulk statement.
    """

    def __init__(self, factory: sessionmaker[Session], wake: Callable[[frozenset[str]], None]) -> None:
        self._factory = factory
        self._wake = wake
        # Per instance: two feeds on one database (tests) must not take each other's notes.
        self._key = f"fm_live_commits_{id(self)}"
        self._hooks: list[tuple[str, Callable[..., None]]] = [
            ("after_flush", self._note_flush), ("do_orm_execute", self._note_statement),
            ("after_commit", self._after_commit), ("after_rollback", self._forget)]
        for name, hook in self._hooks:
            event.listen(factory, name, hook)

    def close(self) -> None:
        for name, hook in self._hooks:
            if event.contains(self._factory, name, hook):
                event.remove(self._factory, name, hook)
        self._hooks = []

    @property
    def watching(self) -> bool:
        return bool(self._hooks)

    def _note(self, session: Session, kind: str) -> None:
        noted: set[str] = session.info.setdefault(self._key, set())
        noted.add(kind)

    def _note_flush(self, session: Session, _context: Any) -> None:
        for obj in (*session.new, *session.dirty, *session.deleted):
            kind = _kind_of(obj)
            if kind is not None:
                self._note(session, kind)

    def _note_statement(self, state: ORMExecuteState) -> None:
        kind = _statement_kind(state)
        if kind is not None:
            self._note(state.session, kind)

    def _after_commit(self, session: Session) -> None:
        noted = session.info.pop(self._key, None)
        if noted:
            self._wake(frozenset(noted))

    def _forget(self, session: Session) -> None:
        session.info.pop(self._key, None)
