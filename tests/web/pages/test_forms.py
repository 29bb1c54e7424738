"""A failed form's journey (fogmachine/web/pages/forms.py): what it carries, what it never carries, how a
page draws it, and the cookie that takes it to its page (signed, small, read once)."""

import base64
import json

from fogmachine.errors import Conflict, TooManyRequests, ValidationError
from fogmachine.web.pages import forms
from fogmachine.web.pages.forms import FailedForm, FormView


def test_a_failure_names_its_field_and_never_carries_a_secret():
    error = ValidationError("username must be ...", field="username")
    typed = {"username": "Bad Name", "email": "a@b.example", "password": "hunter2 hunter2",
             "confirm_password": "hunter2 hunter2", "new_password": "x", "client_secret": "s", "token": "fm_x"}
    failed = FailedForm.of("register", error, typed)
    assert failed.field == "username" and failed.values == {"username": "Bad Name", "email": "a@b.example"}
    assert "hunter2" not in failed.encode()
    # a service error with details names its field the same way; a refusal of the whole form names none
    assert FailedForm.of("new-user", Conflict("taken", details={"field": "username"}), {}).field == "username"
    assert FailedForm.of("register", TooManyRequests("slow down", details={"retry_after": 60}), {}).field == ""
    assert len(FailedForm.of("x", ValidationError("m" * 5000), {}).message) == forms.MAX_MESSAGE


def test_decoding_takes_only_what_a_failed_form_looks_like():
    failed = FailedForm("checkout", "name", "name must be a DNS label", {"name": "Web 1", "purpose": "ü"})
    assert FailedForm.decode(failed.encode()) == failed
    for junk in ("", "not json", "[]", '{"form": 1}', '{"form": "a", "field": "", "message": "m", "values": []}'):
        assert FailedForm.decode(junk) is None, junk
    # even a cookie of this server's making that held a password would not give it back
    carried = json.dumps({"form": "a", "field": "", "message": "m", "values": {"password": "p", "n": 3, "name": "x"}})
    assert FailedForm.decode(carried) == FailedForm("a", "", "m", {"name": "x"})


def test_a_form_view_draws_the_error_under_its_field_or_at_the_top():
    failed = FailedForm("token", "scope", "scope must be <read> or write", {"name": "ci", "scope": "root"})
    view = FormView("token", ("name", "scope", "expires_in_days"), failed)
    assert view.failed and view.invalid("scope") and not view.invalid("name")
    assert view.attrs("scope") == 'aria-invalid="true" aria-describedby="token-scope-error" autofocus'
    assert view.attrs("scope", focus=False) == 'aria-invalid="true" aria-describedby="token-scope-error"'
    assert view.attrs("name") == "" and view.error("name") == "" and view.top() == ""
    assert view.error("scope") == ('<span class="field-error" id="token-scope-error">'
                                   "scope must be &lt;read&gt; or write</span>")
    assert view.value("name", "default") == "ci" and view.value("expires_in_days", "90") == ""
    # an error about no field the form shows: at its top, no field marked
    top = FormView("token", ("name",), failed)
    assert top.attrs("scope") == "" and top.error("scope") == ""
    assert top.top() == ('<p class="flash flash-error form-error" role="alert" id="token-error" tabindex="-1">'
                         "scope must be &lt;read&gt; or write</p>")
    # another form on the same page, or no failure: the form as usual
    for other in (FormView("profile", ("email",), failed), FormView("token", ("name",), None)):
        assert not other.failed and other.value("email", "saved@example.org") == "saved@example.org"
        assert other.top() == "" and other.checked("notify", True)
    boxes = FormView("profile", ("email",), FailedForm("profile", "email", "m", {"notify_ready": "yes"}))
    assert boxes.checked("notify_ready", False) and not boxes.checked("notify_expiry", True)


def signed_payload(cookie: str) -> str:
    return base64.b64decode(cookie.strip('"').split("|")[4].split(":", 1)[1]).decode()


async def test_the_cookie_is_signed_small_and_read_once(site):
    """Through a guest's extend form, which has no page to be shown on in place: a value too long for the
    cookie is cut to what fits, a forged cookie is ignored, and the page that shows the failure ends it."""
    gid = await site.guest("alice", "web1")
    c = await site.as_user("alice")
    r = await c.post(f"/guests/{gid}/extend", {"days": "9" * 5000})
    assert r.code == 303 and r.location == "/guests"
    cookie = c.cookies[forms.FORM_COOKIE]
    assert len(cookie.strip('"')) <= forms.MAX_COOKIE
    assert json.loads(signed_payload(cookie))["values"] == {"days": "9" * forms.MAX_VALUE}
    page = await c.follow(r)
    assert f'value="{"9" * forms.MAX_VALUE}"' in page.text and page.field_error(f"extend-{gid}", "days")
    assert forms.FORM_COOKIE not in c.cookies and "aria-invalid" not in (await c.get("/guests")).text
    # a cookie not signed by this server says nothing
    forged = FailedForm(f"extend-{gid}", "days", "<b>forged</b>", {"days": "1"}).encode()
    c.cookies[forms.FORM_COOKIE] = base64.b64encode(forged.encode()).decode()
    page = await c.get("/guests")
    assert "forged" not in page.text and "aria-invalid" not in page.text and forms.FORM_COOKIE not in c.cookies
