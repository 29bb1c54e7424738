"""Expiry warnings and notices, delivered to a real SMTP server on loopback."""

import datetime as dt

import pytest
from sqlalchemy import select

from fogmachine.db import migrate
from fogmachine.db.models import Guest, GuestNotice, Step, User, utcnow
from fogmachine.db.session import Database
from fogmachine.notify import Mailer
from fogmachine.services import notices
from tests.support.smtp import smtp_server


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


def add_guest(db, name, *, hours_left, step=Step.READY, notify=True, email="ann@example.org"):
    with db.session() as s:
        owner = s.scalar(select(User).where(User.username == "ann"))
        if owner is None:
            owner = User(username="ann", email=email, notify_expiry=notify, notify_ready=notify)
            s.add(owner)
        g = Guest(name=name, live_name=name, domain_name=name, owner=owner, step=step, ip="10.0.0.5",
                  hostname=f"{name}.lab", expires_at=utcnow() + dt.timedelta(hours=hours_left))
        s.add(g)
        s.flush()
        return g.id


async def test_warnings_ready_and_retired_sent_once(make_config, smtp):
    inbox, port = smtp
    config = make_config(smtp_host="127.0.0.1", smtp_port=str(port))
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    mailer = Mailer(config)
    try:
        add_guest(db, "long", hours_left=200)
        add_guest(db, "soon", hours_left=20)           # inside 72 h and 24 h: only the 24 h warning
        gid = add_guest(db, "close", hours_left=0.5, step=Step.BOOTING)
        assert await notices.run(db, config, mailer) == 4  # ready x2 (long, soon), warn soon, warn close
        subjects = sorted(inbox.subjects())
        assert len(subjects) == 4
        assert [s.split(" expires in ")[0] for s in subjects if " expires in " in s] == [
            "[Fogmachine] close", "[Fogmachine] soon"]
        assert "[Fogmachine] long is ready" in subjects and "[Fogmachine] soon is ready" in subjects
        soon = next(m for m in inbox.messages if m["Subject"].startswith("[Fogmachine] soon expires"))
        assert "/api/v1/guests/" in soon.get_payload() and "extend" in soon.get_payload()
        # a second pass sends nothing new
        assert await notices.run(db, config, mailer) == 0
        with db.session() as s:
            kinds = {(n.guest_id, n.kind) for n in s.scalars(select(GuestNotice))}
        assert (gid, "warn-1h") in kinds
        # retired: one message
        with db.session() as s:
            g = s.get(Guest, gid)
            g.step, g.retired_at, g.live_name = Step.RETIRED, utcnow(), None
        assert await notices.run(db, config, mailer) == 1
        assert inbox.subjects()[-1] == "[Fogmachine] close was retired"
        msg = inbox.messages[-1]
        assert msg["To"] == "ann@example.org"
    finally:
        mailer.close()
        db.dispose()


async def test_opt_out_and_smtp_down_retries(make_config, smtp):
    inbox, port = smtp
    config = make_config(smtp_host="127.0.0.1", smtp_port="1")  # nothing listens there
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    mailer = Mailer(config)
    try:
        add_guest(db, "g1", hours_left=10, notify=True)
        assert await notices.run(db, config, mailer) == 0
        with db.session() as s:  # undelivered notices were removed; only the skipped 72 h warning stays
            assert [(n.kind, n.delivered) for n in s.scalars(select(GuestNotice))] == [("warn-72h", True)]
        # SMTP back: the same notices go out now
        up = Mailer(make_config(smtp_host="127.0.0.1", smtp_port=str(port)))
        assert await notices.run(db, up.config, up) == 2
        up.close()
        with db.session() as s:
            s.scalar(select(User)).notify_expiry = False
            s.scalar(select(User)).notify_ready = False
        add_guest(db, "g2", hours_left=10)
        assert await notices.run(db, config, mailer) == 0
        assert len(inbox.messages) == 2
    finally:
        mailer.close()
        db.dispose()


def _environment(db, step: str, hours_left: float, *names: str) -> int:
    """An environment of ann's whose guests (all ready) share its lease."""
    from fogmachine.db.models import Environment

    with db.session() as s:
        owner = s.scalar(select(User).where(User.username == "ann"))
        if owner is None:
            owner = User(username="ann", email="ann@example.org")
            s.add(owner)
        expires = utcnow() + dt.timedelta(hours=hours_left)
        env = Environment(name="lab1", live_name="lab1", owner=owner, template_name="db-web", spec="{}",
                          purpose="tests", expires_at=expires, step=step, tier=1)
        s.add(env)
        for tier, name in enumerate(names):
            s.add(Guest(name=name, live_name=name, domain_name=name, owner=owner, step=Step.READY,
                        ip=f"10.0.0.{tier + 5}", hostname=f"{name}.lab", expires_at=expires, environment=env,
                        tier=tier, tier_index=0))
        s.flush()
        return env.id


async def test_an_environments_guests_get_one_mail_of_each_kind(make_config, smtp, database_url):
    """One lease, one mail: ready when every tier is, the warning and the retirement about the environment,
    each guest's notice still recorded once (on each database: the notices are writes)."""
    from fogmachine.db.models import Environment

    inbox, port = smtp
    config = make_config(smtp_host="127.0.0.1", smtp_port=str(port), database_connection=database_url)
    db = Database(config.database_url, threads=2)
    migrate.ensure_schema(db.engine)
    mailer = Mailer(config)
    try:
        env_id = _environment(db, "provisioning", 20, "lab1-db1", "lab1-web1")
        # its guests are ready but the environment is not: a warning, and no "ready" yet
        assert await notices.run(db, config, mailer) == 1
        assert len(inbox.messages) == 1 and inbox.subjects()[0].startswith("[Fogmachine] environment lab1 expires in ")
        body = inbox.messages[0].get_payload()
        assert "lab1-db1: 10.0.0.5" in body and "lab1-web1: 10.0.0.6" in body
        assert f"/api/v1/environments/{env_id}/extend" in body
        with db.session() as s:
            s.get(Environment, env_id).step = "ready"
        assert await notices.run(db, config, mailer) == 1
        assert inbox.subjects()[-1] == "[Fogmachine] environment lab1 is ready"
        assert await notices.run(db, config, mailer) == 0  # once
        with db.session() as s:
            kinds = sorted((n.guest_id, n.kind, n.delivered) for n in s.scalars(select(GuestNotice)))
            ids = sorted(g.id for g in s.scalars(select(Guest)))
        assert kinds == sorted((gid, kind, True) for gid in ids for kind in ("ready", "warn-24h", "warn-72h"))
        with db.session() as s:
            for guest in s.scalars(select(Guest)):
                guest.step, guest.retired_at, guest.live_name = Step.RETIRED, utcnow(), None
        assert await notices.run(db, config, mailer) == 1
        assert inbox.subjects()[-1] == "[Fogmachine] environment lab1 was retired"
        assert len(inbox.messages) == 3
    finally:
        mailer.close()
        db.dispose()
