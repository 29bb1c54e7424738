"""The guest lists' query on each database: what an actor may see, the search, the filters, every sort
both ways (guests without a host, an owner or an expiry last either way), and paging with its total."""

from __future__ import annotations

import datetime as dt

import pytest

from fogmachine.db.models import Guest, GuestState, Host, Step, User
from fogmachine.errors import ValidationError
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GUEST_SORTS, GuestFilter, list_guests

T0 = dt.datetime(2026, 5, 1, 12, 0)
# name, owner, host, state, ip, hostname, expires in hours from T0 (None: never), managed
GUESTS = [
    ("web1", "alice", "h2", GuestState.RUNNING, "10.0.0.7", "web1.lab.example", 30, True),
    ("db_1", "alice", "h1", GuestState.PAUSED, "10.0.0.12", "", 5, True),
    ("beta", "alice", None, GuestState.UNDEFINED, "", "", None, True),
    ("web2", "bob", "h1", GuestState.RUNNING, "10.0.1.7", "WEB2.lab.example", 2, True),
    ("alpha", "bob", "h2", GuestState.SHUTOFF, "", "", 70, True),
    ("Zulu", None, "h1", GuestState.RUNNING, "192.0.2.9", "", None, False),  # a domain found on h1
]


@pytest.fixture
def seeded(make_ctx):
    """Users alice, bob and root, hosts h1 and h2, the guests above made in that order, one retired guest."""
    ctx = make_ctx()
    with ctx.db.session() as s:
        users = {name: User(username=name, password_hash="x", is_admin=name == "root")
                 for name in ("alice", "bob", "root")}
        hosts = {name: Host(name=name, uri=f"test:///{name}", virt_type="test") for name in ("h1", "h2")}
        s.add_all([*users.values(), *hosts.values()])
        for i, (name, owner, host, state, ip, hostname, hours, managed) in enumerate(GUESTS):
            s.add(Guest(name=name, domain_name=name, owner=users[owner] if owner else None,
                        host=hosts[host] if host else None, state=state, step=Step.READY if host else Step.FAILED,
                        ip=ip, hostname=hostname, managed=managed, mac=f"52:54:00:00:00:{i:02x}",
                        expires_at=None if hours is None else T0 + dt.timedelta(hours=hours),
                        created_at=T0 - dt.timedelta(days=len(GUESTS) - i)))
            s.flush()  # one at a time: the ids are the order they were made in
        s.add(Guest(name="old", owner=users["alice"], host=hosts["h1"], step=Step.RETIRED,
                    retired_at=T0 - dt.timedelta(days=1), created_at=T0 - dt.timedelta(days=9)))
        s.flush()
        actors = {name: Actor(u.id, name, u.is_admin) for name, u in users.items()}
    return ctx, actors


def names(ctx, actor, **asked):
    with ctx.db.session() as s:
        guests, total = list_guests(s, actor, GuestFilter(**asked))
        return [g.name for g in guests], total


def test_a_user_sees_only_their_own_guests_whatever_they_ask(seeded):
    ctx, actors = seeded
    alice = actors["alice"]
    assert names(ctx, alice) == (["web1", "db_1", "beta"], 3)
    for asked in ({"owner": "bob"}, {"search": "web2"}, {"search": "10.0.1"}, {"host": "h1", "search": "z"},
                  {"include_unmanaged": True, "search": "zulu"}, {"sort": "owner", "owner": "bob"}):
        assert names(ctx, alice, **asked) == ([], 0), asked
    assert names(ctx, alice, include_unmanaged=True, host="h1") == (["db_1"], 1)
    assert names(ctx, actors["bob"], search="web") == (["web2"], 1)
    # administrators see everyone's, and the domains nobody checked out only when asked
    assert names(ctx, actors["root"]) == (["web1", "db_1", "beta", "web2", "alpha"], 5)
    assert names(ctx, actors["root"], include_unmanaged=True)[1] == 6


