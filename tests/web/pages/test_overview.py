"""The overview (public capacity, your guests) and the hosts page (bars, states, the guests on each host)."""

from sqlalchemy import update

from fogmachine.db.models import Host


def section(text, marker, length=1500):
    start = text.index(marker)
    return text[start:start + length]


async def test_anonymous_overview_shows_capacity_only(site):
    await site.guest("alice", "web1")
    r = await site.client().get("/")
    assert r.code == 200 and "Capacity" in r.text and 'data-host="h1"' in r.text and 'data-host="h2"' in r.text
    assert "web1" not in r.text and "Your guests" not in r.text and 'href="/login"' in r.text


async def test_overview_lists_only_my_guests(site):
    await site.guest("alice", "web1")
    await site.guest("bob", "bob1")
    r = await (await site.as_user("alice")).get("/")
    assert "Your guests" in r.text and "web1" in r.text and "bob1" not in r.text
    r = await (await site.as_user("root")).get("/")
    assert "You have no guests" in r.text  # an administrator's own guests: none


async def test_hosts_page_bars_states_and_guests(site):
    await site.guest("alice", "web1")
    await site.guest("bob", "bob1")
    await site.ctx.db.run(lambda s: s.execute(update(Host).where(Host.name == "h2").values(enabled=False)))
    alice = await site.as_user("alice")
    r = await alice.get("/hosts")
    assert r.code == 200
    h1 = section(r.text, 'data-host="h1"')
    assert "state-up" in h1 and 'data-bar="memory_used_pct"' in h1 and 'data-bar="cpu_used_pct"' in h1
    assert "16 GiB" in h1 and "guest(s)" in h1
    assert "state-disabled" in section(r.text, 'data-host="h2"', 300)
    assert "web1" in r.text and "bob1" not in r.text and "Only your own guests" in r.text
    r = await (await site.as_user("root")).get("/hosts")
    assert "web1" in r.text and "bob1" in r.text and ">alice<" in r.text
    r = await site.client().get("/hosts")
    assert r.code == 303 and r.location == "/login?next=%2Fhosts"


async def test_unknown_page_is_a_404_in_the_layout(site):
    c = await site.as_user("alice")
    r = await c.get("/no/such/page")
    assert r.code == 404 and "Not found" in r.text and "My reservations" in r.text
    r = await c.get("/guests/99999/row")
    assert r.code == 404 and "no guest with id 99999" in r.text
