"""The profile page: details, notification choices and the password change."""

import json
import re

import pytest
from sqlalchemy import select

from fogmachine.db.models import ApiToken, User
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


async def test_bad_profile_values_come_back_under_their_field_once(site):
    """It writes: on each database. Post, redirect, get: the message under the field at fault, every value
    as typed (not as saved), the check boxes too; a reload shows what is saved; nothing was saved."""
    c = await site.as_user("alice")
    saved = await alice_row(site)
    cases = [
        ({"email": "nope", "ssh_key": KEY, "description": "team B", "notify_ready": "yes"}, "email",
         "email is not a valid address"),
        ({"email": "a@example.org", "ssh_key": "my key", "description": "", "notify_expiry": "yes"}, "ssh_key",
         "line 1 of the SSH keys is not an OpenSSH public key"),
        ({"email": "x@", "ssh_key": "", "description": "two lines\n<b>of text</b>"}, "email",
         "email is not a valid address"),
    ]
    for fields, field, message in cases:
        page = await c.refused("/profile", fields, "/profile")
        assert message in (page.field_error("profile", field) or ""), (fields, page.text[:4000])
        assert page.marked("profile", field)
        for name in ("email", "ssh_key", "description"):
            assert page.field_value(name) == fields.get(name, ""), name
        for box in ("notify_expiry", "notify_ready"):
            assert ("checked" in page.field(box)) == (box in fields), box
        again = await c.get("/profile")
        assert "aria-invalid" not in again.text and again.field_value("email") == ""
    user = await alice_row(site)
    assert (user.email, user.ssh_key, user.description) == ("", "", "")
    assert (user.notify_expiry, user.notify_ready) == (saved.notify_expiry, saved.notify_ready)


async def test_several_ssh_keys_too_long_for_the_cookie_are_shown_in_place(site):
    """Several long keys do not fit the cookie: the form is shown again in answer to the POST, with every
    key as typed and its status, and gives its script the profile's address for the history."""
    keys = "\n".join(f"ssh-rsa AAAAB3NzaC1yc2E{'A' * 700}{n} key{n}@laptop" for n in range(5))
    c = await site.as_user("alice")
    r = await c.post("/profile", {"email": "nope", "ssh_key": keys, "description": "team A"})
    assert r.code == 400 and "fm_form" not in c.cookies and 'data-form-url="/profile"' in r.text
    assert r.field_value("ssh_key") == keys and r.field_value("email") == "nope" and r.marked("profile", "email")
    # a description over the limit is over the cookie's too: said under its field, in place
    r = await c.post("/profile", {"email": "", "ssh_key": "", "description": "x" * 2001})
    assert r.code == 400 and r.field_value("description") == "x" * 2001
    assert "at most 2000 characters" in (r.field_error("profile", "description") or "")
    assert (await alice_row(site)).ssh_key == "" and (await alice_row(site)).description == ""


async def test_password_change(site):
    c = await site.as_user("alice")
    new = "brand new pass"
    cases = [
        ({"current_password": "wrong one", "new_password": new, "confirm_password": new}, "current_password",
         "the current password is wrong"),
        ({"current_password": PASSWORD, "new_password": new, "confirm_password": "different"}, "confirm_password",
         "the new passwords differ"),
        ({"current_password": PASSWORD, "new_password": "alice123", "confirm_password": "alice123"}, "new_password",
         "new password must not be your username"),
    ]
    for fields, field, message in cases:
        page = await c.refused("/profile/password", fields, "/profile")
        assert message in (page.field_error("password", field) or ""), (fields, page.text[:4000])
        assert page.marked("password", field)
        for name, typed in fields.items():  # no password comes back, not even a wrong one
            assert page.field_value(name) == "" and typed not in page.text
    assert passwords.verify_password((await alice_row(site)).password_hash, PASSWORD)
    r = await c.post("/profile/password", {"current_password": PASSWORD, "new_password": new,
                                           "confirm_password": new})
    assert ("ok", "Password changed.") in (await c.follow(r)).flashes
    assert (await site.client().post("/login", {"username": "alice", "password": PASSWORD})).code == 401
    await site.client().login("alice", new)


