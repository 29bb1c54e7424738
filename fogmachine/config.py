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

Every setting is a typed field of ``Config`` declared with ``setting()``: its
parser, its default (as text, parsed like any other source), its help and
whether it is a path or a secret. mypy checks each ``config.X`` against the
field's type and each field's type against what its parser returns.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast, dataclass_transform

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fogmachine.errors import ConfigError

SECTION = "fogmachine"
ENV_PREFIX = "FOGMACHINE_"
SEARCH_PATHS = (Path("fogmachine.conf"), Path("/etc/fogmachine/fogmachine.conf"))
SETTING = "fogmachine.setting"  # the key of a Config field's metadata that holds its Setting


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


def _ip_address(value: str) -> str:
    """An IP address as libvirt's ``listen`` takes it (a name would be resolved on the host, differently)."""
    return str(ipaddress.ip_address(value.strip()))


#: What ``trusted_proxies`` holds (``web.proxies`` uses the same type).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """``trusted_proxies``: addresses or CIDR networks, separated by commas or spaces.

    Raises ValueError naming the entry that is wrong (a host name, host bits set
    in a network), so the configuration error says what to fix.
    """
    networks = []
    for part in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(part, strict=True))
        except ValueError as exc:
            raise ValueError(f"{part!r} is not an IP address or network ({exc})") from None
    return tuple(networks)


T = TypeVar("T")
C = TypeVar("C")



@dataclass(frozen=True)
class Setting:
    """How one setting is read: its parser, its default as the text a file would hold, and its help.

    The default is text and goes through the parser like any other source, so a default a parser
    refuses is found at the first ``load()`` and names "the default" as its origin.
    """

    parse: Callable[[str], object]
    default: str
    help: str
    is_path: bool = False
    secret: bool = False


def setting(parse: Callable[[str], T], default_text: str, help: str, *,
            is_path: bool = False, secret: bool = False) -> T:
    """A ``Config`` field read by ``parse``; typed as what ``parse`` returns.

    Declared as a field specifier (``_settings_dataclass``), so mypy treats it like
    ``dataclasses.field`` and rejects a field whose annotation is not what its parser returns.
    The default is not the dataclass default (``default_text`` is deliberately not named
    ``default``): every field is required, a ``Config`` is only made by ``load()``.
    """
    spec = Setting(parse, default_text, help, is_path=is_path, secret=secret)
    return cast(T, field(metadata={SETTING: spec}))


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(setting, field))
def _settings_dataclass(cls: type[C]) -> type[C]:
    """A frozen, keyword-only dataclass; the decorator exists so mypy knows ``setting()`` makes a field."""
    return dataclass(frozen=True, kw_only=True)(cls)


@_settings_dataclass
class Config:
    """Every setting as a typed field, then where they came from.

    ``source`` names the file (or "embedded defaults"), ``base_dir`` is what relative paths were
    resolved against and ``origins`` maps a key to the file, variable or command line that set it.
    """

    listen_address: str = setting(_str, "127.0.0.1", "address the HTTP server binds")
    listen_port: int = setting(_port, "8888", "port of the dashboard and the API")
    trusted_proxies: tuple[Network, ...] = setting(
        parse_networks, "", "addresses or CIDR networks of the reverse proxies whose X-Forwarded-For, X-Real-Ip and "
        "X-Forwarded-Proto are believed; empty: none, the TCP peer is the client")
    public_url: str = setting(_str, "", "URL guests and e-mails use to reach this server; default http://ADDRESS:PORT")
    data_dir: str = setting(_str, "data", "directory for the SQLite database and the cookie secret", is_path=True)
    database_connection: str = setting(_str, "", "SQLAlchemy URL; default sqlite in data_dir", secret=True)
    db_threads: int = setting(_positive_int, "8", "threads that run database work off the IOLoop")
    db_timeout: float = setting(_positive_float, "10", "seconds a database connection attempt may take")
    virthosts: str = setting(_str, "virthosts.conf", "file listing the hypervisor hosts", is_path=True)
    local_catalog: str = setting(_str, "catalog.conf", "catalog used when no Cobbler is configured", is_path=True)
    cobbler_url: str = setting(_str, "", "Cobbler XML-RPC URL, e.g. http://cobbler/cobbler_api; empty: no Cobbler")
    cobbler_user: str = setting(_str, "cobbler", "Cobbler user")
    cobbler_password: str = setting(_str, "", "Cobbler password", secret=True)
    cobbler_timeout: float = setting(_positive_float, "10", "seconds a Cobbler call may take")
    cobbler_autoinstall_url: str = setting(_str, "", "base URL of Cobbler's svc app as guests see it")
    catalog_ttl: float = setting(_positive_float, "60", "seconds the catalog is cached")
    catalog_source: str = setting(_str, "auto", "where the catalog comes from: a name in fogmachine.catalog.SOURCES "
                                  "(local: the local_catalog file; cobbler: needs cobbler_url), or auto: cobbler if "
                                  "cobbler_url is set")
    placement_policy: str = setting(_choice("spread", "pack"), "spread", "spread: most free memory first; pack: least")
    cpu_overcommit: float = setting(_positive_float, "4", "vCPUs placed per physical CPU")
    max_days: int = setting(_positive_int, "30", "longest checkout in days")
    max_lease_days: int = setting(_positive_int, "90", "longest total lease after extensions, in days")
    retired_keep_days: int = setting(_non_negative_int, "30", "days a retired guest stays visible")
    provision_timeout: float = setting(_positive_float, "3600", "seconds a guest may stay provisioning")
    phonehome_grace_seconds: int = setting(
        _non_negative_int, "300", "seconds a guest's phone-home token keeps working after its install is finished "
        "(for the installer's retries)")
    diskboot_retry_interval: float = setting(
        _positive_float, "60", "seconds between retries of the after-install work that failed (switching a guest "
        "to disk boot, blanking its token in Cobbler)")
    console_log_dir: str = setting(
        _str, "", "directory on the hosts where guests' serial consoles are logged (NAME.log); empty: none")
    vnc_listen: str = setting(
        _ip_address, "127.0.0.1", "address guests' VNC servers listen on, on their host; the graphical console's relay "
        "connects to it (0.0.0.0: every address, reached at the host's address from its libvirt URI)")
    console_idle_timeout: float = setting(
        _positive_float, "900", "seconds a guest's serial console stays open in a browser without a keystroke")
    shutdown_timeout: float = setting(_positive_float, "60", "seconds a guest gets to obey a graceful shutdown")
    libvirt_connect_timeout: float = setting(_positive_float, "5", "seconds a libvirt connection attempt may take")
    libvirt_call_timeout: float = setting(_positive_float, "30", "seconds one libvirt call may take")
    resync_interval: float = setting(_positive_float, "60", "seconds between full resyncs of each host")
    expiry_interval: float = setting(_positive_float, "20", "seconds between passes that retire expired guests")
    notice_interval: float = setting(_positive_float, "60", "seconds between passes that send expiry warnings")
    reconcile_interval: float = setting(_positive_float, "300", "seconds between reconciliation passes")
    environment_interval: float = setting(
        _positive_float, "10", "seconds between passes over live environments (a tier whose guests got ready in "
        "another process starts the next; a failed environment is torn down; one with no guests left is retired)")
    open_registration: bool = setting(_bool, "true", "anyone may register an account")
    user_templates: bool = setting(
        _bool, "false", "users may keep private environment templates of their own; administrators always "
        "manage the shared ones")
    session_idle_minutes: int = setting(_positive_int, "720", "a login session ends after this many minutes unused")
    session_max_days: int = setting(_positive_int, "14", "a login session ends this many days after it began")
    password_min_score: int = setting(
        _score, "3", "least zxcvbn strength (0-4) of a new password; 0: length only")
    warn_hours: tuple[float, ...] = setting(_hours_list, "72 24 1", "hours before expiry at which owners are warned")
    smtp_host: str = setting(_str, "", "SMTP server; empty: no e-mail")
    smtp_port: int = setting(_port, "25", "SMTP port")
    smtp_user: str = setting(_str, "", "SMTP user")
    smtp_password: str = setting(_str, "", "SMTP password", secret=True)
    smtp_starttls: bool = setting(_bool, "false", "use STARTTLS")
    mail_from: str = setting(_str, "fogmachine@localhost", "sender of e-mails")
    log_level: str = setting(_choice("debug", "info", "warning", "error"), "info", "logging level")
    cookie_secret_file: str = setting(
        _str, "", "file holding the cookie secret; default data_dir/cookie_secret", is_path=True)

    source: str
    base_dir: Path
    origins: Mapping[str, str] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed (already typed); used by tests and the CLI."""
        for key in changes:
            if key not in SETTINGS:
                raise ConfigError(f"unknown setting {key!r}")
        return dataclasses.replace(self, **changes)

    @property
    def database_url(self) -> str:
        return self.database_connection

    @property
    def server_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
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


