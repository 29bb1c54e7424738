"""The administrators' page: all guests with owners, users and host maintenance; refused to everyone else."""

import pytest
from sqlalchemy import select

from fogmachine.db.models import Host, User
from tests.web.pages.conftest import PASSWORD


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
    r = await root.post("/admin/users", {"username": "dora", "password": "longer than enough"})
    assert r.code == 409 and "user dora already exists" in r.text and 'value="dora"' in r.text
    r = await root.post("/admin/users", {"username": "eve", "password": "short"})
    assert r.code == 400 and "at least 8 characters" in r.text
    assert await user_row(site, "eve") is None


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
