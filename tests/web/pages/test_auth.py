"""Logging in and out, registering, the session cookie, throttling and XSRF, through real HTTP."""

import re

from sqlalchemy import select

from fogmachine.db.models import User
from fogmachine.services import loginthrottle
from fogmachine.web.pages.common import XSRF_MESSAGE
from tests.web.pages.conftest import PASSWORD


def cookie_line(reply, name):
    return next(line for line in reply.headers.get_list("Set-Cookie") if line.startswith(name + "="))


async def test_login_sets_a_safe_session_cookie_and_greets(site):
    c = site.client()
    r = await c.get("/login?next=/guests")
    assert r.code == 200 and 'name="next" value="/guests"' in r.text and "_xsrf" in r.text
    assert "script-src 'self'" in r.headers["Content-Security-Policy"] and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    r = await c.post("/login", {"username": "alice", "password": PASSWORD, "next": "/guests"})
    assert r.code == 303 and r.location == "/guests"
    line = cookie_line(r, "fm_session")
    assert "httponly" in line.lower() and "samesite=lax" in line.lower() and "secure" not in line.lower()
    page = await c.follow(r)
    assert page.code == 200 and ("ok", "Welcome, alice.") in page.flashes
    assert (await c.get("/guests")).flashes == []  # a flash is shown once
    # logged in, the login page sends you on
    assert (await c.get("/login")).code == 302


async def test_session_cookie_is_secure_behind_tls(site):
    c = site.client()
    r = await c.post("/login", {"username": "alice", "password": PASSWORD},
                     headers={"X-Forwarded-Proto": "https"})
    assert r.code == 303 and "secure" in cookie_line(r, "fm_session").lower()


async def test_login_refuses_foreign_redirects(site):
    c = site.client()
    for target in ("//evil.example.org/x", "https://evil.example.org/", "/\\evil.example.org", "/\t/evil.example.org",
                   "/\n/evil.example.org"):
        r = await c.post("/login", {"username": "alice", "password": PASSWORD, "next": target})
        assert r.code == 303 and r.location == "/"


async def test_wrong_password_unknown_user_and_disabled_account_look_alike(site):
    await site.ctx.db.run(lambda s: setattr(s.get(User, site.users["bob"]), "is_active", False))
    c = site.client()
    bodies = []
    for username, password in (("alice", "not the password"), ("nobody", PASSWORD), ("bob", PASSWORD)):
        r = await c.post("/login", {"username": username, "password": password})
        assert r.code == 401
        assert r.form_error("login") == "wrong username or password" and "fm_session" not in c.cookies
        bodies.append(re.sub(r'name="_xsrf" value="[^"]*"', "", r.text.replace(username, "NAME")))
    assert bodies[0] == bodies[1] == bodies[2]
    assert 'value="NAME"' in bodies[0]  # the name is kept in the form, the password never
    assert "not the password" not in bodies[0] and PASSWORD not in bodies[0]


async def test_a_failed_login_is_answered_in_place_and_leaves_the_login_page_in_the_history(site):
    """The login keeps its 401 (what a proxy's access log tells failures by): the page answers the POST
    itself, carries nothing in a cookie, and gives its script /login?next=... for the history, so Back
    and reload load the login page instead of sending the password again."""
    c = site.client()
    r = await c.post("/login", {"username": "alice", "password": "not the password", "next": "/guests"})
    assert r.code == 401 and "fm_form" not in c.cookies
    assert 'data-form-url="/login?next=%2Fguests"' in r.text and 'name="next" value="/guests"' in r.text
    assert r.field_value("username") == "alice" and r.field_value("password") == ""
    password = r.field("password")
    assert 'aria-describedby="login-error"' in password and "autofocus" in password
    assert "autofocus" not in r.field("username")
    r = await c.post("/login", {"username": "alice", "password": "not the password"})
    assert 'data-form-url="/login"' in r.text
    page = await c.get("/login")  # the page put in the history is the form as usual
    assert page.form_error("login") is None and "autofocus" in page.field("username")


async def test_repeated_failures_answer_429(site):
    c = site.client()
    for _ in range(loginthrottle.DEFAULT.per_pair):
        assert (await c.post("/login", {"username": "alice", "password": "guess guess"})).code == 401
    r = await c.post("/login", {"username": "alice", "password": PASSWORD})
    assert r.code == 429 and "too many failed logins" in r.text
    assert int(r.headers["Retry-After"]) > 0
    # another user from the same address is not locked yet
    assert (await site.client().post("/login", {"username": "bob", "password": PASSWORD})).code == 303