#: Every setting by key, in the order ``Config`` declares them (``describe`` lists them so).
SETTINGS: Mapping[str, Setting] = {
    f.name: f.metadata[SETTING] for f in dataclasses.fields(Config) if SETTING in f.metadata
}


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
                if key not in SETTINGS:
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
        if key not in SETTINGS:
            raise ConfigError(f"environment variable {name}: unknown key {key!r}")
        raw[key] = value
        origins[key] = f"environment variable {name}"
    for key, value in overrides.items():
        if key not in SETTINGS:
            raise ConfigError(f"unknown key {key!r}")
        raw[key] = value
        origins[key] = "command line"

    values: dict[str, Any] = {}
    for key, spec in SETTINGS.items():
        text = raw.get(key, spec.default)
        origin = origins.get(key, "the default")
        try:
            parsed = spec.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{origin}: bad value {text!r} for {key}: {exc}") from None
        if spec.is_path and parsed:
            parsed = str((base_dir / Path(str(parsed)).expanduser()).resolve())
        values[key] = parsed

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
    return Config(**values, source=source, base_dir=base_dir, origins=origins)


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(key, shown value, origin) for ``fogmachine config check``; secrets masked."""
    rows = []
    for key, spec in SETTINGS.items():
        value = getattr(config, key)
        if key == "database_connection":
            shown = make_url(config.database_connection).render_as_string(hide_password=True)
        elif spec.secret:
            shown = "***" if value else ""
        elif isinstance(value, tuple):
            shown = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        else:
            shown = str(value)
        rows.append((key, shown, config.origins.get(key, "default")))
    return rows
