import dataclasses
import os
import stat
import types
import typing
from pathlib import Path

import pytest

from fogmachine import config as configmod
from fogmachine.errors import ConfigError


def write(path: Path, body: str) -> Path:
    path.write_text("[fogmachine]\n" + body)
    return path


def test_embedded_defaults_use_sqlite_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = configmod.load(None, environ={})
    assert cfg.source == "embedded defaults"
    assert cfg.listen_port == 8888
    assert cfg.database_url == f"sqlite:///{tmp_path / 'data' / 'fogmachine.db'}"
    assert cfg.virthosts == str(tmp_path / "virthosts.conf")


def test_file_values_and_relative_paths(tmp_path):
    conf = write(tmp_path / "fm.conf", "listen_port = 9001\ndata_dir = state\nvirthosts = hosts.conf\n")
    cfg = configmod.load(str(conf), environ={})
    assert cfg.listen_port == 9001
    assert cfg.data_dir == str(tmp_path / "state")
    assert cfg.virthosts == str(tmp_path / "hosts.conf")
    assert cfg.origins["listen_port"] == str(conf)


def test_environment_overrides_file(tmp_path):
    conf = write(tmp_path / "fm.conf", "listen_port = 9001\n")
    cfg = configmod.load(str(conf), environ={"FOGMACHINE_LISTEN_PORT": "9002"})
    assert cfg.listen_port == 9002
    assert cfg.origins["listen_port"] == "environment variable FOGMACHINE_LISTEN_PORT"


def test_search_order_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "fogmachine.conf", "listen_port = 7000\n")
    other = write(tmp_path / "other.conf", "listen_port = 7001\n")
    assert configmod.load(None, environ={}).listen_port == 7000
    assert configmod.load(None, environ={"FOGMACHINE_CONFIG": str(other)}).listen_port == 7001
    assert configmod.load(str(other), environ={"FOGMACHINE_CONFIG": "/nope"}).listen_port == 7001


