"""The catalog_source setting picks the source by name; auto keeps what Fogmachine always did."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fogmachine.catalog import SOURCES, CobblerCatalog, LocalCatalog, build_source, source_name
from fogmachine.config import Config
from fogmachine.errors import ConfigError

COBBLER = "http://cobbler.example.org/cobbler_api"


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, LocalCatalog),  # auto, no Cobbler: the local file
    ({"cobbler_url": COBBLER}, CobblerCatalog),  # auto with Cobbler: Cobbler
    ({"catalog_source": "auto", "cobbler_url": COBBLER}, CobblerCatalog),
    ({"catalog_source": "local", "cobbler_url": COBBLER}, LocalCatalog),  # Cobbler configured, not used
    ({"catalog_source": " Cobbler ", "cobbler_url": COBBLER}, CobblerCatalog),
    ({"catalog_source": "LOCAL"}, LocalCatalog),
])
def test_the_setting_picks_the_source(make_config: Callable[..., Config], settings: dict[str, str],
                                      expected: type) -> None:
    config = make_config(**settings)
    source = build_source(config)
    assert type(source) is expected and source.name == source_name(config)
    if isinstance(source, CobblerCatalog):
        assert source.cobbler.url == COBBLER  # the source's own client, from the Cobbler settings


def test_every_source_is_registered_under_its_own_name(make_config: Callable[..., Config]) -> None:
    config = make_config(cobbler_url=COBBLER)
    assert sorted(SOURCES) == ["cobbler", "local"]
    assert all(make(config).name == name for name, make in SOURCES.items())


def test_an_unknown_source_is_refused_naming_where_it_was_set(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError) as info:
        build_source(make_config(catalog_source="ldap"))
    assert info.value.message == ("command line: bad value 'ldap' for catalog_source: "
                                  "must be one of auto, cobbler, local")


def test_cobbler_without_its_url_is_refused(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="catalog_source = cobbler needs cobbler_url"):
        build_source(make_config(catalog_source="cobbler"))
