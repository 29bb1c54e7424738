"""Guests through the API, on libvirt test-driver hosts with the local catalog (catalog.conf), on each database.

Every write route of the guests API runs on SQLite, MariaDB and PostgreSQL: ``make_api`` and ``api``
below wrap the shared fixtures of tests/support/apiclient.py with the ``database_url`` of the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fogmachine import placement
from fogmachine.db.models import AuditEvent, Guest, utcnow
from fogmachine.services import expiry, reconcile
from tests.support import cobbler as cb
from tests.support import testhosts
from tests.support.hostfleet import write_pool_host
from tests.support.tcpproxy import TcpProxy
from tests.web.pages.conftest import PageClient

CHECKOUT = {"name": "web1", "target": "small", "days": 3, "purpose": "tests"}


@pytest.fixture
def make_api(make_api, database_url):
    """The shared ``make_api``, on this run's database (sqlite, mariadb, postgresql)."""

    async def make(hosts=None, **settings):
        return await make_api(hosts, **{"database_connection": database_url, **settings})

    return make


@pytest.fixture
async def api(make_api):
    return await make_api()


async def settle(api, guest_id: int, as_: str = "alice") -> dict:
    """Follow a guest until provisioning ends (ready or failed); bounded, never a timing assertion."""
    for _ in range(200):
        r = await api.call("GET", f"/api/v1/guests/{guest_id}", as_=as_)
        assert r.code == 200, r.body
        if r.json["step"] in ("ready", "failed"):
            return r.json
        await asyncio.sleep(0.05)
    raise AssertionError(f"guest {guest_id} still provisioning: {r.json}")


async def checkout(api, as_: str = "alice", **changes) -> dict:
    r = await api.call("POST", "/api/v1/guests", as_=as_, body={**CHECKOUT, **changes})
    assert r.code == 202, r.body
    assert r.headers["Location"] == f"/api/v1/guests/{r.json['id']}"
    guest = await settle(api, r.json["id"], as_)
    assert guest["step"] == "ready", guest
    return guest


def _guest(session, guest_id):
    return session.get(Guest, guest_id)


def _guest_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Guest))


async def test_checkout_answers_202_with_location_then_becomes_ready(api):
    r = await api.call("POST", "/api/v1/guests", body=CHECKOUT)
    assert r.code == 202
    made = r.json
    assert made["name"] == "web1" and made["owner"] == "alice" and made["host"] in ("h1", "h2")
    assert made["step"] in ("placing", "registering", "defining", "booting", "ready")
    assert r.headers["Location"] == f"/api/v1/guests/{made['id']}"
    guest = await settle(api, made["id"])
    assert guest["step"] == "ready", guest
    # The state is libvirt's, as the host's events and resyncs report it: wait for "running" (a resync that
    # read the host between define and start may still be writing "shutoff"; the next event corrects it).
    for _ in range(200):
        if guest["state"] == "running":
            break
        await asyncio.sleep(0.05)
        guest = (await api.call("GET", f"/api/v1/guests/{made['id']}")).json
    assert guest["state"] == "running", guest
    assert guest["expires_at"] > guest["created_at"]


async def test_checkout_refusals_name_the_field_and_leave_nothing(api):
    before = api.run(_guest_count)
    for body, field in ((dict(CHECKOUT, name="Web_1"), "name"), (dict(CHECKOUT, target="nope"), "target"),
                        (dict(CHECKOUT, days=31), "days"), (dict(CHECKOUT, days="3"), "days"),
                        ({k: v for k, v in CHECKOUT.items() if k != "purpose"}, "purpose"),
                        (dict(CHECKOUT, host="h1"), "host")):
        r = await api.call("POST", "/api/v1/guests", body=body)
        assert r.code == 400, (body, r.body)
        assert r.error["details"]["field"] == field, (field, r.body)
    assert api.run(_guest_count) == before
    r = await api.call("POST", "/api/v1/guests", as_="alice-read", body=CHECKOUT)
    assert r.code == 403
    assert api.run(_guest_count) == before


