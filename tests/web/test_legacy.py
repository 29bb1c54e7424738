"""The original's /guest/<id-or-mac>/<action> routes: same services, same auth, JSON answers."""

from __future__ import annotations

from fogmachine.db.models import Guest
from tests.support.apiclient import api, api_database_url, cookie_header, make_api
from tests.web.api.test_guests import checkout

__all__ = ["api", "api_database_url", "make_api"]  # fixtures


def _guest(session, guest_id):
    return session.get(Guest, guest_id)


async def test_actions_by_id_and_by_mac_with_a_token(api):
    guest = await checkout(api)
    r = await api.call("GET", f"/guest/{guest['id']}/pause")
    assert r.code == 200 and r.json["state"] == "paused"
    r = await api.call("POST", f"/guest/{guest['mac'].upper()}/unpause")
    assert r.code == 200 and r.json["state"] == "running"
    r = await api.call("GET", f"/guest/{guest['mac'].replace(':', '-')}/destroy")
    assert r.code == 200 and r.json["state"] == "shutoff"
    r = await api.call("GET", f"/guest/{guest['id']}/destroy")
    assert r.code == 409 and r.error["code"] == "conflict"


async def test_extend_by_query_or_original_form_body(api):
    guest = await checkout(api)
    r = await api.call("GET", f"/guest/{guest['id']}/extend?days=2")
    assert r.code == 200 and r.json["expires_at"] > guest["expires_at"]
    later = r.json["expires_at"]
    r = await api.call("POST", f"/guest/{guest['mac']}/extend", raw=b"days=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.code == 200 and r.json["expires_at"] > later
    r = await api.call("GET", f"/guest/{guest['id']}/extend")
    assert r.code == 400 and r.error["details"]["field"] == "days"
    r = await api.call("GET", f"/guest/{guest['id']}/extend?days=lots")
    assert r.code == 400 and r.error["details"]["field"] == "days"


async def test_delete(api):
    guest = await checkout(api)
    r = await api.call("GET", f"/guest/{guest['mac']}/delete")
    assert r.code == 204
    row = api.run(_guest, guest["id"])
    assert (row.step, row.step_reason, row.live_name) == ("retired", "deleted by alice", None)  # kept as history
    assert (await api.call("GET", f"/guest/{guest['mac']}/delete")).code == 409


async def test_auth_rules(api):
    guest = await checkout(api)
    gid = guest["id"]
    assert (await api.call("GET", f"/guest/{gid}/pause", as_=None)).code == 401
    assert (await api.call("POST", f"/guest/{gid}/pause", as_=None)).code == 401
    assert (await api.call("GET", f"/guest/{gid}/pause", as_="alice-read")).code == 403
    assert (await api.call("GET", f"/guest/{gid}/pause", as_="bob")).code == 404
    assert (await api.call("GET", f"/guest/{guest['mac']}/delete", as_="bob")).code == 404
    assert (await api.call("GET", "/guest/52:54:00:ff:ff:ff/start")).code == 404
    # With the session cookie: a GET could be forged by another site, so it is refused;
    # a POST needs the XSRF token.
    cookies = await api.login("alice")
    session_only = {"Cookie": f"fm_session={cookies['fm_session']}"}
    r = await api.call("GET", f"/guest/{gid}/pause", as_=None, headers=session_only)
    assert r.code == 403 and "bearer token" in r.error["message"]
    r = await api.call("POST", f"/guest/{gid}/pause", as_=None, headers=session_only)
    assert r.code == 403
    assert api.run(_guest, gid).state == "running"
    r = await api.call("POST", f"/guest/{gid}/pause", as_=None,
                       headers={"Cookie": cookie_header(cookies), "X-XSRFToken": cookies["_xsrf"]})
    assert r.code == 200 and r.json["state"] == "paused"


async def test_phone_home_routes_are_not_shadowed(api):
    guest = await checkout(api)
    # P's callbacks answer these (403 without the guest's token), not the legacy action handler (404/405).
    for action in ("set", "getuser"):
        r = await api.call("GET", f"/guest/{guest['mac']}/{action}?token=wrong", as_=None)
        assert r.code == 403, (action, r.body)
    r = await api.call("GET", f"/guest/{guest['id']}/fly")
    assert r.code == 404
