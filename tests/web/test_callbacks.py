"""The guests' own routes: /guest/<mac>/set and /guest/<mac>/getuser, through the running server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from fogmachine.config import Config
from fogmachine.db.models import AuditEvent, Guest, Step
from fogmachine.services import checkout as co
from fogmachine.services.tokens import hash_token
from tests.support import provisioning as pv

TOKEN = "guest-secret-token-0123456789"
PROFILES = {"announce": {"virt_type": "kvm", "ram_mb": 512, "vcpus": 1, "boot": "network", "phonehome": "yes"}}


@pytest.fixture
async def installing(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                     database_url: str) -> Any:
    """A server on each database with one guest waiting for its phone-home, whose token is TOKEN."""
    return await _installing(make_config, start_server, tmp_path, database_url)


async def _installing(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                      database_url: str, **settings: str) -> Any:
    catalog = pv.write_catalog(tmp_path / "catalog.conf", PROFILES)
    srv = await start_server(make_config(local_catalog=str(catalog), database_connection=database_url, **settings))
    alice = pv.add_user(srv.ctx, "alice", email="alice@example.org")
    guest = await co.checkout(srv.ctx, alice, co.CheckoutRequest("web1", "announce", 2, "phone-home test"))
    await pv.settle(srv.ctx)
    srv.ctx.db.run_sync(lambda s: s.execute(update(Guest).where(Guest.id == guest.id)
                                            .values(phonehome_token_hash=hash_token(TOKEN))))
    srv.guest = pv.guest(srv.ctx, guest.id)
    assert srv.guest.step == Step.INSTALLING
    return srv


def _unchanged(srv: Any) -> None:
    row = pv.guest(srv.ctx, srv.guest.id)
    assert (row.step, row.ip, row.hostname) == (Step.INSTALLING, "", "")


async def test_set_records_the_address_and_makes_the_guest_ready(installing: Any) -> None:
    srv = installing
    mac = srv.guest.mac
    query = urlencode({"token": TOKEN, "ip": "10.0.2.15", "hostname": "web1.example.org"})
    reply = await srv.fetch(f"/guest/{mac}/set?{query}")
    assert reply.code == 200
    assert json.loads(reply.body) == {"name": "web1", "ip": "10.0.2.15", "hostname": "web1.example.org",
                                      "step": "ready"}
    row = pv.guest(srv.ctx, srv.guest.id)
    assert (row.step, row.ip, row.hostname) == (Step.READY, "10.0.2.15", "web1.example.org")
    assert ("guest.ready", "ok") in pv.audit_actions(srv.ctx, "web1")
    # Again (a reinstall, a new lease): POST with a form body, MAC spelled upper-case with dashes.
    body = urlencode({"token": TOKEN, "ip": "192.0.2.7", "hostname": "web1"})
    reply = await srv.fetch(f"/guest/{mac.upper().replace(':', '-')}/set", method="POST", body=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.code == 200
    assert pv.guest(srv.ctx, srv.guest.id).ip == "192.0.2.7"
    assert ("guest.phonehome", "ok") in pv.audit_actions(srv.ctx, "web1")


@pytest.mark.parametrize("how", ["wrong token", "no token", "unknown mac", "not a mac"])
async def test_a_bad_token_or_unknown_mac_is_a_403_with_a_log_line_and_nothing_changes(
        installing: Any, how: str, caplog: pytest.LogCaptureFixture) -> None:
    srv = installing
    mac = {"unknown mac": "52:54:00:ff:ff:ff", "not a mac": "zz-zz-zz-zz-zz-zz"}.get(how, srv.guest.mac)
    token = {"wrong token": "nope", "no token": ""}.get(how, TOKEN)
    with caplog.at_level(logging.WARNING, logger="fogmachine.services.phonehome"):
        for path in (f"/guest/{mac}/set?{urlencode({'token': token, 'ip': '10.9.9.9'})}",
                     f"/guest/{mac}/getuser?{urlencode({'token': token})}"):
            reply = await srv.fetch(path)
            if how == "not a mac":
                assert reply.code == 404  # not even one of our routes
                continue
            assert reply.code == 403
            assert json.loads(reply.body)["error"]["message"] == "unknown guest or wrong token"
    _unchanged(srv)
    if how != "not a mac":
        assert any("phone-home refused" in r.getMessage() for r in caplog.records)


async def test_bad_values_from_a_genuine_guest_are_a_400_and_nothing_changes(installing: Any) -> None:
    srv = installing
    for field, value in (("ip", "10.0.2.300"), ("hostname", "bad_name!")):
        reply = await srv.fetch(f"/guest/{srv.guest.mac}/set?{urlencode({'token': TOKEN, field: value})}")
        assert reply.code == 400
        assert json.loads(reply.body)["error"]["details"]["field"] == field
    _unchanged(srv)


async def test_getuser_answers_the_owner(installing: Any) -> None:
    srv = installing
    reply = await srv.fetch(f"/guest/{srv.guest.mac}/getuser?{urlencode({'token': TOKEN})}")
    assert reply.code == 200
    assert json.loads(reply.body) == {"username": "alice", "email": "alice@example.org", "ssh_key": ""}
    _unchanged(srv)


async def test_a_failed_guest_cannot_phone_home(installing: Any) -> None:
    srv = installing
    srv.ctx.db.run_sync(lambda s: s.execute(update(Guest).where(Guest.id == srv.guest.id)
                                            .values(step=Step.FAILED)))
    reply = await srv.fetch(f"/guest/{srv.guest.mac}/set?{urlencode({'token': TOKEN, 'ip': '10.0.2.15'})}")
    assert reply.code == 403
    assert pv.guest(srv.ctx, srv.guest.id).ip == ""


BAD_VALUES = [
    ("ip", "::1%<img src=x>"),
    ("ip", "::1%a\nFAKE LOG LINE"),
    ("ip", "10.0.2.15\x00"),
    ("ip", "10.0.2.15\n"),
    ("ip", " 10.0.2.15"),
    ("ip", "fe80::1%" + "e" * 16),  # longer than any interface name
    ("ip", "1" * 500),
    ("ip", "\uff11\uff10.0.2.15"),  # full-width digits
    ("hostname", "web1\n"),
    ("hostname", "web1\r\nFAKE LOG LINE"),
    ("hostname", "web1\x00"),
    ("hostname", "w\u0435b1"),  # a Cyrillic small ie for the e
    ("hostname", "web1 "),
    ("hostname", "<img src=x>"),
    ("hostname", ("a" * 60 + ".") * 5),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[repr(v)[:24] for _, v in BAD_VALUES])
async def test_an_ip_or_hostname_that_is_not_exactly_one_is_a_400_naming_it_and_never_logged_raw(
        installing: Any, field: str, value: str, caplog: pytest.LogCaptureFixture) -> None:
    srv = installing
    with caplog.at_level(logging.DEBUG):
        for method in ("GET", "POST"):
            query = urlencode({"token": TOKEN, field: value})
            if method == "GET":
                reply = await srv.fetch(f"/guest/{srv.guest.mac}/set?{query}")
            else:
                reply = await srv.fetch(f"/guest/{srv.guest.mac}/set", method="POST", body=query,
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert reply.code == 400, reply.body
            error = json.loads(reply.body)["error"]
            assert error["details"]["field"] == field
            assert value not in error["message"]
    _unchanged(srv)
    for record in caplog.records:
        text = record.getMessage()
        assert "FAKE LOG LINE" not in text and "<img" not in text and "\x00" not in text, text


async def test_a_zone_id_that_names_an_interface_is_accepted(installing: Any) -> None:
    srv = installing
    reply = await srv.fetch(f"/guest/{srv.guest.mac}/set?{urlencode({'token': TOKEN, 'ip': 'fe80::1%eth0'})}")
    assert reply.code == 200, reply.body
    assert pv.guest(srv.ctx, srv.guest.id).ip == "fe80::1%eth0"


async def test_after_the_install_and_its_grace_the_token_is_refused_with_an_audit_line(
        make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # No grace at all: the window closes with the first phone-home (the guest has no disk: nothing pending).
    srv = await _installing(make_config, start_server, tmp_path, database_url, phonehome_grace_seconds="0")
    mac = srv.guest.mac
    with caplog.at_level(logging.DEBUG):
        reply = await srv.fetch(f"/guest/{mac}/set?{urlencode({'token': TOKEN, 'ip': '10.0.2.15'})}")
        assert reply.code == 200
        row = pv.guest(srv.ctx, srv.guest.id)
        assert row.step == Step.READY and row.phonehome_until is not None and not row.diskboot_pending
        # Afterwards the same token changes nothing and tells nothing.
        reply = await srv.fetch(f"/guest/{mac}/set?{urlencode({'token': TOKEN, 'ip': '192.0.2.66'})}")
        assert reply.code == 403
        assert "no longer works" in json.loads(reply.body)["error"]["message"]
        reply = await srv.fetch(f"/guest/{mac}/getuser?{urlencode({'token': TOKEN})}")
        assert reply.code == 403 and b"alice" not in reply.body
    row = pv.guest(srv.ctx, srv.guest.id)
    assert (row.step, row.ip) == (Step.READY, "10.0.2.15")
    refusals = srv.ctx.db.run_sync(lambda s: [
        (e.actor_name, e.remote_addr, e.message) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "guest.phonehome", AuditEvent.result == "refused",
                                     AuditEvent.object_name == "web1").order_by(AuditEvent.id))])
    assert refusals == [("phone-home", "127.0.0.1", "token expired (guest is ready)")] * 2
    assert any("token expired" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


async def test_a_wrong_token_for_a_known_guest_is_logged_but_not_audited(installing: Any) -> None:
    # An audit write for known MACs only would let the 403's timing tell which MACs exist.
    srv = installing
    reply = await srv.fetch(f"/guest/{srv.guest.mac}/set?{urlencode({'token': 'guessing-0123', 'ip': '10.9.9.9'})}")
    assert reply.code == 403
    assert json.loads(reply.body)["error"]["message"] == "unknown guest or wrong token"
    events = srv.ctx.db.run_sync(lambda s: list(s.scalars(
        select(AuditEvent).where(AuditEvent.action == "guest.phonehome"))))
    assert events == []
    _unchanged(srv)
