"""How a network and a target are spelled, the same for every catalog source."""

from __future__ import annotations

import pytest

from fogmachine.catalog.entry import CatalogEntry, CatalogView, parse_network, positive, split_target


def test_network_and_target_spelling() -> None:
    assert parse_network("user") == "user"
    assert parse_network("br0") == ("bridge", "br0")
    assert parse_network("network:default") == ("network", "default")
    assert split_target("image:x") == ("image", "x")
    assert split_target("profile:a:b") == ("profile", "a:b")
    assert split_target("web:1") == (None, "web:1")


@pytest.mark.parametrize("value", ["wifi:x", "bridge:", "network:a b", "bridge:" + "x" * 65])
def test_a_network_of_another_form_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="must be user, bridge:NAME or network:NAME"):
        parse_network(value)


def test_positive_numbers() -> None:
    assert positive("3", "vcpus") == 3 and positive(2.9, "x") == 2 and positive("0", "disk", zero_ok=True) == 0
    with pytest.raises(ValueError, match="vcpus must be at least 1"):
        positive("0", "vcpus")
    with pytest.raises(ValueError, match="disk must be 0 or more"):
        positive("-1", "disk", zero_ok=True)
    with pytest.raises(ValueError, match="ram must be a number, not 'lots'"):
        positive("lots", "ram")


def test_a_view_finds_an_entry_by_name() -> None:
    entry = CatalogEntry("web", "local", 256, 1, 0, "qemu")
    view = CatalogView([entry], stale=False, source="local")
    assert view.get("web") is entry and view.get("db") is None