async def test_duplicate_name_and_no_capacity(make_api):
    api = await make_api(hosts={"h1": {"cpus": 2, "memory_mb": 2048}})
    await checkout(api)
    r = await api.call("POST", "/api/v1/guests", body=CHECKOUT)
    assert r.code in (400, 409) and r.error["details"]["field"] == "name"
    before = api.run(_guest_count)
    r = await api.call("POST", "/api/v1/guests", body=dict(CHECKOUT, name="big", target="large"))
    assert r.code == 409 and r.error["code"] == "no_capacity"
    assert api.run(_guest_count) == before


async def test_lifecycle_actions_and_conflicts(api):
    guest = await checkout(api)
    gid = guest["id"]
    for action, state in (("pause", "paused"), ("unpause", "running"), ("destroy", "shutoff"),
                          ("start", "running"), ("restart", "running"), ("refresh", "running")):
        r = await api.call("POST", f"/api/v1/guests/{gid}/{action}")
        assert r.code == 200, (action, r.body)
        assert r.json["state"] == state, action
    r = await api.call("POST", f"/api/v1/guests/{gid}/start")
    assert r.code == 409 and "already running" in r.error["message"]
    r = await api.call("POST", f"/api/v1/guests/{gid}/unpause", body={})
    assert r.code == 409
    r = await api.call("POST", f"/api/v1/guests/{gid}/stop")
    assert r.code == 200
    actions = api.run(lambda s: [e.action for e in s.scalars(select(AuditEvent).where(
        AuditEvent.object_type == "guest", AuditEvent.result == "ok"))])
    assert "guest.pause" in actions and "guest.restart" in actions


async def test_extend(api):
    guest = await checkout(api)
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={"days": 2})
    assert r.code == 200
    assert r.json["expires_at"] > guest["expires_at"]
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={"days": 30})
    assert r.code == 200
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={"days": 30})
    assert r.code == 200
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={"days": 30})
    assert r.code == 400 and r.error["details"]["field"] == "days"  # past max_lease_days (90)
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={})
    assert r.code == 400 and r.error["details"]["field"] == "days"
    r = await api.call("POST", f"/api/v1/guests/{guest['id']}/extend", body={"days": 0})
    assert r.code == 400 and r.error["details"]["field"] == "days"


async def test_forced_delete_is_for_administrators(api):
    """force=true (for a host that is down; the service test covers that path) is refused to owners and
    checked like any query parameter; on a healthy host it is a plain delete."""
    guest = await checkout(api)
    r = await api.call("DELETE", f"/api/v1/guests/{guest['id']}?force=true")
    assert r.code == 403 and "administrators" in r.error["message"]
    r = await api.call("DELETE", f"/api/v1/guests/{guest['id']}?force=perhaps", as_="admin")
    assert r.code == 400 and r.error["details"]["field"] == "force"
    assert (await api.call("GET", f"/api/v1/guests/{guest['id']}")).json["step"] == "ready"  # still there
    assert (await api.call("DELETE", f"/api/v1/guests/{guest['id']}?force=true", as_="admin")).code == 204
    r = await api.call("GET", f"/api/v1/guests/{guest['id']}", as_="admin")
    assert (r.json["step"], r.json["step_reason"]) == ("retired", "deleted by admin")


