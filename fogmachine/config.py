"""Fogmachine's settings, read once at start and passed down.

One INI file (section ``[fogmachine]``, as in the 2009 original) plus
``FOGMACHINE_<KEY>`` environment overrides. Nothing reads configuration at
import time: ``load()`` returns a frozen ``Config`` that the application, the
CLI and the tests hand to whatever needs it.

Search order for the file, first match wins:

1. the ``--config PATH`` option;
2. the ``FOGMACHINE_CONFIG`` environment variable;
3. ``./fogmachine.conf`` in the working directory;
4. ``/etc/fogmachine/fogmachine.conf``.

With none of them, the embedded defaults apply with the working directory as
base. Relative paths in a file are relative to that file's directory.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fogmachine.errors import ConfigError

SECTION = "fogmachine"
ENV_PREFIX = "FOGMACHINE_"
SEARCH_PATHS = (Path("fogmachine.conf"), Path("/etc/fogmachine/fogmachine.conf"))


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("must be between 0 and 65535")
    return port


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be greater than 0")
    return number


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "yes", "true", "on"}:
        return True
    if lowered in {"0", "no", "false", "off"}:
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _hours_list(value: str) -> tuple[float, ...]:
    hours = tuple(float(part) for part in value.replace(",", " ").split())
    if any(h <= 0 for h in hours):
        raise ValueError("every entry must be a positive number of hours")
    return tuple(sorted(hours, reverse=True))


def _score(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 4:
        raise ValueError("must be between 0 and 4 (zxcvbn's scores)")
    return number


def _str(value: str) -> str:
    return value.strip()


def _networks(value: str) -> tuple[Any, ...]:
    from fogmachine.web.proxies import parse_networks

    return parse_networks(value)


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[str], Any]
    default: str
    help: str
    is_path: bool = False
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("listen_address", _str, "127.0.0.1", "address the HTTP server binds"),
    Setting("listen_port", _port, "8888", "port of the dashboard and the API"),
    Setting("trusted_proxies", _networks, "", "addresses or CIDR networks of the reverse proxies whose "
            "X-Forwarded-For, X-Real-Ip and X-Forwarded-Proto are believed; empty: none, the TCP peer is the client"),
    Setting("public_url", _str, "", "URL guests and e-mails use to reach this server; default http://ADDRESS:PORT"),
    Setting("data_dir", _str, "data", "directory for the SQLite database and the cookie secret", is_path=True),
    Setting("database_connection", _str, "", "SQLAlchemy URL; default sqlite in data_dir", secret=True),
    Setting("db_threads", _positive_int, "8", "threads that run database work off the IOLoop"),
    Setting("db_timeout", _positive_float, "10", "seconds a database connection attempt may take"),
    Setting("virthosts", _str, "virthosts.conf", "file listing the hypervisor hosts", is_path=True),
    Setting("local_catalog", _str, "catalog.conf", "catalog used when no Cobbler is configured", is_path=True),
    Setting("cobbler_url", _str, "", "Cobbler XML-RPC URL, e.g. http://cobbler/cobbler_api; empty: no Cobbler"),
    Setting("cobbler_user", _str, "cobbler", "Cobbler user"),
    Setting("cobbler_password", _str, "", "Cobbler password", secret=True),
    Setting("cobbler_timeout", _positive_float, "10", "seconds a Cobbler call may take"),
    Setting("cobbler_autoinstall_url", _str, "", "base URL of Cobbler's svc app as guests see it"),
    Setting("catalog_ttl", _positive_float, "60", "seconds the catalog is cached"),
    Setting("catalog_source", _str, "auto", "where the catalog comes from: a name in fogmachine.catalog.SOURCES "
            "(local: the local_catalog file; cobbler: needs cobbler_url), or auto: cobbler if cobbler_url is set"),
    Setting("placement_policy", _choice("spread", "pack"), "spread", "spread: most free memory first; pack: least"),
    Setting("cpu_overcommit", _positive_float, "4", "vCPUs placed per physical CPU"),
    Setting("max_days", _positive_int, "30", "longest checkout in days"),
    Setting("max_lease_days", _positive_int, "90", "longest total lease after extensions, in days"),
    Setting("retired_keep_days", _non_negative_int, "30", "days a retired guest stays visible"),
    Setting("provision_timeout", _positive_float, "3600", "seconds a guest may stay provisioning"),
    Setting("phonehome_grace_seconds", _non_negative_int, "300", "seconds a guest's phone-home token keeps "
            "working after its install is finished (for the installer's retries)"),
    Setting("diskboot_retry_interval", _positive_float, "60", "seconds between retries of the after-install "
            "work that failed (switching a guest to disk boot, blanking its token in Cobbler)"),
    Setting("console_log_dir", _str, "", "directory on the hosts where guests' serial consoles are logged "
            "(NAME.log); empty: none"),
    Setting("shutdown_timeout", _positive_float, "60", "seconds a guest gets to obey a graceful shutdown"),
    Setting("libvirt_connect_timeout", _positive_float, "5", "seconds a libvirt connection attempt may take"),
    Setting("libvirt_call_timeout", _positive_float, "30", "seconds one libvirt call may take"),
    Setting("resync_interval", _positive_float, "60", "seconds between full resyncs of each host"),
    Setting("expiry_interval", _positive_float, "20", "seconds between passes that retire expired guests"),
    Setting("notice_interval", _positive_float, "60", "seconds between passes that send expiry warnings"),
    Setting("reconcile_interval", _positive_float, "300", "seconds between reconciliation passes"),
    Setting("open_registration", _bool, "true", "anyone may register an account"),
    Setting("session_idle_minutes", _positive_int, "720", "a login session ends after this many minutes unused"),
    Setting("session_max_days", _positive_int, "14", "a login session ends this many days after it began"),
    Setting("password_min_score", _score, "3", "least zxcvbn strength (0-4) of a new password; 0: length only"),
    Setting("warn_hours", _hours_list, "72 24 1", "hours before expiry at which owners are warned"),
    Setting("smtp_host", _str, "", "SMTP server; empty: no e-mail"),
    Setting("smtp_port", _port, "25", "SMTP port"),
    Setting("smtp_user", _str, "", "SMTP user"),
    Setting("smtp_password", _str, "", "SMTP password", secret=True),
    Setting("smtp_starttls", _bool, "false", "use STARTTLS"),
    Setting("mail_from", _str, "fogmachine@localhost", "sender of e-mails"),
    Setting("log_level", _choice("debug", "info", "warning", "error"), "info", "logging level"),
    Setting("cookie_secret_file", _str, "", "file holding the cookie secret; default data_dir/cookie_secret",
            is_path=True),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Every setting, parsed and typed. ``source`` names where they came from."""

    values: Mapping[str, Any]
    source: str
    base_dir: Path
    origins: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> Config:
        """A copy with some values changed (already typed); used by tests and the CLI."""
        for key in changes:
            if key not in SETTINGS_BY_KEY:
                raise ConfigError(f"unknown setting {key!r}")
        return dataclasses.replace(self, values={**self.values, **changes})

    @property
    def database_url(self) -> str:
        return str(self.values["database_connection"])

    @property
    def server_url(self) -> str:
        if self.public_url:
            return str(self.public_url).rstrip("/")
        host = self.listen_address if self.listen_address not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.listen_port}"

    def cookie_secret(self) -> bytes:
        """Read the cookie secret, creating it (mode 0600) on first start."""
        path = Path(self.cookie_secret_file)
        if path.exists():
            secret = path.read_bytes().strip()
            if len(secret) < 32:
                raise ConfigError(f"cookie secret in {path} is too short; delete it to make a new one")
            return secret
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        return path.read_bytes().strip()


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"configuration file {explicit} does not exist")
        return path
    from_env = environ.get(ENV_PREFIX + "CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"configuration file {from_env} (from {ENV_PREFIX}CONFIG) does not exist")
        return path
    for candidate in SEARCH_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load(path: str | None = None, environ: Mapping[str, str] | None = None, **overrides: str) -> Config:
    """Read the configuration; raise ConfigError naming the key and the file on a bad value.

    ``overrides`` are raw string values that win over the file and the environment
    (the CLI's ``--log-level`` and the tests use them).
    """
    environ = os.environ if environ is None else environ
    file_path = find_config_file(path, environ)
    raw: dict[str, str] = {}
    origins: dict[str, str] = {}
    if file_path is not None:
        file_path = file_path.resolve()
        base_dir = file_path.parent
        source = str(file_path)
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
        try:
            parser.read(file_path, encoding="utf-8")
        except configparser.DuplicateOptionError as exc:
            raise ConfigError(f"{file_path}, line {exc.lineno}: key {exc.option!r} is set twice") from None
        except configparser.Error as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(f"{file_path}: not a valid INI file: {first}") from None
        for section in parser.sections():
            if section != SECTION:
                raise ConfigError(f"{file_path}: unknown section [{section}]; settings go in [{SECTION}]")
        if parser.has_section(SECTION):
            for key, value in parser.items(SECTION):
                if key not in SETTINGS_BY_KEY:
                    raise ConfigError(f"{file_path}: unknown key {key!r} in [{SECTION}]")
                raw[key] = value
                origins[key] = source
    else:
        base_dir = Path.cwd()
        source = "embedded defaults"
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(f"environment variable {name}: unknown key {key!r}")
        raw[key] = value
        origins[key] = f"environment variable {name}"
    for key, value in overrides.items():
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(f"unknown key {key!r}")
        raw[key] = value
        origins[key] = "command line"

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        text = raw.get(setting.key, setting.default)
        origin = origins.get(setting.key, "the default")
        try:
            value = setting.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{origin}: bad value {text!r} for {setting.key}: {exc}") from None
        if setting.is_path and value:
            value = str((base_dir / Path(value).expanduser()).resolve())
        values[setting.key] = value

    if not values["cookie_secret_file"]:
        values["cookie_secret_file"] = str(Path(values["data_dir"]) / "cookie_secret")
    if not values["database_connection"]:
        values["database_connection"] = f"sqlite:///{Path(values['data_dir']) / 'fogmachine.db'}"
    else:
        origin = origins.get("database_connection", "the default")
        try:
            url = make_url(values["database_connection"])
        except ArgumentError:
            raise ConfigError(f"{origin}: database_connection is not an SQLAlchemy URL") from None
        if url.get_backend_name() not in ("sqlite", "mysql", "mariadb", "postgresql"):
            raise ConfigError(
                f"{origin}: database_connection uses {url.get_backend_name()!r}; "
                "use sqlite, mysql/mariadb or postgresql"
            )
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            values["database_connection"] = str(url.set(database=str((base_dir / url.database).resolve())))
    return Config(values=values, source=source, base_dir=base_dir, origins=origins)


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(key, shown value, origin) for ``fogmachine config check``; secrets masked."""
    rows = []
    for setting in SETTINGS:
        value = config.values[setting.key]
        if setting.key == "database_connection":
            shown = make_url(value).render_as_string(hide_password=True)
        elif setting.secret:
            shown = "***" if value else ""
        elif isinstance(value, tuple):
            shown = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        else:
            shown = str(value)
        rows.append((setting.key, shown, config.origins.get(setting.key, "default")))
    return rows
