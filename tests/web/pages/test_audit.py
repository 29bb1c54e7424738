"""The audit log page: administrators read it, filtered and paged; everyone else is refused by the service."""

import datetime as dt
import re
from html import unescape

import pytest
from sqlalchemy import select, update

from fogmachine.db.models import AuditEvent
from fogmachine.services import audit
from fogmachine.services.actor import Actor
from fogmachine.web.pages import audit as audit_page

EVENT_ROW = re.compile(r'<tr data-event-id="(\d+)">(.*?)</tr>', re.S)


def rows(text):
    """(event id, the row's text without tags) for each event the page lists, in page order."""
    return [(int(eid), unescape(re.sub(r"<[^>]+>|\s+", " ", body))) for eid, body in EVENT_ROW.findall(text)]


async def seed(site, *events):
    """Record events through the real service; each is (actor, action, object_type, name, result, at)."""

    def add(session):
        for who, action, object_type, name, result, at in events:
            actor = Actor(site.users.get(who), who, remote_addr="198.51.100.9")
            event = audit.record(session, actor, action, object_type=object_type, object_id=name and len(name),
                                 object_name=name, result=result, message=f"{action} by {who}")
            session.flush()
            session.execute(update(AuditEvent).where(AuditEvent.id == event.id).values(at=at))

    await site.ctx.db.run(add)


async def test_admin_sees_the_action_just_done_newest_first(site):
    root = await site.as_user("root")
    await root.follow(await root.post("/admin/hosts/h2/disable"))
    home = await root.get("/admin")
    assert 'href="/admin/audit"' in home.text  # linked from the admin page and the menu
    r = await root.get("/admin/audit")
    assert r.code == 200
    listed = rows(r.text)
    assert listed, r.text[:2000]
    first = listed[0][1]
    assert "host.disable" in first and "h2" in first and "root" in first and "127.0.0.1" in first and " ok " in first
    assert [eid for eid, _ in listed] == sorted((eid for eid, _ in listed), reverse=True)
    assert "user.login" in listed[1][1]  # root's own login came before
    assert '<a href="/admin/audit" class="here" aria-current="page">Audit log</a>' in r.text


@pytest.mark.parametrize("query", ["", "?action=guest", "?since=yesterday", "?page=0"])
async def test_users_are_refused_by_the_service(site, query):
    await seed(site, ("root", "host.disable", "host", "h2", "ok", dt.datetime(2026, 5, 4, 10)))
    alice = await site.as_user("alice")
    r = await alice.get("/admin/audit" + query)
    assert r.code == 403 and "only administrators may do this" in r.text
    assert "host.disable" not in r.text and "Audit log</a>" not in r.text
    r = await site.client().get("/admin/audit" + query)
    assert r.code == 303 and r.location.startswith("/login?next=%2Fadmin%2Faudit")


async def test_filters(site):
    day = dt.datetime(2021, 5, 4, 12)  # long before any login the test makes
    await seed(site,
               ("alice", "guest.start", "guest", "web1", "ok", day - dt.timedelta(days=2)),
               ("alice", "guest.stop", "guest", "web1", "ignored", day - dt.timedelta(days=1)),
               ("bob", "guest.checkout", "guest", "bob1", "refused", day),
               ("root", "user.disable", "user", "bob", "ok", day + dt.timedelta(hours=1)),
               ("root", "host.disable", "host", "h2", "ok", day + dt.timedelta(days=1)))
    root = await site.as_user("root")

    async def shown(query):
        r = await root.get("/admin/audit?" + query)
        assert r.code == 200, r.text[:2000]
        return [text.split(" by ")[0].split()[-1] for _, text in rows(r.text)]

    assert await shown("actor=alice") == ["guest.stop", "guest.start"]
    assert await shown("action=guest") == ["guest.checkout", "guest.stop", "guest.start"]
    assert await shown("action=guest.stop") == ["guest.stop"]
    assert await shown("object_type=host") == ["host.disable"]
    assert await shown("object_type=user&actor=root&until=2022-01-01") == ["user.disable"]
    assert await shown("result=ignored") == ["guest.stop"]
    assert await shown("object_type=guest&object_id=4") == ["guest.checkout", "guest.stop", "guest.start"]
    # dates: since from the day's start, until through the day's end
    assert await shown("since=2021-05-04&until=2021-05-04") == ["user.disable", "guest.checkout"]
    assert await shown("since=2021-05-04T12:30:00Z&until=2021-05-05&action=user") == ["user.disable"]
    # 14:30 at +02:00 is 12:30 UTC: the checkout at 12:00 is before it
    assert await shown("since=2021-05-04T14:30:00%2B02:00&until=2021-05-05") == ["host.disable", "user.disable"]
    assert await shown("until=2021-05-02&actor=alice") == ["guest.start"]
    r = await root.get("/admin/audit?actor=carl")
    assert "No events match this filter." in r.text and "0 events match" in r.text
    r = await root.get("/admin/audit?actor=alice")
    assert 'value="alice"' in r.text and "2 events match" in r.text


