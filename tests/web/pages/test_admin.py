"""The administrators' page: all guests with owners, users and host maintenance; refused to everyone else."""

import re

import pytest
from sqlalchemy import select

from fogmachine.db.models import Host, User
from fogmachine.services.users import create_user
from fogmachine.web.pages import userlist
from tests.web.pages.conftest import PASSWORD, password_hash


async def user_row(site, name):
    return await site.ctx.db.run(lambda s: s.scalar(select(User).where(User.username == name)))


async def test_admin_sees_everything_with_owners(site):
    await site.guest("alice", "web1")
    await site.guest("bob", "bob1")
    root = await site.as_user("root")
    r = await root.get("/admin")
    assert r.code == 200
    for text in ("web1", "bob1", ">alice<", ">bob<", 'data-host="h1"', 'data-host="h2"', "Make admin"):
        assert text in r.text, text


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin"), ("POST", "/admin/users"), ("POST", "/admin/users/{bob}/make-admin"),
    ("POST", "/admin/users/{bob}/disable"), ("POST", "/admin/hosts/h1/disable"), ("POST", "/admin/hosts/h1/enable"),
])
async def test_users_are_refused(site, method, path):
    alice = await site.as_user("alice")
    path = path.format(bob=site.users["bob"])
    if method == "GET":
        r = await alice.get(path)
    else:
        r = await alice.post(path, {"username": "mallory", "password": "longer than enough", "is_admin": "yes"})
    assert r.code == 403 and "only administrators may do this" in r.text
    bob = await user_row(site, "bob")
    assert not bob.is_admin and bob.is_active and await user_row(site, "mallory") is None
    assert await site.ctx.db.run(lambda s: s.scalar(select(Host.enabled).where(Host.name == "h1")))
    r = await site.client().get("/admin")
    assert r.code == 303 and r.location == "/login?next=%2Fadmin"


async def test_make_admin_disable_enable_users(site):
    root = await site.as_user("root")
    bob_id = site.users["bob"]
    bob = await site.as_user("bob")
    page = await root.follow(await root.post(f"/admin/users/{bob_id}/make-admin"))
    assert ("ok", "bob is now an administrator.") in page.flashes and (await user_row(site, "bob")).is_admin
    assert (await bob.get("/admin")).code == 200  # takes effect on the next request
    page = await root.follow(await root.post(f"/admin/users/{bob_id}/revoke-admin"))
    assert ("ok", "bob is no longer an administrator.") in page.flashes
    page = await root.follow(await root.post(f"/admin/users/{bob_id}/disable"))
    assert ("ok", "bob is disabled: they can no longer log in.") in page.flashes
    r = await bob.get("/guests")  # the open session ends at once
    assert r.code == 303 and r.location.startswith("/login")
    assert (await site.client().post("/login", {"username": "bob", "password": PASSWORD})).code == 401
    page = await root.follow(await root.post(f"/admin/users/{bob_id}/enable"))
    assert ("ok", "bob is enabled again.") in page.flashes
    assert (await site.client().post("/login", {"username": "bob", "password": PASSWORD})).code == 303


async def test_admin_cannot_lock_themselves_out(site):
    root = await site.as_user("root")
    for op, message in (("disable", "you cannot disable your own account"),
                        ("revoke-admin", "you cannot revoke your own administrator rights")):
        r = await root.post(f"/admin/users/{site.users['root']}/{op}")
        assert r.code == 403 and message in r.text
    root_row = await user_row(site, "root")
    assert root_row.is_admin and root_row.is_active
    r = await root.post("/admin/users/99999/disable")
    assert r.code == 404


async def test_create_user(site):
    root = await site.as_user("root")
    r = await root.post("/admin/users", {"username": "dora", "email": "dora@example.org",
                                         "password": "longer than enough", "is_admin": "yes"})
    assert ("ok", "Created administrator dora.") in (await root.follow(r)).flashes
    dora = await user_row(site, "dora")
    assert dora.is_admin and dora.email == "dora@example.org"



async def test_a_refused_new_user_comes_back_under_its_field_once(site):
    """It writes (the refusal of a taken name is checked against the table): on each database. Post, redirect,
    get: the users' section with "Create a user" open, the message under the field at fault, what was typed
    except the password; a reload is a clean form; nothing is made."""
    root = await site.as_user("root")
    cases = [
        ({"username": "alice", "email": "a2@example.org", "password": "longer than enough", "is_admin": "yes"},
         "username", "user alice already exists"),
        ({"username": "eve", "email": "eve@example.org", "password": "short"}, "password", "at least 8 characters"),
        ({"username": "eve", "email": "eve at example", "password": "longer than enough"}, "email",
         "email is not a valid address"),
        ({"username": "-eve", "email": "", "password": "longer than enough"}, "username", "username must be"),
    ]
    for fields, field, message in cases:
        page = await root.refused("/admin/users", fields, "/admin")
        assert message in (page.field_error("new-user", field) or ""), (fields, page.text[-4000:])
        assert page.marked("new-user", field) and '<details class="card" open>' in page.text
        assert page.field_value("username") == fields["username"] and page.field_value("email") == fields["email"]
        assert page.field_value("password") == "" and fields["password"] not in page.text
        assert ('name="is_admin" value="yes" checked' in page.text) == ("is_admin" in fields)
        again = await root.get("/admin")
        assert "aria-invalid" not in again.text and '<details class="card" open>' not in again.text
    assert await user_row(site, "eve") is None and await user_row(site, "-eve") is None
    assert not (await user_row(site, "alice")).is_admin