async def test_delete_keeps_the_guest_as_history(api):
    guest = await checkout(api)
    r = await api.call("DELETE", f"/api/v1/guests/{guest['id']}")
    assert r.code == 204 and r.body == b""
    r = await api.call("GET", f"/api/v1/guests/{guest['id']}")
    # (Not its state: a host resync that read the row just before the delete may still write "missing"
    # over it; conditional writes against such stale reads are the resync's own fix, not this test's.)
    assert r.code == 200 and (r.json["step"], r.json["step_reason"]) == ("retired", "deleted by alice")
    assert r.json["retired_at"] is not None
    r = await api.call("DELETE", f"/api/v1/guests/{guest['id']}")
    assert r.code == 409 and "kept as history" in r.error["message"]
    assert [g["id"] for g in (await api.call("GET", "/api/v1/guests")).json["guests"]] == []
    r = await api.call("GET", "/api/v1/guests?include_retired=true")
    assert [g["id"] for g in r.json["guests"]] == [guest["id"]]
    # No live managed row is left. (A host resync whose snapshot was taken before the undefine may
    # briefly mirror the vanishing domain as an unmanaged row; the next resync removes it.)
    live = api.run(lambda s: s.scalars(select(Guest).where(Guest.live_name == "web1")).all())
    assert live == []


def _audit_by_id(session) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for event in session.scalars(select(AuditEvent).where(AuditEvent.object_type == "guest")):
        found.setdefault(event.object_id, set()).add(event.object_name)
    return found


async def test_an_id_is_never_given_to_another_guest(api):
    """SQLite used to give a new row the largest id + 1: after a delete (which removed the row) or a purge of
    the history, the next guest got the old id, and the audit log of that id named several guests."""
    first = await checkout(api, name="web1")
    assert (await api.call("DELETE", f"/api/v1/guests/{first['id']}")).code == 204
    second = await checkout(api, name="web2")
    assert second["id"] > first["id"]
    assert (await api.call("DELETE", f"/api/v1/guests/{second['id']}")).code == 204
    # Even once the history is purged (every guest row gone), the ids stay used.
    later = utcnow() + dt.timedelta(days=365)
    assert await expiry.purge_history(api.srv.ctx, later) == 2
    assert api.run(_guest_count) == 0
    third = await checkout(api, name="web3")
    assert third["id"] > second["id"]
    by_id = api.run(_audit_by_id)
    assert by_id[str(first["id"])] == {"web1"} and by_id[str(second["id"])] == {"web2"}
    assert by_id[str(third["id"])] == {"web3"}
    actions = api.run(lambda s: [e.action for e in s.scalars(select(AuditEvent).where(
        AuditEvent.object_type == "guest", AuditEvent.object_id == str(first["id"])).order_by(AuditEvent.id))])
    assert actions[0] == "guest.checkout" and actions[-1] == "guest.delete"


async def test_other_users_guests_cannot_be_seen_or_touched_by_guessing_ids(api):
    bobs = await checkout(api, as_="bob", name="bobs")
    gid = bobs["id"]
    assert (await api.call("GET", f"/api/v1/guests/{gid}")).code == 404
    for action in ("start", "stop", "restart", "pause", "unpause", "destroy", "refresh"):
        r = await api.call("POST", f"/api/v1/guests/{gid}/{action}")
        assert r.code == 404, (action, r.body)
    assert (await api.call("POST", f"/api/v1/guests/{gid}/extend", body={"days": 1})).code == 404
    assert (await api.call("DELETE", f"/api/v1/guests/{gid}")).code == 404
    row = api.run(_guest, gid)
    assert row is not None and row.state == "running" and row.expires_at.isoformat()[:16] == bobs["expires_at"][:16]
    r = await api.call("GET", "/api/v1/guests")
    assert r.json["guests"] == [] and r.json["total"] == 0
    r = await api.call("GET", "/api/v1/guests?owner=bob")
    assert r.json["total"] == 0
    # An administrator sees and acts on it.
    r = await api.call("GET", f"/api/v1/guests/{gid}", as_="admin")
    assert r.code == 200 and r.json["owner"] == "bob"
    assert (await api.call("POST", f"/api/v1/guests/{gid}/pause", as_="admin")).json["state"] == "paused"


async def test_read_scope_token_cannot_act(api):
    guest = await checkout(api)
    for action in ("destroy", "refresh"):
        assert (await api.call("POST", f"/api/v1/guests/{guest['id']}/{action}", as_="alice-read")).code == 403
    assert (await api.call("DELETE", f"/api/v1/guests/{guest['id']}", as_="alice-read")).code == 403
    assert (await api.call("GET", f"/api/v1/guests/{guest['id']}", as_="alice-read")).code == 200
    assert api.run(_guest, guest["id"]).state == "running"


