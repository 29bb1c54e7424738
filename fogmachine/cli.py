"""The ``fogmachine`` command: serve, database, users, hosts, configuration.

Every failure an operator can cause (bad configuration, unreachable database,
old schema, malformed virthosts line) ends as one line on stderr naming the
problem and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from fogmachine import __version__, logs, virthosts
from fogmachine import config as configmod
from fogmachine.config import Config
from fogmachine.db import migrate
from fogmachine.db.models import Host
from fogmachine.db.session import Database
from fogmachine.errors import ConfigError, FogmachineError
from fogmachine.services import hosts as host_service

log = logging.getLogger("fogmachine")


class CliError(Exception):
    """A one-line failure for the operator."""


def _database(config: Config) -> Database:
    return Database(config.database_url, threads=2, connect_timeout=config.db_timeout)


def _current_revision(config: Config) -> str | None:
    """The database's schema revision (None: empty), its connections closed again before the command goes on."""
    db = _database(config)
    try:
        return migrate.current_revision(db.engine)
    finally:
        db.dispose()


def _db_error(config: Config, exc: SQLAlchemyError) -> CliError:
    url = make_url(config.database_url).render_as_string(hide_password=True)
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return CliError(f"database {url}: {reason}")


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from fogmachine.app import serve

    asyncio.run(serve(config))
    return 0


def cmd_db_upgrade(config: Config, args: argparse.Namespace) -> int:
    db = _database(config)
    try:
        before = migrate.current_revision(db.engine)
        migrate.upgrade(db.engine, args.revision)
        after = migrate.current_revision(db.engine)
    finally:
        db.dispose()
    print(f"database upgraded: {before or 'empty'} -> {after}")
    return 0


def cmd_db_current(config: Config, args: argparse.Namespace) -> int:
    current = _current_revision(config)
    head = migrate.head_revision()
    state = "up to date" if current == head else f"needs upgrade to {head} (fogmachine db upgrade)"
    print(f"{current or 'empty'} ({state})")
    return 0 if current == head else 1


def cmd_user_add(config: Config, args: argparse.Namespace) -> int:
    from fogmachine.services import passwordpolicy
    from fogmachine.services.passwords import hash_password
    from fogmachine.services.users import create_user, validate_email, validate_username

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the passwords differ")
    passwordpolicy.check(password, username=validate_username(args.name), email=validate_email(args.email or ""),
                         min_score=config.password_min_score)
    db = _database(config)
    try:
        migrate.ensure_schema(db.engine)
        with db.session() as session:
            user = create_user(session, args.name, "", email=args.email or "", is_admin=args.admin,
                               password_hash=hash_password(password))
            role, name = ("admin" if user.is_admin else "user"), user.username
    finally:
        db.dispose()
    print(f"{role} {name} created")
    return 0


def cmd_hosts_sync(config: Config, args: argparse.Namespace) -> int:
    entries = virthosts.parse(config.virthosts)
    db = _database(config)
    try:
        migrate.ensure_schema(db.engine)
        with db.session() as session:
            result = virthosts.sync(session, entries)
    finally:
        db.dispose()
    print(f"{len(entries)} host(s) in {config.virthosts}: added {len(result.added)}, "
          f"updated {len(result.updated)}, disabled {len(result.disabled)}, deleted {len(result.deleted)}")
    for label, names in (("added", result.added), ("updated", result.updated),
                         ("disabled", result.disabled), ("deleted", result.deleted)):
        for name in names:
            print(f"  {label}: {name}")
    print("running Fogmachine servers follow the hosts table within 10 s")
    return 0


def cmd_hosts_list(config: Config, args: argparse.Namespace) -> int:
    db = _database(config)
    try:
        migrate.ensure_schema(db.engine)
        with db.session() as session:
            hosts = list(session.scalars(select(Host).order_by(Host.name)))
            shown = host_service.host_dicts(session, hosts, config.cpu_overcommit)  # free as placement counts it
    finally:
        db.dispose()
    print(f"{'NAME':<16} {'TYPE':<6} {'STATE':<8} {'ENABLED':<8} {'MEM FREE/TOTAL MiB':<20} {'CPUS':<5} URI")
    for h, shown_host in zip(hosts, shown, strict=True):
        memory = f"{shown_host['free_memory_mb']}/{h.total_memory_mb}"
        print(f"{h.name:<16} {h.virt_type:<6} {h.state:<8} {'yes' if h.enabled else 'no':<8} "
              f"{memory:<20} {h.cpus:<5} {h.uri}")
    return 0


def cmd_config_check(config: Config, args: argparse.Namespace) -> int:
    from fogmachine.catalog import build_source, source_name

    print(f"configuration: {config.source}")
    for key, shown, origin in configmod.describe(config):
        print(f"  {key} = {shown}    ({origin})")
    entries = virthosts.parse(config.virthosts)
    print(f"virthosts: {len(entries)} host(s) in {config.virthosts}")
    build_source(config)  # refuses a catalog_source it cannot build, as the server's start would
    print(f"catalog source: {source_name(config)}")
    current = _current_revision(config)
    head = migrate.head_revision()
    print(f"database: reachable, revision {current or 'empty'} (code needs {head})")
    print("configuration OK")
    return 0