async def test_pages_keep_the_filter(site, monkeypatch):
    monkeypatch.setattr(audit_page, "PAGE_SIZE", 2)
    start = dt.datetime(2026, 5, 1)
    await seed(site, *[("bob", "guest.extend", "guest", f"g{i}", "ok", start + dt.timedelta(hours=i))
                       for i in range(5)])
    root = await site.as_user("root")
    r = await root.get("/admin/audit?actor=bob")
    assert "5 events match" in r.text and "page 1 of 3" in r.text
    assert [t.split()[6] for _, t in rows(r.text)] == ["g4", "g3"]
    assert 'href="/admin/audit?actor=bob&amp;page=2"' in r.text and "previous" not in r.text
    r = await root.get("/admin/audit?actor=bob&page=3")
    assert [t.split()[6] for _, t in rows(r.text)] == ["g0"]
    assert 'href="/admin/audit?actor=bob&amp;page=2">previous' in r.text and ">next<" not in r.text
    r = await root.get("/admin/audit?actor=bob&page=40")  # past the end: a way back, not an error
    assert r.code == 200 and "No events on this page" in r.text
    assert 'href="/admin/audit?actor=bob&amp;page=3">previous' in r.text


@pytest.mark.parametrize(("query", "field", "message"), [
    ("since=yesterday", "since", "since must be a date such as 2026-01-31"),
    ("until=2026-13-01", "until", "until must be a date such as 2026-01-31"),
    ("since=0001-01-01", "since", "since must not be before 1970"),
    ("until=9999-12-31", "until", "until is out of range"),
    ("since=2026-05-05&until=2026-05-01", "since", "since must be earlier than until"),
    ("action=Guest%20Start", "action", "action must be an action such as guest.start or a family such as guest"),
    ("action=guest.", "action", "action must be an action"),
    ("actor=" + "x" * 65, "actor", "who is too long (at most 64 characters)"),
    ("result=" + "x" * 17, "result", "result is too long"),
    ("page=abc", None, "page must be a whole number"),
    ("page=-1", None, "page must be between 1 and 100000"),
    ("page=99999999999999999999999", None, "page must be between 1 and 100000"),
    ("actor=a%00b", None, None),  # Tornado reads control characters as blanks: an unknown actor, no error
])
async def test_bad_filter_input_is_said_on_the_page(site, query, field, message):
    await seed(site, ("root", "host.disable", "host", "h2", "ok", dt.datetime(2026, 5, 4, 10)))
    root = await site.as_user("root")
    r = await root.get("/admin/audit?" + query)
    if message is None:
        assert r.code == 200 and "No events match this filter." in r.text
        return
    assert r.code == 400
    # under the field at fault, marked and focused; a bad page number (no field of the form) at its top
    said = r.field_error("audit", field) if field is not None else r.form_error("audit")
    assert said is not None and message in said and said.endswith("; the log below is not filtered"), r.text[:3000]
    assert field is None or r.marked("audit", field)
    assert r.text.count('aria-invalid="true"') == (field is not None) and ("error", said) not in r.flashes
    assert "host.disable" in r.text  # the unfiltered log is still there


async def test_no_events_yet(site):
    root = await site.as_user("root")
    # logging in recorded an event: remove it to see the empty log
    await site.ctx.db.run(lambda s: s.execute(AuditEvent.__table__.delete()))
    r = await root.get("/admin/audit")
    assert r.code == 200 and "No events recorded yet." in r.text and "0 events" in r.text
    assert await site.ctx.db.run(lambda s: s.scalar(select(AuditEvent.id))) is None