async def test_list_filters_and_pagination(make_api):
    api = await make_api(hosts={"h1": {}, "h2": {"domains": [testhosts.TestDomain("stray", mac="52:54:00:00:00:99")]}})
    mine = [await checkout(api, name=f"a{i}") for i in range(3)]
    await checkout(api, as_="bob", name="b0")
    r = await api.call("GET", "/api/v1/guests")
    assert [g["name"] for g in r.json["guests"]] == ["a0", "a1", "a2"]
    assert r.json["total"] == 3 and r.json["offset"] == 0 and r.json["limit"] == 100
    r = await api.call("GET", "/api/v1/guests?limit=2&offset=1")
    assert [g["name"] for g in r.json["guests"]] == ["a1", "a2"] and r.json["total"] == 3
    host = mine[0]["host"]
    r = await api.call("GET", f"/api/v1/guests?host={host}")
    assert {g["host"] for g in r.json["guests"]} == {host}
    await api.call("POST", f"/api/v1/guests/{mine[1]['id']}/pause")
    r = await api.call("GET", "/api/v1/guests?state=paused")
    assert [g["name"] for g in r.json["guests"]] == ["a1"]  # the action shows at once (this process's commit)
    r = await api.call("GET", "/api/v1/guests?step=ready&state=running")
    assert [g["name"] for g in r.json["guests"]] == ["a0", "a2"]
    r = await api.call("GET", "/api/v1/guests", as_="admin")
    assert {g["owner"] for g in r.json["guests"]} == {"alice", "bob"} and r.json["total"] == 4
    r = await api.call("GET", "/api/v1/guests?owner=bob", as_="admin")
    assert [g["name"] for g in r.json["guests"]] == ["b0"]
    r = await api.call("GET", "/api/v1/guests?include_unmanaged=true", as_="admin")
    unmanaged = [g for g in r.json["guests"] if not g["managed"]]
    assert [g["name"] for g in unmanaged] == ["stray"] and unmanaged[0]["owner"] is None
    r = await api.call("GET", "/api/v1/guests?include_unmanaged=true")
    assert all(g["managed"] for g in r.json["guests"])
    for query, field in (("?state=flying", "state"), ("?limit=0", "limit"), ("?owner=" + "x" * 65, "owner")):
        r = await api.call("GET", "/api/v1/guests" + query)
        assert r.code == 400 and r.error["details"]["field"] == field


async def test_unmanaged_domains_are_never_touched(make_api):
    api = await make_api(hosts={"h1": {"domains": [testhosts.TestDomain("stray", state="running")]}})
    r = await api.call("GET", "/api/v1/guests?include_unmanaged=true", as_="admin")
    stray = next(g for g in r.json["guests"] if g["name"] == "stray")
    r = await api.call("POST", f"/api/v1/guests/{stray['id']}/destroy", as_="admin")
    assert r.code == 409 and "never touched" in r.error["message"]
    assert (await api.call("DELETE", f"/api/v1/guests/{stray['id']}", as_="admin")).code == 409
    assert (await api.call("GET", f"/api/v1/guests/{stray['id']}")).code == 404


async def test_list_etag_gives_304_until_something_changes(api):
    guest = await checkout(api)
    # The host's resync may still write the new guest's row (its state, its VNC port) after the guest is
    # ready: a 200 then is right, as long as its body really differs. Once nothing changes, 304 it must be.
    for _ in range(50):
        first = await api.call("GET", "/api/v1/guests")
        etag = first.headers["Etag"]
        r = await api.call("GET", "/api/v1/guests", headers={"If-None-Match": etag})
        if r.code != 200:
            break
        assert r.body != first.body and r.headers["Etag"] != etag, "same list, yet no 304"
        await asyncio.sleep(0.1)
    assert r.code == 304 and r.body == b""
    await api.call("POST", f"/api/v1/guests/{guest['id']}/pause")
    r = await api.call("GET", "/api/v1/guests", headers={"If-None-Match": etag})
    assert r.code == 200 and r.json["guests"][0]["state"] == "paused"