async def test_too_many_wrong_current_passwords_are_said_at_the_top_of_their_form(site):
    c = await site.as_user("alice")
    fields = {"current_password": "wrong one", "new_password": "brand new pass", "confirm_password": "brand new pass"}
    for _ in range(5):
        await c.refused("/profile/password", fields, "/profile")
    page = await c.refused("/profile/password", fields, "/profile")
    assert "too many wrong current passwords" in (page.form_error("password") or ""), page.text[:4000]
    assert "aria-invalid" not in page.text and page.form_error("profile") is None


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


# --- API tokens ---

NEW_TOKEN_RE = re.compile(r'id="new-token-value">(fm_[0-9a-f]{8}_[A-Za-z0-9_-]+)</code>')


async def test_a_token_made_on_the_profile_is_shown_once_and_works(site):
    c = await site.as_user("alice")
    r = await c.post("/profile/tokens", {"name": "nightly-ci", "scope": "write", "expires_in_days": "30"})
    assert r.code == 303 and r.location == "/profile#new-token"
    assert "fm_" not in r.location and "fm_new_token" in c.cookies  # the secret rides a cookie, not the URL
    page = await c.follow(r)
    secret = NEW_TOKEN_RE.search(page.text).group(1)
    assert ("ok", "Token 'nightly-ci' made: copy it now, it is not shown again.") in page.flashes
    assert f"curl -H &#x27;Authorization: Bearer {secret}&#x27; {site.srv.base_url}/api/v1/guests" \
        in page.text
    assert "fm_new_token" not in c.cookies  # deleted by the page that showed it
    again = await c.get("/profile")
    assert secret not in again.text and "nightly-ci" in again.text and secret[:12] in again.text
    # the token is real: the API takes it
    answer = await site.srv.fetch("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert answer.code == 200 and json.loads(answer.body)["username"] == "alice"
    rows = await site.ctx.db.run(lambda s: s.scalars(select(ApiToken)).all())
    assert [(t.name, t.scope, t.user_id) for t in rows] == [("nightly-ci", "write", site.users["alice"])]
    assert secret not in (rows[0].token_hash, rows[0].prefix)


async def test_the_curl_line_uses_the_proxys_protocol_only_from_a_trusted_proxy(site):
    c = await site.as_user("alice")
    # the site's server trusts 127.0.0.1 as its reverse proxy, so its X-Forwarded-Proto counts
    r = await c.post("/profile/tokens", {"name": "behind-tls", "scope": "read", "expires_in_days": "1"},
                     headers={"X-Forwarded-Proto": "https"})
    page = await c.get(r.location, headers={"X-Forwarded-Proto": "https"})
    assert site.srv.base_url.replace("http:", "https:") + "/api/v1/guests" in page.text


async def test_another_user_never_sees_the_new_token(site):
    alice = await site.as_user("alice")
    r = await alice.post("/profile/tokens", {"name": "mine", "scope": "read", "expires_in_days": "5"})
    stolen = alice.cookies["fm_new_token"]
    bob = await site.as_user("bob")
    bob.cookies["fm_new_token"] = stolen
    page = await bob.get("/profile")
    assert 'id="new-token-value"' not in page.text and "mine" not in page.text
    assert 'id="new-token-value"' in (await alice.follow(r)).text


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"name": "", "scope": "read", "expires_in_days": "30"}, "name", "name must not be empty"),
    ({"name": "x", "scope": "root", "expires_in_days": "30"}, "scope", "scope must be one of read, write"),
    ({"name": "x", "scope": "read", "expires_in_days": "400"}, "expires_in_days",
     "expires_in_days must be between 1 and 365"),
    ({"name": "x", "scope": "write", "expires_in_days": "soon"}, "expires_in_days",
     "expires_in_days must be a whole number of days"),
])
async def test_bad_token_values_are_said_under_their_field_and_make_nothing(site, fields, field, message):
    c = await site.as_user("alice")
    page = await c.refused("/profile/tokens", fields, "/profile")
    assert page.field_error("token", field) == message and page.marked("token", field)
    assert page.field_value("name") == fields["name"] and page.field_value("expires_in_days") == \
        fields["expires_in_days"]
    if fields["scope"] in ("read", "write"):
        assert f'<option value="{fields["scope"]}" selected>' in page.text
    assert "fm_new_token" not in c.cookies
    assert "aria-invalid" not in (await c.get("/profile")).text
    assert await site.ctx.db.run(lambda s: s.scalars(select(ApiToken)).all()) == []


