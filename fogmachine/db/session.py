"""Engines and sessions: one session per unit of work, run off the IOLoop.

Why threads and not an async driver: the three databases Fogmachine supports
have mature synchronous drivers (sqlite3, mysqlclient, psycopg) and the same
SQLAlchemy code serves the server, the CLI and the tests. Each unit of work is
a short function ``fn(session)`` that ``Database.run`` executes on a bounded
thread pool with a session of its own, committing on success and rolling back
on error. The IOLoop only waits on a future, so a slow query never stalls it;
the pool bounds how many connections one process holds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from fogmachine.errors import Conflict, DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
LOCK_OPTION = "fm_write_lock"


def make_engine(url: str, *, connect_timeout: float = 10, pool_size: int = 8) -> Engine:
    """An engine tuned per backend: WAL and a busy timeout on SQLite, connect timeouts elsewhere."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    # A server connection can die while pooled (restart, idle timeout): ping it when checked out. A SQLite
    # connection is a file handle that cannot; its ping was an eighth of a forced resync's database time.
    kwargs: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["connect_args"] = {"connect_timeout": max(1, int(connect_timeout))}
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = 4
        kwargs["pool_recycle"] = 3600
    if backend in ("mysql", "mariadb"):
        kwargs["isolation_level"] = "READ COMMITTED"
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Several threads and processes share one file: WAL lets readers run
            # beside a writer, foreign keys are off by default in SQLite. The
            # driver's own implicit BEGIN is turned off so that ours below rules.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # SQLite has no row locks: a unit of work that reads then writes
            # capacity (placement) asks for the write lock at BEGIN, so such
            # transactions queue instead of failing when they upgrade.
            immediate = conn.get_execution_options().get(LOCK_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    return engine


def is_connection_error(exc: BaseException) -> bool:
    """True when the database could not be reached, as opposed to a bad statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        markers = ("connect", "gone away", "lost connection", "server closed", "terminating connection",
                   "connection refused", "no route", "timeout expired", "shutdown in progress")
        return any(m in text for m in markers)
    return False


# MariaDB's ER_LOCK_DEADLOCK; PostgreSQL's deadlock_detected and serialization_failure
MYSQL_DEADLOCK = 1213
POSTGRES_RETRY_STATES = ("40P01", "40001")
DEADLOCK_RETRIES = 3


def _is_deadlock_itself(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in POSTGRES_RETRY_STATES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == MYSQL_DEADLOCK and "mysql" in type(orig).__module__.lower()


def is_deadlock(exc: BaseException) -> bool:
    """True when the database rolled this transaction back to break a deadlock (run it again).

    Also when the error at hand was raised while a deadlock was being handled: inside a savepoint
    (``begin_nested``) MariaDB's deadlock rolls the WHOLE transaction back, so the savepoint's own
    rollback then fails with 1305 "SAVEPOINT ... does not exist", and that error, not the deadlock,
    reaches the caller (found by two processes claiming environments while tiers started)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _is_deadlock_itself(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class Database:
    """The engine, a session factory and the thread pool that runs units of work."""

    def __init__(self, url: str, *, threads: int = 8, connect_timeout: float = 10) -> None:
        self.url = url
        self.engine = make_engine(url, connect_timeout=connect_timeout, pool_size=threads)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="fm-db")
        # One thread of its own for the process's heartbeat (``run_apart``): a liveness signal that waits
        # in the pool's queue behind a burst of checkouts lapses, and other processes then take this
        # one for dead. Its connection comes from the engine's overflow.
        self.apart = ThreadPoolExecutor(1, thread_name_prefix="fm-db-apart")
        self.backend = self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back on an exception."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def run_sync(self, fn: Callable[..., T], *args: Any, lock: bool = False, **kwargs: Any) -> T:
        """Run ``fn(session, ...)`` in one transaction.

        ``lock`` takes SQLite's write lock at BEGIN, for units that read and then
        write; on MariaDB and PostgreSQL ``fn`` locks the rows it needs itself.
        On SQLite, an unlocked unit that turns out to write after another
        connection committed fails with "database is locked" (its read snapshot
        is stale); it is run once more under the write lock, which cannot fail
        that way. So ``fn`` must be database work only, safe to run again. The same holds when a
        guest row it read was changed by someone else before its write (``StaleDataError``, see
        ``Guest.version``): it is run once more on a fresh read, and a second clash is a Conflict.
        And when MariaDB or PostgreSQL chose it as a deadlock's victim (two units that lock the same
        rows in opposite orders: marking a guest failed checks its host row's key while a resync holds
        the host row and waits for the guest's), the server has rolled it back whole, which is what
        "try restarting transaction" asks for: it is run again, up to DEADLOCK_RETRIES times.
        """
        deadlocks = 0
        while True:
            try:
                return self._run_once(fn, args, kwargs, lock)
            except DBAPIError as exc:
                if not is_deadlock(exc) or deadlocks >= DEADLOCK_RETRIES:
                    raise
                deadlocks += 1
                log.info("%s lost a deadlock (try %d); running it again",
                         getattr(fn, "__name__", fn), deadlocks)
                time.sleep(random.uniform(0.005, 0.05) * deadlocks)

    def _run_once(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], lock: bool) -> T:
        try:
            try:
                return self._attempt(fn, args, kwargs, lock)
            except OperationalError as exc:
                if lock or self.backend != "sqlite" or "database is locked" not in str(exc.orig):
                    raise
                return self._attempt(fn, args, kwargs, True)
            except StaleDataError:
                # A versioned row (a guest) changed between this unit's read and its write: decide again
                # on a fresh read, once; a second clash in a row is the caller's 409.
                log.info("a row changed under %s; running it again on a fresh read", getattr(fn, "__name__", fn))
                try:
                    return self._attempt(fn, args, kwargs, lock)
                except StaleDataError:
                    raise Conflict("someone else changed it at the same moment; try again") from None
        except (OperationalError, DBAPIError) as exc:
            if is_connection_error(exc):
                log.warning("database unreachable: %s", type(exc.orig or exc).__name__)
                raise DatabaseUnavailable("the database is unreachable; try again shortly") from exc
            raise

    def _attempt(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], lock: bool) -> T:
        with self.session() as session:
            if lock:
                session.connection(execution_options={LOCK_OPTION: True})
            return fn(session, *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, lock: bool = False, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` in one transaction on the pool."""
        return await self._run_on(self.executor, fn, args, kwargs, lock)

    async def run_apart(self, fn: Callable[..., T], *args: Any, lock: bool = False, **kwargs: Any) -> T:
        """Like ``run``, on a thread of its own that never queues behind the pool's units of work."""
        return await self._run_on(self.apart, fn, args, kwargs, lock)

    async def _run_on(self, executor: ThreadPoolExecutor, fn: Callable[..., T], args: tuple[Any, ...],
                      kwargs: dict[str, Any], lock: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: self.run_sync(fn, *args, lock=lock, **kwargs))

    def dispose(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.apart.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()