def _guest_on(session, host_name: str, owner: str) -> int:
    from fogmachine.db.models import Host, User

    host = session.scalar(select(Host).where(Host.name == host_name))
    user = session.scalar(select(User).where(User.username == owner))
    guest = Guest(name="stranded", live_name="stranded", domain_name="stranded", host_id=host.id,
                  owner_id=user.id, state="unknown", step="ready", mac="52:54:00:12:34:56")
    session.add(guest)
    session.flush()
    return guest.id


async def test_an_unreachable_host_is_a_502_in_the_error_shape_and_nothing_changes(make_api):
    api = await make_api(hosts={"h1": {}, "dead": "qemu+tcp://127.0.0.1:1/system"})
    gid = api.run(_guest_on, "dead", "alice")
    for method, path in (("POST", f"/api/v1/guests/{gid}/start"), ("POST", f"/api/v1/guests/{gid}/destroy"),
                         ("DELETE", f"/api/v1/guests/{gid}")):
        r = await api.call(method, path)
        assert r.code in (502, 504), (path, r.body)
        assert r.error["code"] in ("host_unreachable", "backend_error", "backend_timeout")
        assert "dead" in r.error["message"]
    assert api.run(_guest, gid) is not None
    r = await api.call("GET", "/api/v1/hosts/dead")
    assert r.json["state"] in ("down", "unknown")


# -- deleting while a part is down: a host behind a TcpProxy that the test cuts (a real fault) ------------------

LIBVIRTD = ("127.0.0.1", 16509)  # the shared libvirtd; it serves test+tcp:// host files too


def _far_host(tmp_path: Path, proxy: TcpProxy, *, volumes: tuple[str, ...] = ()) -> str:
    """A test-driver host file served by the shared libvirtd through ``proxy``, with a 'default' pool holding
    ``volumes`` already (each connection gets a fresh copy of the file: cutting the proxy loses nothing)."""
    uri = write_pool_host(tmp_path / "far-hosts", "far", tmp_path / "far-pool", cpus=4, memory_mb=8192)
    path = Path(uri[len("test://"):])
    node = ET.fromstring(path.read_text())
    pool = node.find("pool")
    assert pool is not None
    for name in volumes:
        volume = ET.SubElement(pool, "volume")
        ET.SubElement(volume, "name").text = name
        ET.SubElement(volume, "capacity", unit="G").text = "1"
        ET.SubElement(ET.SubElement(volume, "target"), "path").text = str(tmp_path / "far-pool" / name)
    path.write_text(ET.tostring(node, encoding="unicode"))
    return f"test+tcp://127.0.0.1:{proxy.port}{path}"


async def host_state(api, name: str, wanted: str) -> str:
    """Poll the host's state until it is ``wanted`` (bounded; the last state either way)."""
    for _ in range(400):
        state = (await api.call("GET", f"/api/v1/hosts/{name}")).json["state"]
        if state == wanted:
            return state
        await asyncio.sleep(0.05)
    return state


async def test_the_owner_deletes_a_failed_checkout_while_its_host_is_down(make_api, tmp_path, real_hosts):
    """The checkout failed before anything was made on its host (its disk could not be created); then the host
    went down. Deleting used to answer 502 host_unreachable and keep the name taken, though nothing of the
    guest existed there."""
    with TcpProxy(LIBVIRTD) as proxy:
        api = await make_api(hosts={"far": _far_host(tmp_path, proxy, volumes=("web1.qcow2",))})
        assert await host_state(api, "far", "up") == "up"
        r = await api.call("POST", "/api/v1/guests", body=CHECKOUT)
        assert r.code == 202, r.body
        failed = await settle(api, r.json["id"])
        assert failed["step"] == "failed" and "already exists" in failed["step_reason"], failed
        proxy.cut()
        assert await host_state(api, "far", "down") == "down"
        r = await api.call("DELETE", f"/api/v1/guests/{failed['id']}")
        assert r.code == 204, r.body
        r = await api.call("GET", f"/api/v1/guests/{failed['id']}")
        assert (r.json["step"], r.json["step_reason"]) == ("retired", "deleted by alice")
        # Its name is free: a new checkout of it is refused only for want of a host that is up.
        r = await api.call("POST", "/api/v1/guests", body=CHECKOUT)
        assert r.code == 409 and r.error["code"] == "no_capacity", r.body