def cmd_cobbler_install_snippets(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from fogmachine.cobbler.client import CobblerClient, public_url
    from fogmachine.cobbler.scripts import DEFAULT_DIR, find_scripts, install

    if not config.cobbler_url:
        raise CliError("cobbler_url is not set: configure Cobbler first (see README, Cobbler)")
    directory = Path(args.directory) if args.directory else DEFAULT_DIR
    scripts = find_scripts(directory)
    if not scripts:
        raise CliError(f"no kickstarts/ or snippets/ under {directory}")

    async def run() -> None:
        client = CobblerClient(config.cobbler_url, config.cobbler_user, config.cobbler_password,
                               timeout=config.cobbler_timeout)
        try:
            await install(client, scripts)
        finally:
            await client.stop()

    asyncio.run(run())
    for script in scripts:
        print(f"installed {script.kind} {script.name}")
    print(f"{len(scripts)} file(s) from {directory} installed into Cobbler at {public_url(config.cobbler_url)}")
    return 0


def cmd_env_template_import(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from fogmachine.catalog import build_source
    from fogmachine.composition import build_context, release_context
    from fogmachine.services.actor import Actor
    from fogmachine.services.environments import files, templates

    path = Path(args.file)
    with path.open("rb") as fh:
        raw = fh.read(files.MAX_FILE_BYTES + 1)  # load refuses what is longer; no need to read a huge file
    named, description, spec_data = files.load(raw)
    name = args.name or named
    if not name:
        raise CliError(f"{path} has no name: add 'name: NAME' to it, or give --name NAME")

    async def run() -> templates.TemplateView:
        catalog = build_source(config)  # the targets are checked against the catalog the server uses
        db = _database(config)
        ctx = build_context(config, db, catalog=catalog)
        try:
            migrate.ensure_schema(db.engine)
            await catalog.start()
            return await templates.save(ctx, Actor.system("cli"), name, description, spec_data)
        finally:
            await catalog.stop()
            release_context(ctx)
            db.dispose()

    view = asyncio.run(run())
    print(f"environment template {view.name} saved (shared): {len(view.spec.tiers)} tier(s), "
          f"{view.spec.guest_count} guest(s)")
    return 0


def cmd_env_template_export(config: Config, args: argparse.Namespace) -> int:
    from fogmachine.services.actor import Actor
    from fogmachine.services.environments import files, templates

    db = _database(config)
    try:
        migrate.ensure_schema(db.engine)
        with db.session() as session:
            view = templates.get_template(session, Actor.system("cli"), args.name)
    finally:
        db.dispose()
    sys.stdout.write(files.dump(view.name, view.description, view.spec))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fogmachine", description="Fogmachine, a self-service mini-cloud.")
    parser.add_argument("--version", action="version", version=f"fogmachine {__version__}")
    parser.add_argument("--config", "-c", help="configuration file (default: see the search order in README)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="logging level (overrides log_level)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[Config, argparse.Namespace], int], help_: str,
            parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    add("serve", cmd_serve, "run the server in the foreground")
    db = sub.add_parser("db", help="database schema", description="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = add("upgrade", cmd_db_upgrade, "upgrade the database schema to the newest revision", db_sub)
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    add("current", cmd_db_current, "print the database's schema revision", db_sub)

    user = sub.add_parser("user", help="user accounts", description="user accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    ua = add("add", cmd_user_add, "create a user (asks for the password, or reads it from stdin)", user_sub)
    ua.add_argument("name")
    ua.add_argument("--admin", action="store_true", help="make the user an administrator")
    ua.add_argument("--email", help="e-mail address")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    hosts = sub.add_parser("hosts", help="hypervisor hosts", description="hypervisor hosts")
    hosts_sub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="COMMAND")
    add("sync", cmd_hosts_sync, "sync virthosts.conf into the database", hosts_sub)
    add("list", cmd_hosts_list, "list the hosts the database knows", hosts_sub)

    cfg = sub.add_parser("config", help="configuration", description="configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    add("check", cmd_config_check, "read the configuration and virthosts, reach the database", cfg_sub)

    cobbler = sub.add_parser("cobbler", help="the Cobbler server", description="the Cobbler server")
    cobbler_sub = cobbler.add_subparsers(dest="cobbler_command", required=True, metavar="COMMAND")
    snip = add("install-snippets", cmd_cobbler_install_snippets,
               "install ks_scripts/ kickstarts and snippets into Cobbler through its API", cobbler_sub)
    snip.add_argument("--from", dest="directory", help="folder with kickstarts/ and snippets/ (default: ks_scripts)")

    envt = sub.add_parser("env-template", help="environment templates", description="environment templates")
    envt_sub = envt.add_subparsers(dest="env_template_command", required=True, metavar="COMMAND")
    imp = add("import", cmd_env_template_import, "save an environment template from its YAML file (create or "
              "replace; a shared template, as an administrator)", envt_sub)
    imp.add_argument("file", help="the YAML file (samples/environments/db-web.yaml shows one)")
    imp.add_argument("--name", help="save it under this name (default: the file's name)")
    exp = add("export", cmd_env_template_export, "print an environment template as its YAML file", envt_sub)
    exp.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"log_level": args.log_level} if args.log_level else {}
    config: Config | None = None
    try:
        config = configmod.load(args.config, **overrides)
        logs.setup(config.log_level)
        status: int = args.func(config, args)
        return status
    except (FogmachineError, CliError) as exc:
        print(f"fogmachine: error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except SQLAlchemyError as exc:
        assert config is not None
        print(f"fogmachine: error: {_db_error(config, exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fogmachine: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