def test_search_matches_part_of_the_name_hostname_or_address_in_any_case(seeded):
    ctx, actors = seeded
    root = {"include_unmanaged": True}
    assert names(ctx, actors["root"], search="WEB", **root)[0] == ["web1", "web2"]
    assert names(ctx, actors["root"], search="lab.EXAMPLE", **root)[0] == ["web1", "web2"]  # the hostnames
    assert names(ctx, actors["root"], search=".0.7", **root)[0] == ["web1"]  # the address
    assert names(ctx, actors["root"], search="10.0.", **root)[0] == ["web1", "db_1", "web2"]
    assert names(ctx, actors["root"], search="zULu", **root)[0] == ["Zulu"]
    assert names(ctx, actors["root"], search="  beta ", **root)[0] == ["beta"]  # the blanks around go
    # LIKE's wildcards are characters like any other
    assert names(ctx, actors["root"], search="_", **root)[0] == ["db_1"]
    assert names(ctx, actors["root"], search="%", **root)[0] == []
    assert names(ctx, actors["root"], search="b_1", **root)[0] == ["db_1"]
    assert names(ctx, actors["root"], search="e_a", **root)[0] == []  # not "beta" through a wildcard


def test_filters_combine(seeded):
    ctx, actors = seeded
    root = actors["root"]
    assert names(ctx, root, state="running")[0] == ["web1", "web2"]
    assert names(ctx, root, state="running", include_unmanaged=True)[0] == ["web1", "web2", "Zulu"]
    assert names(ctx, root, host="h1")[0] == ["db_1", "web2"]
    assert names(ctx, root, host="h1", owner="bob", state="running")[0] == ["web2"]
    assert names(ctx, root, owner="alice", search="web")[0] == ["web1"]
    assert names(ctx, root, host="h3") == ([], 0)
    assert names(ctx, root, owner="alice", step=Step.RETIRED)[0] == ["old"]


@pytest.mark.parametrize(("sort", "ascending", "empty"), [
    ("created", ["web1", "db_1", "beta", "web2", "alpha", "Zulu"], 0),
    ("name", ["alpha", "beta", "db_1", "web1", "web2", "Zulu"], 0),  # in any case, on every database
    ("state", ["db_1", "web1", "web2", "Zulu", "alpha", "beta"], 0),  # paused, running (by age), shutoff, ...
    ("host", ["db_1", "web2", "Zulu", "web1", "alpha", "beta"], 1),  # beta is on no host
    ("owner", ["web1", "db_1", "beta", "web2", "alpha", "Zulu"], 1),  # Zulu has no owner
    ("expires", ["web2", "db_1", "web1", "alpha", "beta", "Zulu"], 2),  # beta and Zulu never expire
])
def test_every_sort_both_ways_with_the_empty_last(seeded, sort, ascending, empty):
    """The other way round is the same list turned round, except that what has no value stays last
    (ties too turn round: the newest first)."""
    ctx, actors = seeded
    asked = {"sort": sort, "include_unmanaged": True}
    assert names(ctx, actors["root"], **asked)[0] == ascending
    valued, empties = ascending[:len(ascending) - empty], ascending[len(ascending) - empty:]
    assert names(ctx, actors["root"], descending=True, **asked)[0] == valued[::-1] + empties[::-1]


def test_retired_guests_sort_by_retirement(seeded):
    ctx, actors = seeded
    with ctx.db.session() as s:
        alice = s.query(User).filter_by(username="alice").one()
        s.add(Guest(name="older", owner=alice, step=Step.RETIRED, retired_at=T0 - dt.timedelta(days=3)))
        s.add(Guest(name="newest", owner=alice, step=Step.RETIRED, retired_at=T0))
    newest_first = names(ctx, actors["alice"], step=Step.RETIRED, sort="retired", descending=True)
    assert newest_first == (["newest", "old", "older"], 3)


def test_pages_and_the_total(seeded):
    ctx, actors = seeded
    root = actors["root"]
    assert names(ctx, root, sort="name", limit=2) == (["alpha", "beta"], 5)
    assert names(ctx, root, sort="name", limit=2, offset=2) == (["db_1", "web1"], 5)
    assert names(ctx, root, sort="name", limit=2, offset=4) == (["web2"], 5)
    assert names(ctx, root, sort="name", limit=2, offset=6) == ([], 5)
    assert names(ctx, root, search="web", limit=1, offset=1) == (["web2"], 2)  # the total is what matches


@pytest.mark.parametrize(("asked", "field"), [({"sort": "password_hash"}, "sort"), ({"limit": 0}, "limit"),
                                              ({"limit": 1001}, "limit"), ({"offset": -1}, "offset")])
def test_what_cannot_be_asked_is_refused(seeded, asked, field):
    ctx, actors = seeded
    with ctx.db.session() as s, pytest.raises(ValidationError) as refused:
        list_guests(s, actors["root"], GuestFilter(**asked))
    assert refused.value.details["field"] == field
    assert set(GUEST_SORTS) == {"created", "name", "state", "host", "owner", "expires", "retired"}