async def test_login_without_xsrf_token_is_refused(site):
    c = site.client()
    await c.get("/login")
    for token in (None, "2|deadbeef|0123456789abcdef|123"):
        r = await c.post("/login", {"username": "alice", "password": PASSWORD}, xsrf=token)
        assert r.code == 403 and XSRF_MESSAGE in r.text.replace("&#39;", "'") and "fm_session" not in c.cookies


async def test_logout_needs_a_post_with_xsrf(site):
    c = await site.as_user("alice")
    assert (await c.get("/logout")).code == 405
    assert (await c.post("/logout", xsrf=None)).code == 403
    assert (await c.get("/guests")).code == 200
    r = await c.post("/logout")
    assert r.code == 303 and r.location == "/login"
    page = await c.follow(r)
    assert ("ok", "You are logged out.") in page.flashes
    r = await c.get("/guests")
    assert r.code == 303 and r.location == "/login?next=%2Fguests"


async def test_register_logs_in_and_validates(site):
    """It writes (registrations are audited): on each database. A refusal comes back under its field after a
    redirect, with the name and address typed, never a password; a reload is a clean form; nothing is made."""
    c = site.client()
    assert "Create my account" in (await c.get("/register")).text
    long_enough = "longer than enough"
    cases = [
        ({"username": "Bad Name", "email": "x@example.org", "password": long_enough, "confirm_password": long_enough},
         "username", "username must be"),
        ({"username": "dora", "email": "dora@example.org", "password": long_enough, "confirm_password": "other one"},
         "confirm_password", "the two passwords differ"),
        ({"username": "dora", "email": "not an address", "password": long_enough, "confirm_password": long_enough},
         "email", "email is not a valid address"),
        ({"username": "dora", "email": "", "password": "short", "confirm_password": "short"},
         "password", "password must be at least 8 characters"),
        ({"username": "alice", "email": "", "password": long_enough, "confirm_password": long_enough},
         "username", "user alice already exists"),
    ]
    for fields, field, message in cases:
        page = await c.refused("/register", fields, "/register")
        assert message in (page.field_error("register", field) or ""), (fields, page.text[:3000])
        assert page.marked("register", field)
        assert page.field_value("username") == fields["username"].lower()
        assert page.field_value("email") == fields["email"]
        assert page.field_value("password") == "" and page.field_value("confirm_password") == ""
        assert long_enough not in page.text and "autofocus" not in page.field("username").replace(
            'aria-describedby="register-username-error" autofocus', "")
        again = await c.get("/register")  # shown once
        assert "aria-invalid" not in again.text and again.field_value("username") == ""
    assert await site.ctx.db.run(lambda s: s.scalar(select(User).where(User.username.in_(["dora", "bad name"]))))\
        is None
    r = await c.post("/register", {"username": "dora", "email": "dora@example.org", "password": long_enough,
                                   "confirm_password": long_enough})
    assert r.code == 303
    page = await c.follow(r)
    assert "Your guests" in page.text and ("ok", "Welcome, dora: your account is ready.") in page.flashes
    user = await site.ctx.db.run(lambda s: s.scalar(select(User).where(User.username == "dora")))
    assert user.email == "dora@example.org" and not user.is_admin
    assert (await c.post("/register", {"username": "eve"}, xsrf=None)).code == 403


async def test_too_many_registrations_are_said_at_the_top_of_the_form(site):
    """The per-address limit is about no field: its message stands at the top of the form, values kept."""
    c = site.client()
    for number in range(loginthrottle.DEFAULT.register_per_address):
        await c.refused("/register", {"username": f"Bad {number}", "password": "x", "confirm_password": "x"},
                        "/register")
    page = await c.refused("/register", {"username": "frank", "email": "frank@example.org",
                                         "password": "longer than enough", "confirm_password": "longer than enough"},
                           "/register")
    assert "too many registrations from your address" in (page.form_error("register") or ""), page.text[:3000]
    assert "aria-invalid" not in page.text and page.field_value("username") == "frank"
    assert await site.ctx.db.run(lambda s: s.scalar(select(User).where(User.username == "frank"))) is None


async def test_closed_registration(make_config, start_server, tmp_path):
    from tests.web.pages.conftest import PageClient, write_catalog

    srv = await start_server(make_config(open_registration="false", local_catalog=write_catalog(tmp_path)))
    c = PageClient(srv)
    r = await c.get("/register")
    assert r.code == 200 and "Registration is closed" in r.text
    r = await c.post("/register", {"username": "eve", "password": "longer than enough",
                                   "confirm_password": "longer than enough"})
    assert r.code == 403 and "registration is closed" in r.text and "fm_form" not in c.cookies
    assert await srv.ctx.db.run(lambda s: s.scalar(select(User).where(User.username == "eve"))) is None
