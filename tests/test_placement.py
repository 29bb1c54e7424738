"""Placement rules, as pure functions over host rows and what their guests use."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fogmachine import placement
from fogmachine.db.models import Step
from fogmachine.placement import Demand, Usage


@dataclass
class H:
    id: int
    name: str
    total_memory_mb: int = 8192
    cpus: int = 4
    virt_type: str = "kvm"
    enabled: bool = True
    state: str = "up"


@dataclass
class G:
    host_id: int | None
    ram_mb: int
    vcpus: int
    step: str = Step.READY


def test_usage_counts_provisioning_guests_but_not_failed_or_retired() -> None:
    guests = [G(1, 1024, 1, Step.REGISTERING), G(1, 2048, 2, Step.INSTALLING), G(1, 4096, 4, Step.FAILED),
              G(1, 512, 1, Step.RETIRED), G(2, 256, 1), G(None, 999, 9)]
    usage = placement.usage_of(guests)
    assert usage == {1: Usage(3072, 3, 2), 2: Usage(256, 1, 1)}


def test_room_reasons() -> None:
    demand = Demand(2048, 2, "kvm")
    assert placement.room_on(H(1, "a"), Usage(), demand, 1.0).fits
    assert placement.room_on(H(1, "a", enabled=False), Usage(), demand, 1.0).reason == "disabled"
    assert placement.room_on(H(1, "a", state="down"), Usage(), demand, 1.0).reason == "host is down"
    assert "cannot run" in placement.room_on(H(1, "a", virt_type="qemu"), Usage(), demand, 1.0).reason
    assert placement.room_on(H(1, "a"), Usage(7000, 0), demand, 1.0).reason == "1192 MiB free"
    assert placement.room_on(H(1, "a"), Usage(0, 3), demand, 1.0).reason == "1 vCPUs free"
    # cpu_overcommit multiplies the physical CPUs
    assert placement.room_on(H(1, "a"), Usage(0, 3), demand, 2.0).fits
    assert placement.room_on(H(1, "a", total_memory_mb=0), Usage(), demand, 1.0).reason == "capacity not known yet"
    assert placement.room_on(H(1, "a"), Usage(), demand, 1.0, excluded=True).reason.startswith("a domain")


@pytest.mark.parametrize(("host", "guest", "ok"), [
    ("kvm", "kvm", True), ("kvm", "qemu", True), ("qemu", "qemu", True), ("qemu", "kvm", False),
    ("test", "kvm", True), ("test", "xen", True), ("xen", "kvm", False), ("lxc", "lxc", True),
])
def test_virt_type_compatibility(host: str, guest: str, ok: bool) -> None:
    assert placement.compatible(host, guest) is ok


def test_domain_type_follows_the_host_for_test_and_kvm() -> None:
    assert placement.domain_type("test", "kvm") == "test"
    assert placement.domain_type("kvm", "qemu") == "kvm"
    assert placement.domain_type("qemu", "qemu") == "qemu"


def _rooms() -> list[placement.Room]:
    hosts = [H(1, "big", 16384), H(2, "mid", 8192), H(3, "small", 4096), H(4, "off", 65536, enabled=False)]
    usage = {1: Usage(4096, 2), 2: Usage(1024, 1), 3: Usage(1024, 1)}
    return placement.rooms(hosts, usage, Demand(2048, 1, "kvm"), 1.0)


def test_spread_takes_the_most_free_memory_and_pack_the_least_that_fits() -> None:
    rooms = _rooms()
    assert placement.choose(rooms, "spread").name == "big"  # type: ignore[union-attr]
    assert placement.choose(rooms, "pack").name == "small"  # type: ignore[union-attr]


def test_ties_are_broken_by_vcpus_then_name() -> None:
    rooms = placement.rooms([H(1, "b"), H(2, "a"), H(3, "c", cpus=8)], {}, Demand(1024, 1, "kvm"), 1.0)
    assert placement.choose(rooms, "spread").name == "c"  # type: ignore[union-attr]
    assert placement.choose(rooms, "pack").name == "a"  # type: ignore[union-attr]


def test_no_room_message_says_what_was_asked_and_the_most_free() -> None:
    hosts = [H(1, "a", 4096), H(2, "b", 8192), H(3, "x", 65536, virt_type="xen")]
    usage = {1: Usage(1024, 4), 2: Usage(6144, 1)}
    demand = Demand(4096, 2, "kvm")
    rooms = placement.rooms(hosts, usage, demand, 1.0)
    assert placement.choose(rooms, "spread") is None
    message = placement.no_room_message(demand, rooms)
    assert "4096 MiB and 2 vCPU(s) (kvm)" in message
    assert "3072 MiB (on a)" in message and "3 vCPU(s)" in message
    assert placement.most_free(rooms, demand) == {"ram_mb": 3072, "vcpus": 3, "host": "a"}


def test_no_usable_host_at_all() -> None:
    demand = Demand(512, 1, "lxc")
    rooms = placement.rooms([H(1, "a")], {}, demand, 1.0)
    assert placement.no_room_message(demand, rooms).endswith("runs lxc guests")
    assert placement.most_free(rooms, demand)["host"] is None


def test_unfit_hosts_are_passed_over_and_named_when_none_is_left() -> None:
    demand = Demand(1024, 1, "kvm")
    hosts = [H(1, "big", 65536), H(2, "small", 4096), H(3, "off", enabled=False)]
    unfit = {"big": "no storage pool", "off": "no storage pool"}
    rooms = placement.rooms(hosts, {}, demand, 1.0, unfit=unfit)
    assert placement.choose(rooms, "spread").name == "small"
    assert [r.reason for r in rooms] == ["no storage pool", "", "disabled"]
    rooms = placement.rooms(hosts, {}, demand, 1.0, unfit={**unfit, "small": "no storage pool"})
    assert placement.choose(rooms, "spread") is None
    assert placement.no_room_message(demand, rooms) == (
        "no host can take 1024 MiB and 1 vCPU(s) (kvm): big: no storage pool; small: no storage pool")


def test_usage_counts_guests_waiting_for_their_environments_earlier_tiers() -> None:
    """A later tier's guest holds its capacity from the environment's claim on, before it has a domain."""
    assert placement.usage_of([G(1, 1024, 1, Step.WAITING), G(1, 512, 1, Step.DEFINING)]) == {1: Usage(1536, 2, 2)}


def test_grown_adds_one_guest_to_one_host_and_leaves_the_input_alone() -> None:
    usage = {1: Usage(1024, 1, 1)}
    assert placement.grown(usage, 1, Demand(512, 2, "kvm")) == {1: Usage(1536, 3, 2)}
    assert placement.grown(usage, 2, Demand(512, 2, "kvm")) == {1: Usage(1024, 1, 1), 2: Usage(512, 2, 1)}
    assert usage == {1: Usage(1024, 1, 1)}


def _member(ram: int = 1024, **kw: object) -> placement.Member:
    return placement.Member(Demand(ram, 1, "kvm"), **kw)  # type: ignore[arg-type]


def test_a_group_sees_the_room_its_earlier_members_took() -> None:
    hosts = [H(1, "a", 2048), H(2, "b", 3072)]
    placed = placement.place_group(hosts, {}, [_member() for _ in range(5)], 1.0, "spread")
    assert placed.refused is None
    assert [r.name for r in placed.chosen] == ["b", "a", "b", "a", "b"]
    # A sixth does not fit: refused at its index, with the rooms as the first five left them.
    placed = placement.place_group(hosts, {2: Usage(1024, 1, 1)}, [_member() for _ in range(5)], 1.0, "spread")
    assert placed.refused == 4 and len(placed.chosen) == 4
    assert [(r.name, r.free_ram_mb, r.reason) for r in placed.candidates] == [("a", 0, "0 MiB free"),
                                                                               ("b", 0, "0 MiB free")]


def test_pack_fills_one_host_before_the_next() -> None:
    placed = placement.place_group([H(1, "a", 4096), H(2, "b", 2048)], {}, [_member() for _ in range(3)], 1.0,
                                   "pack")
    assert [r.name for r in placed.chosen] == ["b", "b", "a"]


def test_anti_affinity_puts_a_group_on_distinct_hosts_and_names_itself_when_it_cannot() -> None:
    hosts = [H(1, "a", 65536), H(2, "b", 4096)]
    web = [_member(apart="tier web") for _ in range(2)]
    placed = placement.place_group(hosts, {}, [_member(), *web], 1.0, "spread")
    # db and the first web guest both go to the roomiest host; the second web guest may not.
    assert [r.name for r in placed.chosen] == ["a", "a", "b"]
    placed = placement.place_group(hosts, {}, [*web, _member(apart="tier web")], 1.0, "spread")
    assert placed.refused == 2 and [r.name for r in placed.chosen] == ["a", "b"]
    reasons = {r.name: r.reason for r in placed.candidates}
    assert reasons == {"a": "takes another guest of tier web (anti-affinity)",
                       "b": "takes another guest of tier web (anti-affinity)"}
    demand = Demand(1024, 1, "kvm")
    assert placement.most_free(placed.candidates, demand)["host"] is None
    assert placement.no_room_message(demand, list(placed.candidates)) == (
        "no host can take 1024 MiB and 1 vCPU(s) (kvm): a: takes another guest of tier web (anti-affinity); "
        "b: takes another guest of tier web (anti-affinity)")
    # Another group, or none, is not kept apart from it.
    placed = placement.place_group(hosts, {}, [*web, _member(apart="tier app"), _member()], 1.0, "spread")
    assert placed.refused is None and [r.name for r in placed.chosen] == ["a", "b", "a", "a"]


def test_a_members_own_exclusions_and_unfit_hosts_stand_before_anti_affinity() -> None:
    hosts = [H(1, "a", 65536), H(2, "b", 8192), H(3, "c", 4096)]
    members = [_member(apart="tier web", excluded=frozenset({1})),
               _member(apart="tier web", unfit={"b": "no storage pool"})]
    placed = placement.place_group(hosts, {}, members, 1.0, "spread")
    assert [r.name for r in placed.chosen] == ["b", "a"]
    members = [_member(apart="tier web"), _member(apart="tier web", unfit={"a": "no storage pool"}),
               _member(apart="tier web", unfit={"a": "no storage pool"})]
    placed = placement.place_group(hosts[:2], {}, members, 1.0, "spread")
    assert placed.refused == 2
    assert {r.name: r.reason for r in placed.candidates} == {
        "a": "no storage pool", "b": "takes another guest of tier web (anti-affinity)"}
