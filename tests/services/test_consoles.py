"""services/consoles.py on each database: who may open a console, the audit lines, one serial holder per
guest, and the VNC tickets (once, in time, for that session and guest only)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from fogmachine.db.models import AuditEvent, Guest, Host, Step
from fogmachine.errors import Conflict, NotFound, PermissionDenied
from fogmachine.services import consoles
from fogmachine.services.actor import Actor
from fogmachine.services.consoles import ConsoleBroker, find_target, record_close, record_open
from fogmachine.services.users import create_user
from tests.web.pages.conftest import password_hash


@pytest.fixture
async def site(make_ctx):
    ctx = make_ctx()
    ids = {}
    for name in ("ann", "bob", "root"):
        user = await ctx.db.run(create_user, name, "x", is_admin=name == "root", password_hash=password_hash())
        ids[name] = user.id

    def rows(s):
        host = Host(name="h1", uri="test:///default", virt_type="test")
        s.add(host)
        s.flush()
        web1 = Guest(name="web1", live_name="web1", domain_name="web1", owner_id=ids["ann"], host_id=host.id,
                     step=Step.READY)
        bare = Guest(name="bare", live_name="bare", domain_name="", owner_id=ids["ann"], step=Step.PLACING)
        s.add_all([web1, bare])
        s.flush()
        return web1.id, bare.id

    web1, bare = await ctx.db.run(rows)
    actors = {name: Actor(user_id=uid, username=name, is_admin=name == "root", remote_addr="192.0.2.7",
                          session_id=uid * 10) for name, uid in ids.items()}
    return ctx, actors, web1, bare


async def test_owner_and_admin_may_open_others_find_no_guest(site):
    ctx, actors, web1, bare = site
    for who in ("ann", "root"):
        target = await ctx.db.run(find_target, actors[who], web1)
        assert (target.guest_name, target.host_name, target.domain_name) == ("web1", "h1", "web1")
    with pytest.raises(NotFound):
        await ctx.db.run(find_target, actors["bob"], web1)
    with pytest.raises(NotFound):
        await ctx.db.run(find_target, actors["ann"], 999_999)
    with pytest.raises(Conflict, match="no domain on a host yet"):
        await ctx.db.run(find_target, actors["ann"], bare)


async def test_opening_and_closing_are_audited(site):
    ctx, actors, web1, _ = site
    target = await ctx.db.run(find_target, actors["ann"], web1)
    await ctx.db.run(record_open, actors["ann"], target, "serial")
    await ctx.db.run(record_open, actors["root"], target, "serial", took_over=True)
    await ctx.db.run(record_close, actors["ann"], target, "serial", 12.4, "taken over by root")
    await ctx.db.run(record_close, actors["root"], target, "vnc", 3, "closed by the browser")
    events = await ctx.db.run(lambda s: [(e.action, e.actor_name, e.object_type, e.object_id, e.object_name,
                                          e.message, e.remote_addr)
                                         for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))])
    assert events == [
        ("console.open", "ann", "guest", str(web1), "web1", "serial console", "192.0.2.7"),
        ("console.open", "root", "guest", str(web1), "web1", "serial console, taken over from another session",
         "192.0.2.7"),
        ("console.close", "ann", "guest", str(web1), "web1", "serial console, open 12 s: taken over by root",
         "192.0.2.7"),
        ("console.close", "root", "guest", str(web1), "web1", "vnc console, open 3 s: closed by the browser",
         "192.0.2.7"),
    ]


class Holder:
    def __init__(self) -> None:
        self.lost_to: list[str] = []

    def taken_over(self, by: str) -> None:
        self.lost_to.append(by)


def test_one_serial_holder_per_guest_unless_taken_over():
    broker = ConsoleBroker()
    first, second, third = Holder(), Holder(), Holder()
    assert broker.claim(1, first, take_over=False, by="ann") is False
    assert broker.claim(2, third, take_over=False, by="ann") is False  # another guest: no conflict
    with pytest.raises(Conflict) as info:
        broker.claim(1, second, take_over=False, by="root")
    assert info.value.status == 409 and info.value.details == {"take_over": True}
    assert broker.holder(1) is first and first.lost_to == []
    assert broker.claim(1, second, take_over=True, by="root") is True
    assert first.lost_to == ["root"] and broker.holder(1) is second
    broker.release(1, first)  # the loser's late release leaves the new holder alone
    assert broker.holder(1) is second
    broker.release(1, second)
    assert broker.holder(1) is None
    assert broker.claim(1, first, take_over=False, by="ann") is False


def test_tickets_work_once_in_time_for_their_session_and_guest_only():
    now = [1000.0]
    broker = ConsoleBroker(ttl=30, clock=lambda: now[0])
    ann = Actor(user_id=1, username="ann", session_id=11)
    ann_elsewhere = Actor(user_id=1, username="ann", session_id=12)
    bob = Actor(user_id=2, username="bob", session_id=21)

    ticket = broker.issue(ann, 5)
    assert len(ticket) >= 32 and ticket != broker.issue(ann, 5)
    broker.redeem(ticket, ann, 5)
    with pytest.raises(PermissionDenied, match="unknown, used or expired"):
        broker.redeem(ticket, ann, 5)

    for thief, guest in ((ann_elsewhere, 5), (bob, 5), (ann, 6)):
        stolen = broker.issue(ann, 5)
        with pytest.raises(PermissionDenied, match="another session or guest"):
            broker.redeem(stolen, thief, guest)
        with pytest.raises(PermissionDenied):  # a leaked ticket is gone, for its owner too
            broker.redeem(stolen, ann, 5)

    late = broker.issue(ann, 5)
    now[0] += 30.5
    with pytest.raises(PermissionDenied, match="expired"):
        broker.redeem(late, ann, 5)
    with pytest.raises(PermissionDenied, match="login session"):
        broker.issue(Actor(user_id=1, username="ann"), 5)  # a bearer token has no session to bind to
    fresh = broker.issue(ann, 5)
    assert list(broker._tickets) == [fresh]  # issuing forgets the expired ones: unredeemed tickets do not pile up


async def test_a_ticket_needs_a_running_graphical_console(site):
    """Without hosts the context cannot reach one: the service says so rather than issuing a dead ticket."""
    ctx, actors, web1, _ = site
    with pytest.raises(RuntimeError, match="without hosts"):
        await consoles.vnc_ticket(ctx, actors["ann"], web1)
    with pytest.raises(NotFound):
        await consoles.vnc_ticket(ctx, actors["bob"], web1)
