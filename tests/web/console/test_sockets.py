"""The console routes on test-driver hosts: who is refused, how, and that a refusal leaves nothing behind."""

from __future__ import annotations

import json
import logging

from tests.web.console.conftest import close_of, open_socket, refused_status, session_actor


async def test_anonymous_and_other_users_are_refused_before_the_upgrade(console_site):
    site = console_site
    gid = await site.guest("alice", "web1")
    base = site.srv.base_url
    bob = await site.as_user("bob")
    for path in (f"/guests/{gid}/console/serial", f"/guests/{gid}/console/vnc?ticket=x"):
        assert await refused_status(base, path) == 401
        assert await refused_status(base, path, bob) == 404  # another user's guest is no guest at all
        assert await refused_status(base, path.replace(str(gid), "999999"), await site.as_user("alice")) == 404
        assert await refused_status(base, path, await site.as_user("alice"), origin="http://evil.example.org") == 403
    page = await bob.get(f"/guests/{gid}/console")
    assert page.code == 404
    anonymous = await site.client().get(f"/guests/{gid}/console")
    assert anonymous.code == 303 and anonymous.location.startswith("/login?next=")
    ticket = await bob.post(f"/guests/{gid}/console/vnc-ticket")
    assert ticket.code == 404 and json.loads(ticket.text)["error"]["code"] == "not_found"
    anon_ticket = await site.client().post(f"/guests/{gid}/console/vnc-ticket")
    assert anon_ticket.code == 401 and json.loads(anon_ticket.text)["error"]["code"] == "unauthenticated"


async def test_serial_errors_after_the_upgrade_close_with_their_status_and_release_the_guest(console_site):
    site = console_site
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    ws = await open_socket(site.srv.base_url, f"/guests/{gid}/console/serial", alice,
                           origin=site.srv.base_url)
    code, reason = await close_of(ws)
    assert code == 4502 and "does not support open the console" in reason  # the test driver has no consoles
    assert site.ctx.consoles.holder(gid) is None
    root = await site.as_user("root")  # the admin gets as far as the host too
    code, _ = await close_of(await open_socket(site.srv.base_url, f"/guests/{gid}/console/serial?takeover=1", root))
    assert code == 4502 and site.ctx.consoles.holder(gid) is None


async def test_vnc_tickets_are_checked_and_used_up(console_site, caplog):
    caplog.set_level(logging.INFO, "fogmachine.access")
    site = console_site
    gid = await site.guest("alice", "web1")
    alice = await site.as_user("alice")
    # the test driver never assigns a VNC port: no ticket for a console that is not there
    reply = await alice.post(f"/guests/{gid}/console/vnc-ticket")
    assert reply.code == 409 and "not running" in json.loads(reply.text)["error"]["message"]
    refused = await alice.post(f"/guests/{gid}/console/vnc-ticket", xsrf=None)
    assert refused.code == 403  # no XSRF token

    base, path = site.srv.base_url, f"/guests/{gid}/console/vnc?ticket="
    code, reason = await close_of(await open_socket(base, path + "forged", alice))
    assert code == 4403 and "unknown, used or expired" in reason
    alice_actor = await session_actor(site, alice, "alice")
    ticket = site.ctx.consoles.issue(alice_actor, gid)
    other_tab = await site.as_user("alice")  # the same user, another login session
    code, reason = await close_of(await open_socket(base, path + ticket, other_tab))
    assert code == 4403 and "another session" in reason
    ticket = site.ctx.consoles.issue(alice_actor, gid)
    ws = await open_socket(base, path + ticket, alice, subprotocols=["binary"])
    assert ws.selected_subprotocol == "binary"
    code, reason = await close_of(ws)
    assert code == 4409 and "not running" in reason  # past the ticket: the host had no VNC server for it
    code, reason = await close_of(await open_socket(base, path + ticket, alice))
    assert code == 4403 and "unknown, used or expired" in reason  # once only
    assert "/console/vnc?ticket=***" in caplog.text and ticket not in caplog.text  # the access log hides it


async def test_the_console_page_frames_the_panel_with_vendored_scripts_only(console_site):
    site = console_site
    gid = await site.guest("alice", "web1")
    page = await (await site.as_user("alice")).get(f"/guests/{gid}/console")
    assert page.code == 200
    assert f'id="consoles" data-guest-id="{gid}"' in page.text
    for script in ("/static/vendor/xterm/lib/xterm.js", "/static/vendor/xterm-addon-fit/lib/addon-fit.js",
                   "/static/console.js", "/static/vnc.js"):
        assert script in page.text
    content = page.text.split("<main", 1)[1]
    assert "http://" not in content and "https://" not in content  # nothing from elsewhere
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp
    admin_page = await (await site.as_user("root")).get(f"/guests/{gid}/console")
    assert admin_page.code == 200


async def test_the_sockets_pass_through_nginx_over_tls(make_config, start_server, tmp_path):
    """The sample site (docs/nginx-fogmachine.conf) passes the consoles' upgrades on; wss:// works."""
    from fogmachine.services.users import create_user
    from tests.support import nginx
    from tests.web.pages.conftest import PageClient, Site, password_hash, write_catalog

    config = make_config(hosts={"h1": {}}, local_catalog=write_catalog(tmp_path), trusted_proxies="127.0.0.1")
    srv = await start_server(config)
    users = {}
    for name in ("alice", "bob"):
        users[name] = (await srv.ctx.db.run(create_user, name, "x", password_hash=password_hash())).id
    site = Site(srv, users)
    gid = await site.guest("alice", "web1")
    with nginx.reverse_proxy(tmp_path / "nginx", srv.server.port) as proxy:
        alice, bob = PageClient(srv), PageClient(srv)
        await alice.login("alice")
        await bob.login("bob")
        path = f"/guests/{gid}/console/serial"
        assert await refused_status(proxy.https_url, path) == 401
        assert await refused_status(proxy.https_url, path, bob) == 404
        ws = await open_socket(proxy.https_url, path, alice, origin=proxy.https_url)
        code, reason = await close_of(ws)  # upgraded through nginx, then refused by the test driver's host
        assert code == 4502 and "does not support" in reason
        assert await refused_status(proxy.https_url, path, alice, origin="https://evil.example.org") == 403
