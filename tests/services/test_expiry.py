"""Expiry on a running server with test-driver hosts: retired on time, history kept."""

import asyncio
import datetime as dt

from sqlalchemy import select, update

from fogmachine.db.models import AuditEvent, Guest, GuestState, Step, User, utcnow
from fogmachine.errors import Conflict
from fogmachine.services import expiry, reservations
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest, checkout


async def wait_for(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def started_guest(srv, name="web1", owner="ann"):
    ctx = srv.ctx

    def add_user(session):
        user = User(username=owner, email=f"{owner}@example.org")
        session.add(user)
        session.flush()
        return Actor(user_id=user.id, username=owner)

    actor = await ctx.db.run(add_user)
    guest = await checkout(ctx, actor, CheckoutRequest(name=name, target="small", days=1, purpose="testing"))

    async def defined():
        g = await ctx.db.run(lambda s: s.get(Guest, guest.id))
        return g.step not in (Step.PLACING, Step.REGISTERING, Step.DEFINING, Step.BOOTING)

    assert await wait_for(defined)
    return actor, guest.id


async def domain_names(srv, host):
    return {d.name for d in await srv.ctx.hosts.get(host).list_domains()}


async def test_expired_guest_is_retired_and_kept_as_history(make_config, start_server):
    srv = await start_server(make_config(hosts={"h1": {"cpus": 8, "memory_mb": 16384}}))
    ctx = srv.ctx
    actor, gid = await started_guest(srv)
    guest = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert guest.domain_name in await domain_names(srv, "h1")
    # not yet expired: nothing happens
    assert await expiry.retire_expired(ctx) == 0
    await ctx.db.run(lambda s: s.execute(update(Guest).where(Guest.id == gid)
                                         .values(expires_at=utcnow() - dt.timedelta(seconds=1))))
    assert await srv.tasks.run_once("expiry")
    retired = await ctx.db.run(lambda s: s.get(Guest, gid))
    assert retired.step == Step.RETIRED and retired.state == GuestState.UNDEFINED
    assert retired.live_name is None and retired.retired_at is not None
    assert guest.domain_name not in await domain_names(srv, "h1")
    events = await ctx.db.run(lambda s: s.scalars(select(AuditEvent).where(AuditEvent.action == "guest.retire")).all())
    assert [(e.actor_name, e.result, e.object_name) for e in events] == [("expiry", "ok", "web1")]
    # a second pass does nothing; a retired guest cannot be extended; its name is free again
    assert await expiry.retire_expired(ctx) == 0
    try:
        await ctx.db.run(reservations.extend, ctx.config, actor, gid, 1)
        raise AssertionError("extend of a retired guest must fail")
    except Conflict as exc:
        assert "retired" in exc.message
    again = await checkout(ctx, actor, CheckoutRequest(name="web1", target="small", days=1, purpose="again"))
    assert again.id != gid


async def test_purge_forgets_old_history_only(make_config, start_server):
    srv = await start_server(make_config(retired_keep_days="2"))
    ctx = srv.ctx
    _, gid = await started_guest(srv)
    await ctx.db.run(lambda s: s.execute(update(Guest).where(Guest.id == gid)
                                         .values(expires_at=utcnow() - dt.timedelta(seconds=1))))
    assert await expiry.retire_expired(ctx) == 1
    assert await expiry.purge_history(ctx) == 0
    assert await expiry.purge_history(ctx, now=utcnow() + dt.timedelta(days=3)) == 1
    assert await ctx.db.run(lambda s: s.get(Guest, gid)) is None


async def test_unreachable_host_keeps_guest_until_it_can_be_torn_down(make_config, start_server):
    srv = await start_server(make_config(hosts={"h1": {}}))
    ctx = srv.ctx
    _, gid = await started_guest(srv)
    await ctx.db.run(lambda s: s.execute(update(Guest).where(Guest.id == gid)
                                         .values(expires_at=utcnow() - dt.timedelta(seconds=1))))
    conn = ctx.hosts.get("h1")
    real_destroy = conn.destroy

    async def broken(*args, **kwargs):
        from fogmachine.errors import HostUnreachable

        raise HostUnreachable("host h1 is down")

    conn.destroy = broken
    try:
        assert await expiry.retire_expired(ctx) == 0
        g = await ctx.db.run(lambda s: s.get(Guest, gid))
        assert g.step != Step.RETIRED
        failed = await ctx.db.run(lambda s: s.scalars(select(AuditEvent.result).where(
            AuditEvent.action == "guest.retire")).all())
        assert failed == ["failed"]
    finally:
        conn.destroy = real_destroy
    assert await expiry.retire_expired(ctx) == 1
