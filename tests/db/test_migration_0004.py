"""Migration 0004 on every database: names that the old ``$`` check let in with a trailing newline."""

from sqlalchemy import create_engine, select, text

from fogmachine.db import migrate
from fogmachine.db.models import User
from fogmachine.db.session import Database


def test_trailing_newline_names_are_renamed_or_disabled(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine, "0003")
    with engine.begin() as conn:
        for name in ("admin", "admin\n", "nl1\n"):
            conn.execute(text("INSERT INTO users (username, email, password_hash, is_admin, is_active, ssh_key, "
                              "description, notify_expiry, notify_ready, created_at) VALUES "
                              "(:n, '', '', false, true, '', '', true, true, CURRENT_TIMESTAMP)"), {"n": name})
    migrate.upgrade(engine)
    engine.dispose()
    db = Database(database_url, threads=1)
    with db.session() as s:
        rows = {u.username: u.is_active for u in s.scalars(select(User))}
    db.dispose()
    assert rows == {"admin": True, "admin\n": False, "nl1": True}