def _failed_with_a_volume(session, owner: str) -> int:
    from fogmachine.db.models import Host, User

    host = session.scalar(select(Host).where(Host.name == "far"))
    user = session.scalar(select(User).where(User.username == owner))
    guest = Guest(name="web2", live_name="web2", domain_name=None, host_id=host.id, owner_id=user.id,
                  state="undefined", step="failed", step_reason="define failed (cleanup incomplete: ...)",
                  volume_path="/pool/web2.qcow2", mac="52:54:00:12:34:57")
    session.add(guest)
    session.flush()
    return guest.id


async def test_a_failed_checkout_that_left_a_volume_on_a_down_host_is_retired_naming_it(make_api, tmp_path,
                                                                                         real_hosts):
    """What the failed checkout could not remove stays named on the retired row; reconciliation removes it once
    the host is back (here the volume is already gone there: that counts as removed)."""
    with TcpProxy(LIBVIRTD) as proxy:
        api = await make_api(hosts={"far": _far_host(tmp_path, proxy)})
        assert await host_state(api, "far", "up") == "up"
        gid = api.run(_failed_with_a_volume, "alice")
        proxy.cut()
        assert await host_state(api, "far", "down") == "down"
        r = await api.call("DELETE", f"/api/v1/guests/{gid}")
        assert r.code == 502 and r.error["code"] == "host_unreachable", r.body
        assert r.error["details"]["deleted"] is True and r.error["details"]["removed"] == []
        assert r.error["details"]["left"] == ["volume /pool/web2.qcow2"]
        assert "is deleted" in r.error["message"] and "left behind: volume /pool/web2.qcow2" in r.error["message"]
        row = api.run(_guest, gid)
        assert (row.step, row.live_name, row.volume_path) == ("retired", None, "/pool/web2.qcow2")
        assert row.step_reason.startswith("deleted by alice with parts left behind (could not delete the volume")
        proxy.restore()
        assert await host_state(api, "far", "up") == "up"
        report = await reconcile.reconcile(api.srv.ctx)
        assert report.leftovers == ["web2"], report
        row = api.run(_guest, gid)
        assert (row.step, row.volume_path) == ("retired", "")
        assert row.step_reason == "deleted by alice; what it left behind (volume /pool/web2.qcow2) was removed later"


COBBLER = ("127.0.0.1", 25151)  # the shared Cobbler's XML-RPC port
COBBLER_PREFIX = "fmtest-gdel-"


async def wait_step(api, guest_id: int, steps: tuple[str, ...]) -> dict:
    for _ in range(400):
        guest = (await api.call("GET", f"/api/v1/guests/{guest_id}")).json
        if guest["step"] in steps:
            return guest
        await asyncio.sleep(0.05)
    raise AssertionError(f"guest {guest_id} never reached {steps}: {guest}")


def _usage_on(session, host_name: str):
    from fogmachine.db.models import Host

    host = session.scalar(select(Host).where(Host.name == host_name))
    return placement.usage_by_host(session, [host.id]).get(host.id, placement.Usage())


def _audit_of(session, guest_id: int) -> list[str]:
    return [e.message for e in session.scalars(select(AuditEvent).where(
        AuditEvent.object_type == "guest", AuditEvent.object_id == str(guest_id)).order_by(AuditEvent.id))]