@pytest.mark.parametrize(
    ("body", "env", "expected"),
    [
        ("colour = blue\n", {}, "unknown key 'colour'"),
        ("listen_port = 99999\n", {}, "bad value '99999' for listen_port"),
        ("listen_port = eighty\n", {}, "bad value 'eighty' for listen_port"),
        ("open_registration = maybe\n", {}, "open_registration: must be true or false"),
        ("placement_policy = random\n", {}, "placement_policy: must be one of spread, pack"),
        ("database_connection = oracle://x/y\n", {}, "use sqlite, mysql/mariadb or postgresql"),
        ("", {"FOGMACHINE_NOPE": "1"}, "environment variable FOGMACHINE_NOPE: unknown key 'nope'"),
        ("", {"FOGMACHINE_MAX_DAYS": "0"}, "FOGMACHINE_MAX_DAYS: bad value '0' for max_days"),
        ("vnc_listen = kvm01.example.org\n", {}, "bad value 'kvm01.example.org' for vnc_listen"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path, body, env, expected):
    conf = write(tmp_path / "fm.conf", body)
    with pytest.raises(ConfigError) as info:
        configmod.load(str(conf), environ=env)
    assert expected in info.value.message
    if not env:
        assert str(conf) in info.value.message


def test_unknown_section_and_missing_file(tmp_path):
    conf = tmp_path / "fm.conf"
    conf.write_text("[other]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[other\]"):
        configmod.load(str(conf), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        configmod.load(str(tmp_path / "missing.conf"), environ={})


def test_cookie_secret_created_private_and_stable(tmp_path):
    cfg = configmod.load(None, environ={}, data_dir=str(tmp_path / "d"))
    first = cfg.cookie_secret()
    path = Path(cfg.cookie_secret_file)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) >= 32
    assert cfg.cookie_secret() == first


def test_describe_masks_secrets(tmp_path):
    cfg = configmod.load(None, environ={}, data_dir=str(tmp_path),
                         database_connection="postgresql+psycopg://fog:hunter2@db/fm",
                         cobbler_password="hunter3")
    shown = {k: v for k, v, _ in configmod.describe(cfg)}
    assert "hunter2" not in shown["database_connection"]
    assert shown["cobbler_password"] == "***"


# Config's fields that say where the settings came from rather than being settings.
PROVENANCE = {"source", "base_dir", "origins"}


def conforms(value: object, hint: object) -> bool:
    """Whether ``value`` is exactly of the annotated type (bool is no int, int is no float)."""
    if typing.get_origin(hint) is tuple:
        item, rest = typing.get_args(hint)
        assert rest is Ellipsis, f"only tuple[X, ...] is handled, not {hint}"
        return type(value) is tuple and all(conforms(v, item) for v in value)
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(conforms(value, arg) for arg in typing.get_args(hint))
    return type(value) is hint


def test_every_field_is_a_setting_with_a_parser_and_help():
    names = {f.name for f in dataclasses.fields(configmod.Config)} - PROVENANCE
    assert set(configmod.SETTINGS) == names
    for key, spec in configmod.SETTINGS.items():
        assert callable(spec.parse), key
        assert spec.help.strip(), key


def test_loaded_values_have_their_annotated_types(tmp_path):
    hints = typing.get_type_hints(configmod.Config)
    # Non-empty values for the tuples, so their items are checked too.
    cfg = configmod.load(None, environ={}, data_dir=str(tmp_path), trusted_proxies="127.0.0.1, 10.0.0.0/24, ::1")
    assert len(cfg.trusted_proxies) == 3 and cfg.warn_hours
    wrong = {key: (type(getattr(cfg, key)).__name__, hints[key])
             for key in configmod.SETTINGS if not conforms(getattr(cfg, key), hints[key])}
    assert not wrong, f"parser and annotation disagree: {wrong}"


def test_conforms_tells_apart_what_isinstance_would_let_through():
    assert conforms(3, int) and not conforms(True, int) and not conforms(3, float)
    assert conforms((1.0, 2.0), tuple[float, ...]) and not conforms((1.0, 2), tuple[float, ...])
    assert conforms("x", int | str) and not conforms([1.0], tuple[float, ...])


def test_precedence_default_file_environment_command_line(tmp_path):
    conf = write(tmp_path / "fm.conf", "listen_port = 9001\nmax_days = 5\nsmtp_port = 2525\n")
    env = {"FOGMACHINE_LISTEN_PORT": "9002", "FOGMACHINE_MAX_DAYS": "6"}
    cfg = configmod.load(str(conf), environ=env, max_days="7")
    assert (cfg.smtp_port, cfg.listen_port, cfg.max_days, cfg.session_max_days) == (2525, 9002, 7, 14)
    assert cfg.origins == {"smtp_port": str(conf), "listen_port": "environment variable FOGMACHINE_LISTEN_PORT",
                           "max_days": "command line"}
    shown = {k: (v, origin) for k, v, origin in configmod.describe(cfg)}
    assert shown["max_days"] == ("7", "command line")
    assert shown["session_max_days"] == ("14", "default")


@pytest.mark.parametrize(
    ("environ", "overrides", "expected"),
    [
        ({"FOGMACHINE_SMTP_PORT": "x"}, {},
         "environment variable FOGMACHINE_SMTP_PORT: bad value 'x' for smtp_port: invalid literal for int()"),
        ({}, {"warn_hours": "24 -1"},
         "command line: bad value '24 -1' for warn_hours: every entry must be a positive number of hours"),
        ({}, {"colour": "blue"}, "unknown key 'colour'"),
    ],
)
def test_bad_value_messages_from_the_environment_and_the_command_line(tmp_path, environ, overrides, expected):
    with pytest.raises(ConfigError) as info:
        configmod.load(None, environ=environ, data_dir=str(tmp_path), **overrides)
    assert info.value.message.startswith(expected)


def test_an_unknown_key_in_the_file_is_refused_naming_file_and_section(tmp_path):
    conf = write(tmp_path / "fm.conf", "listen_port = 9001\ncolour = blue\n")
    with pytest.raises(ConfigError) as info:
        configmod.load(str(conf), environ={})
    assert info.value.message == f"{conf}: unknown key 'colour' in [fogmachine]"


def test_replace_changes_typed_values_and_refuses_unknown_settings(tmp_path):
    cfg = configmod.load(None, environ={}, data_dir=str(tmp_path))
    changed = cfg.replace(max_days=3, public_url="http://fog.example/")
    assert (changed.max_days, changed.server_url) == (3, "http://fog.example")
    assert (cfg.max_days, cfg.server_url) == (30, "http://127.0.0.1:8888")
    with pytest.raises(ConfigError, match="unknown setting 'max_dayz'"):
        cfg.replace(max_dayz=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_days = 3  # type: ignore[misc]


def test_describe_lists_every_setting_in_order_with_tuples_spelled_as_in_the_file(tmp_path):
    cfg = configmod.load(None, environ={}, data_dir=str(tmp_path), trusted_proxies="10.0.0.0/24 ::1")
    rows = configmod.describe(cfg)
    assert [key for key, _, _ in rows] == list(configmod.SETTINGS)
    shown = {key: value for key, value, _ in rows}
    assert shown["warn_hours"] == "72 24 1"
    assert shown["trusted_proxies"] == "10.0.0.0/24 ::1/128"
    assert shown["smtp_password"] == ""
