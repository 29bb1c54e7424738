"""The profile page: details, notification choices and the password change."""

import pytest

from fogmachine.db.models import User
from fogmachine.services import passwords
from tests.web.pages.conftest import PASSWORD

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq alice@laptop"


async def alice_row(site):
    return await site.ctx.db.run(lambda s: s.get(User, site.users["alice"]))


async def test_update_profile(site):
    c = await site.as_user("alice")
    r = await c.get("/profile")
    assert r.code == 200 and "Profile of alice" in r.text
    r = await c.post("/profile", {"email": "alice@example.org", "ssh_key": KEY, "description": "team A",
                                  "notify_expiry": "yes"})
    page = await c.follow(r)
    assert ("ok", "Profile saved.") in page.flashes and KEY in page.text
    user = await alice_row(site)
    assert (user.email, user.ssh_key, user.description) == ("alice@example.org", KEY, "team A")
    assert user.notify_expiry and not user.notify_ready


async def test_bad_profile_values_are_shown_with_the_form(site):
    c = await site.as_user("alice")
    r = await c.post("/profile", {"email": "nope", "ssh_key": KEY})
    assert r.code == 400 and "email is not a valid address" in r.text and 'value="nope"' in r.text
    r = await c.post("/profile", {"email": "", "ssh_key": "my key"})
    assert r.code == 400 and "not an OpenSSH public key" in r.text
    user = await alice_row(site)
    assert user.email == "" and user.ssh_key == ""


async def test_password_change(site):
    c = await site.as_user("alice")
    r = await c.post("/profile/password", {"current_password": "wrong one", "new_password": "brand new pass",
                                           "confirm_password": "brand new pass"})
    assert r.code == 400 and "the current password is wrong" in r.text
    r = await c.post("/profile/password", {"current_password": PASSWORD, "new_password": "brand new pass",
                                           "confirm_password": "different"})
    assert r.code == 400 and "the new passwords differ" in r.text
    assert passwords.verify_password((await alice_row(site)).password_hash, PASSWORD)
    r = await c.post("/profile/password", {"current_password": PASSWORD, "new_password": "brand new pass",
                                           "confirm_password": "brand new pass"})
    assert ("ok", "Password changed.") in (await c.follow(r)).flashes
    assert (await site.client().post("/login", {"username": "alice", "password": PASSWORD})).code == 401
    await site.client().login("alice", "brand new pass")


@pytest.mark.parametrize("path", ["/profile", "/profile/password"])
async def test_profile_forms_need_login_and_xsrf(site, path):
    fields = {"email": "x@example.org", "current_password": PASSWORD, "new_password": "brand new pass",
              "confirm_password": "brand new pass"}
    r = await site.client().post(path, fields)
    assert r.code == 303 and r.location.startswith("/login")
    c = await site.as_user("alice")
    assert (await c.post(path, fields, xsrf=None)).code == 403
    user = await alice_row(site)
    assert user.email == "" and passwords.verify_password(user.password_hash, PASSWORD)