async def test_host_maintenance(site):
    root = await site.as_user("root")
    page = await root.follow(await root.post("/admin/hosts/h2/disable"))
    assert page.flashes[0][0] == "ok" and "h2 is disabled for maintenance" in page.flashes[0][1]
    assert 'action="/admin/hosts/h2/enable"' in page.text
    alice = await site.as_user("alice")
    hosts_page = await alice.get("/hosts")
    start = hosts_page.text.index('data-host="h2"')
    assert "disabled" in hosts_page.text[start:start + 400]
    page = await root.follow(await root.post("/admin/hosts/h2/enable"))
    assert ("ok", "Host h2 takes new guests again.") in page.flashes
    r = await root.post("/admin/hosts/nope/disable")
    assert r.code == 404 and "no host named nope" in r.text


@pytest.mark.parametrize("path", ["/admin/users", "/admin/users/{bob}/disable", "/admin/hosts/h1/disable"])
async def test_admin_forms_need_xsrf(site, path):
    root = await site.as_user("root")
    r = await root.post(path.format(bob=site.users["bob"]), {"username": "x1", "password": "longer than enough"},
                        xsrf=None)
    assert r.code == 403
    assert (await user_row(site, "bob")).is_active and await user_row(site, "x1") is None
    assert await site.ctx.db.run(lambda s: s.scalar(select(Host.enabled).where(Host.name == "h1")))


USER_ROW = re.compile(r'<tr data-user-id="\d+" class="[^"]*">\s*<td data-label="User"><strong>([^<]+)</strong>')


def listed(html):
    return USER_ROW.findall(html)


async def test_the_user_list_searches_filters_sorts_and_pages_in_the_url(site, monkeypatch):
    for name, email in (("carol", "carol@lab.example"), ("dan_x", "dan@example.org")):
        await site.ctx.db.run(create_user, name, PASSWORD, email=email, password_hash=password_hash())
    await site.guest("bob", "b1")
    await site.guest("bob", "b2")
    await site.guest("alice", "a1")
    root = await site.as_user("root")
    await root.post(f"/admin/users/{site.users['alice']}/disable", {"confirm": "yes"})

    assert listed((await root.get("/admin")).text) == ["alice", "bob", "carol", "dan_x", "root"]
    page = (await root.get("/admin?user_q=LAB")).text  # e-mail too, any case
    assert listed(page) == ["carol"] and "1 user match." in page
    assert listed((await root.get("/admin?user_q=_")).text) == ["dan_x"]  # "_" is a character, not a wildcard
    assert listed((await root.get("/admin?user_q=%25")).text) == []
    assert listed((await root.get("/admin?user_role=admin")).text) == ["root"]
    assert listed((await root.get("/admin?user_status=disabled")).text) == ["alice"]
    assert listed((await root.get("/admin?user_role=user&user_status=active")).text) == ["bob", "carol", "dan_x"]
    page = (await root.get("/admin?user_sort=-guests")).text
    assert listed(page)[:2] == ["bob", "alice"] and '<th scope="col" aria-sort="descending">' in page
    assert 'href="/admin?user_sort=guests#users">Guests' in page  # pressing it again turns the order round
    assert listed((await root.get("/admin?user_sort=-username")).text) == ["root", "dan_x", "carol", "bob", "alice"]
    # what the page never offers is refused, said where it was, and the rest of the list shown
    page = await root.get("/admin?user_sort=password_hash&user_role=god&user_page=x")
    assert page.code == 400 and listed(page.text) == ["alice", "bob", "carol", "dan_x", "root"]
    assert re.search(r'<p class="field-error" id="ul-role-error">[^<]*god', page.text), page.text[:4000]
    assert 'aria-describedby="ul-role-error"' in page.text
    assert "sort must be one of" in page.text and "page must be a whole number" in page.text
    page = await root.get("/admin?user_q=" + "x" * 101)
    assert page.code == 400 and re.search(r'id="ul-q-error">[^<]*at most 100 characters', page.text)

    monkeypatch.setattr(userlist, "PAGE_SIZE", 2)
    page = (await root.get("/admin?user_status=active&user_page=2")).text
    assert listed(page) == ["dan_x", "root"] and "4 users match; page 2 of 2." in page
    assert 'href="/admin?user_status=active#users">previous' in page and ">next</a>" not in page
    # the guest list's own arguments are kept by the user list's links and form
    page = (await root.get("/admin?guests=retired&user_status=active")).text
    assert 'href="/admin?guests=retired&amp;user_status=active&amp;user_page=2#users">next' in page
    assert '<input type="hidden" name="guests" value="retired">' in page


async def test_a_disabled_users_row_keeps_its_enable_button_at_full_strength(site):
    root = await site.as_user("root")
    await root.post(f"/admin/users/{site.users['bob']}/disable", {"confirm": "yes"})
    page = (await root.get("/admin?user_status=disabled")).text
    assert f'<tr data-user-id="{site.users["bob"]}" class="disabled">' in page
    assert 'aria-label="Enable bob">Enable</button>' in page