@pytest.mark.cobbler
async def test_a_delete_with_cobbler_down_says_what_is_left_and_reconciliation_finishes_it(make_api):
    """Cobbler (the real one, behind a proxy the test cuts) is down when a guest is deleted. The delete used to
    remove the domain and then answer 502 without saying so, leave the guest ready (then "missing") holding
    its capacity, and reconciliation later said its domain had vanished."""
    cb.require()
    cb.seed()
    name = COBBLER_PREFIX + secrets.token_hex(3)
    try:
        with TcpProxy(COBBLER) as proxy:
            api = await make_api(hosts={"h1": {"cpus": 4, "memory_mb": 4096}},
                                 cobbler_url=f"http://127.0.0.1:{proxy.port}/", cobbler_password=cb.PASSWORD)
            made = []
            for guest_name in (name, f"{name}-p"):
                r = await api.call("POST", "/api/v1/guests", body={"name": guest_name, "target": cb.PROFILE,
                                                                   "days": 1, "purpose": "cobbler down"})
                assert r.code == 202, r.body
                made.append(r.json["id"])
                assert (await wait_step(api, made[-1], ("installing", "ready", "failed")))["step"] == "installing"
            gid, page_gid = made
            assert api.run(_usage_on, "h1").guests == 2
            system, _ = cb.proxy()
            assert system.get_system(name) != "~"
            browser = PageClient(api.srv)
            await browser.login("alice")

            proxy.cut()
            # On the page: the flash says the same.
            r = await browser.post(f"/guests/{page_gid}/delete", {"confirm": "yes"})
            flashes = (await browser.follow(r)).flashes
            assert len(flashes) == 1 and flashes[0][0] == "error", flashes
            assert flashes[0][1].startswith(f"guest {name}-p is deleted (kept as history, its name free); removed its "
                                            f"domain {name}-p on h1; left behind: Cobbler system {name}-p (could not "
                                            f"remove the Cobbler system {name}-p (")
            assert flashes[0][1].endswith("reconciliation removes it when it can")
            assert api.run(_guest, page_gid).cobbler_system == f"{name}-p"
            r = await api.call("DELETE", f"/api/v1/guests/{gid}")
            assert r.code == 502 and r.error["code"] == "cobbler_unreachable", r.body
            details = r.error["details"]
            assert details["deleted"] is True and details["guest"] == name
            assert details["removed"] == [f"domain {name} on h1"] and details["left"] == [f"Cobbler system {name}"]
            assert f"removed its domain {name} on h1; left behind: Cobbler system {name}" in r.error["message"]
            row = api.run(_guest, gid)
            assert (row.step, row.live_name, row.domain_name, row.cobbler_system) == ("retired", None, None, name)
            assert row.step_reason.startswith(f"deleted by alice with parts left behind (could not remove the "
                                              f"Cobbler system {name}")
            assert api.run(_usage_on, "h1").guests == 0  # no domain left: no capacity held
            assert name not in [d.name for d in await api.srv.ctx.hosts.get("h1").list_domains()]
            assert system.get_system(name) != "~"  # really still in Cobbler

            report = await reconcile.reconcile(api.srv.ctx)  # Cobbler still down: nothing changes
            assert report.leftovers == [] and report.missing == [] and api.run(_guest, gid).cobbler_system == name

            proxy.restore()
            report = await reconcile.reconcile(api.srv.ctx)
            assert sorted(report.leftovers) == [name, f"{name}-p"] and report.missing == [], report
            assert system.get_system(name) == "~"  # gone from the real Cobbler
            row = api.run(_guest, gid)
            assert (row.step, row.cobbler_system) == ("retired", "")
            assert row.step_reason == f"deleted by alice; what it left behind (Cobbler system {name}) was removed later"
            messages = api.run(_audit_of, gid)
            assert not [m for m in messages if "vanished" in m], messages
            assert messages[-1] == f"removed what was left behind: Cobbler system {name}"
    finally:
        cb.remove_systems(COBBLER_PREFIX)
