import os
import stat
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