async def test_a_second_token_of_the_same_name_is_refused_under_the_name(site):
    c = await site.as_user("alice")
    await c.post("/profile/tokens", {"name": "ci", "scope": "read", "expires_in_days": "30"})
    await c.get("/profile")
    page = await c.refused("/profile/tokens", {"name": "ci", "scope": "write", "expires_in_days": "30"},
                           "/profile")
    assert page.field_error("token", "name") == "you already have an active token named 'ci'"
    assert len(await site.ctx.db.run(lambda s: s.scalars(select(ApiToken)).all())) == 1


async def test_revoke_a_token_from_the_profile(site):
    c = await site.as_user("alice")
    r = await c.post("/profile/tokens", {"name": "old", "scope": "read", "expires_in_days": "30"})
    secret = NEW_TOKEN_RE.search((await c.follow(r)).text).group(1)
    token_id = await site.ctx.db.run(lambda s: s.scalar(select(ApiToken.id)))
    # someone else's token is not there for bob: 404, and it keeps working
    bob = await site.as_user("bob")
    assert (await bob.post(f"/profile/tokens/{token_id}/revoke")).code == 404
    r = await c.post(f"/profile/tokens/{token_id}/revoke")
    page = await c.follow(r)
    assert ("ok", "Token 'old' is revoked: it no longer works.") in page.flashes
    assert 'action="/profile/tokens/' not in page.text and "No active tokens." in page.text
    answer = await site.srv.fetch("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert answer.code == 401
    r = await c.post(f"/profile/tokens/{token_id}/revoke")
    assert ("error", "token 'old' is already revoked") in (await c.follow(r)).flashes


async def test_token_forms_need_login_and_xsrf(site):
    r = await site.client().post("/profile/tokens", {"name": "x", "scope": "read", "expires_in_days": "3"})
    assert r.code == 303 and r.location.startswith("/login")
    c = await site.as_user("alice")
    assert (await c.post("/profile/tokens", {"name": "x"}, xsrf=None)).code == 403
    assert await site.ctx.db.run(lambda s: s.scalars(select(ApiToken)).all()) == []


# --- the colour theme ---

async def test_the_theme_switch_is_kept_in_a_cookie_and_set_on_the_page(site):
    c = await site.as_user("alice")
    page = await c.get("/profile")
    assert "<html lang=\"en\">" in page.text and 'content="light dark"' in page.text
    assert 'value="system" checked' in page.text
    r = await c.post("/profile/theme", {"theme": "dark"})
    assert r.code == 303 and c.cookies["fm_theme"] == "dark"
    assert "Max-Age" in r.headers["Set-Cookie"] or "expires" in r.headers["Set-Cookie"].lower()
    page = await c.follow(r)
    assert '<html lang="en" data-theme="dark">' in page.text
    assert '<meta name="color-scheme" content="dark">' in page.text
    assert 'value="dark" checked' in page.text and ("ok", "Theme: dark.") in page.flashes
    # every page, the logged-out ones too, draws itself in it from the first byte
    assert 'data-theme="dark"' in (await c.get("/hosts")).text
    logged_out = site.client()
    logged_out.cookies["fm_theme"] = "dark"
    assert 'data-theme="dark"' in (await logged_out.get("/login")).text
    assert 'data-theme="dark"' in (await logged_out.get("/no-such-page")).text
    r = await c.post("/profile/theme", {"theme": "system"})
    assert "fm_theme" not in c.cookies and 'data-theme' not in (await c.follow(r)).text


async def test_a_bad_theme_is_refused_under_the_field_and_a_forged_cookie_ignored(site):
    c = await site.as_user("alice")
    page = await c.refused("/profile/theme", {"theme": "neon"}, "/profile")
    assert page.field_error("theme", "theme") == "theme must be one of system, light, dark"
    assert 'value="system" checked aria-invalid="true" aria-describedby="theme-theme-error" autofocus>' in page.text
    assert "fm_theme" not in c.cookies
    c.cookies["fm_theme"] = '"><script>x</script>'
    page = await c.get("/profile")
    assert "data-theme" not in page.text and "<script>x" not in page.text
