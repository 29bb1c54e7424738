"""The claim through the running server: validation, placement, the row, refusals and the preview."""

from __future__ import annotations

from typing import Any

import pytest

from fogmachine.db.models import GuestState, Step
from fogmachine.errors import CobblerError, NoCapacity, PermissionDenied, ValidationError
from fogmachine.services import checkout as co
from fogmachine.services.actor import Actor
from fogmachine.services.checkout import CheckoutRequest
from tests.services.checkout.conftest import req
from tests.support import provisioning as pv


async def test_checkout_places_defines_and_starts_the_guest(server: Any) -> None:
    srv = await server()
    ctx = srv.ctx
    guest = await co.checkout(ctx, srv.alice, req("web1"))
    # The answer comes before the domain exists: the steps run in the background.
    assert guest.step == Step.DEFINING and guest.host.name == "h1" and guest.owner_id == srv.alice.user_id
    assert guest.mac.startswith("52:54:00:") and len(guest.phonehome_token_hash) == 64
    assert guest.live_name == "web1" and guest.expires_at is not None and guest.worker
    await pv.settle(ctx)
    row = pv.guest(ctx, guest.id)
    assert (row.step, row.state, row.step_reason, row.worker) == (Step.READY, GuestState.RUNNING, "", "")
    info = await pv.Domains(ctx).get("h1", "web1")
    assert info is not None and info.active and info.guest_id == guest.id
    assert info.mac == guest.mac and info.memory_mb == 1024 and info.vcpus == 1 and info.uuid == guest.uuid
    assert ("guest.checkout", "ok") in pv.audit_actions(ctx, "web1")


@pytest.mark.parametrize(("request_", "field"), [
    (req("Web1"), "name"), (req("-web"), "name"), (req("web_1"), "name"), (req("a" * 64), "name"),
    (req(""), "name"), (req("web", days=0), "days"), (req("web", days=31), "days"), (req("web", days="x"), "days"),
    (req("web", purpose=" "), "purpose"), (req("web", purpose="x" * 2001), "purpose"),
    (req("web", target="nope"), "target"), (req("web", target=""), "target"),
])
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(server: Any, request_: CheckoutRequest,
                                                                       field: str) -> None:
    srv = await server()
    with pytest.raises(ValidationError) as info:
        await co.checkout(srv.ctx, srv.alice, request_)
    assert info.value.status == 400 and info.value.details["field"] == field
    if field == "target" and request_.target:
        assert repr(request_.target) in info.value.message
    assert pv.count_guests(srv.ctx) == 0


async def test_a_duplicate_name_is_refused_while_the_first_lives(server: Any) -> None:
    srv = await server()
    await co.checkout(srv.ctx, srv.alice, req("web1"))
    bob = pv.add_user(srv.ctx, "bob")
    with pytest.raises(ValidationError) as info:
        await co.checkout(srv.ctx, bob, req("web1"))
    assert info.value.details["field"] == "name" and "web1 already exists" in info.value.message
    await pv.settle(srv.ctx)
    assert pv.count_guests(srv.ctx) == 1


async def test_no_room_is_a_409_with_what_was_asked_and_the_most_free(server: Any) -> None:
    srv = await server()
    await co.checkout(srv.ctx, srv.alice, req("big1", "big"))
    with pytest.raises(NoCapacity) as info:
        await co.checkout(srv.ctx, srv.alice, req("big2", "big"))
    error = info.value
    assert error.status == 409
    assert "6144 MiB and 2 vCPU(s)" in error.message and "2048 MiB (on h1)" in error.message
    assert error.details["requested"] == {"ram_mb": 6144, "vcpus": 2, "virt_type": "kvm"}
    assert error.details["most_free"]["ram_mb"] == 2048
    await pv.settle(srv.ctx)
    assert [g.name for g in pv.guests(srv.ctx)] == ["big1"]
    assert ("guest.checkout", "refused") in pv.audit_actions(srv.ctx, "big2")


async def test_read_only_tokens_and_ownerless_actors_cannot_check_out(server: Any) -> None:
    srv = await server()
    reader = Actor(srv.alice.user_id, "alice", scope="read")
    with pytest.raises(PermissionDenied):
        await co.checkout(srv.ctx, reader, req("web1"))
    with pytest.raises(PermissionDenied):
        await co.checkout(srv.ctx, Actor.system(), req("web1"))
    assert pv.count_guests(srv.ctx) == 0


@pytest.mark.parametrize(("policy", "expected"), [("spread", ["wide", "wide", "wide"]),
                                                  ("pack", ["narrow", "narrow", "wide"])])
async def test_placement_policy(server: Any, policy: str, expected: list[str]) -> None:
    srv = await server(hosts={"narrow": {"cpus": 4, "memory_mb": 2048}, "wide": {"cpus": 4, "memory_mb": 8192}},
                       placement_policy=policy)
    placed = [(await co.checkout(srv.ctx, srv.alice, req(f"g{i}"))).host.name for i in range(3)]
    assert placed == expected
    await pv.settle(srv.ctx)


async def test_preview_says_where_or_why_not(server: Any) -> None:
    srv = await server()
    answer = await co.preview(srv.ctx, srv.alice, "big")
    assert answer["host"] == "h1" and answer["fits"] and answer["target"]["ram_mb"] == 6144
    await co.checkout(srv.ctx, srv.alice, req("big1", "big"))
    answer = await co.preview(srv.ctx, srv.alice, "big")
    assert answer["host"] is None and "2048 MiB (on h1)" in answer["reason"]
    assert answer["hosts"] == [{"name": "h1", "free_ram_mb": 2048, "free_vcpus": 14, "fits": False,
                                "reason": "2048 MiB free"}]
    with pytest.raises(ValidationError):
        await co.preview(srv.ctx, srv.alice, "nope")
    await pv.settle(srv.ctx)


async def test_an_unreachable_cobbler_is_a_502_naming_it_and_nothing_is_made(server: Any) -> None:
    srv = await server(cobbler_url="http://127.0.0.1:9/cobbler_api", cobbler_timeout="2")
    with pytest.raises(CobblerError) as info:
        await co.checkout(srv.ctx, srv.alice, req("web1", "some-profile"))
    assert info.value.status == 502 and "http://127.0.0.1:9/cobbler_api" in info.value.message
    assert pv.count_guests(srv.ctx) == 0


def test_macs_are_locally_administered_qemu_macs() -> None:
    macs = {co.new_mac() for _ in range(200)}
    assert len(macs) > 190
    assert all(m.startswith("52:54:00:") and len(m) == 17 for m in macs)
