"""The composition root: every part built once, typed, in start order, none started; the light context."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import event

from fogmachine.app import open_database
from fogmachine.catalog import LocalCatalog
from fogmachine.composition import build, build_context, release_context
from fogmachine.config import Config
from fogmachine.errors import ConfigError


def test_build_makes_every_part_once_and_hands_the_services_the_same_ones(
        make_config: Callable[..., Config]) -> None:
    config = make_config()
    db = open_database(config)
    try:
        parts = build(config, db, schema_revision="abc")
        ctx = parts.ctx
        assert (ctx.config, ctx.db, ctx.schema_revision) == (config, db, "abc")
        assert ctx.hosts is parts.hosts and ctx.catalog is parts.catalog and isinstance(ctx.catalog, LocalCatalog)
        assert ctx.cobbler is None  # the local file has no Cobbler client
        assert parts.tasks.process_id == ctx.process_id and parts.live.ctx is ctx and parts.guest_lists.db is db
        order = parts.in_start_order()
        assert order == [ctx.accounts, ctx.tokens, parts.hosts, parts.catalog, ctx.provisioner, ctx.environments,
                         parts.tasks, parts.live]
        assert not parts.tasks.tasks["memtrim"].exclusive  # the process's own memory, trimmed in every process
        assert not parts.hosts.all() and not parts.live.started  # built, not started
        release_context(ctx)
    finally:
        db.dispose()


def test_two_builds_are_two_processes(make_config: Callable[..., Config]) -> None:
    config = make_config()
    db = open_database(config)
    try:
        first, second = build_context(config, db), build_context(config, db)
        assert first.process_id != second.process_id
        assert first.tokens is not second.tokens and first.accounts is not second.accounts
        release_context(first)  # takes off the first cache's hooks only
        assert event.contains(db.sessionmaker, "after_flush", second.tokens._note_changes)
        release_context(second)
    finally:
        db.dispose()


def test_a_catalog_source_it_cannot_build_is_refused(
        make_config: Callable[..., Config]) -> None:
    config = make_config(catalog_source="ldap")
    db = open_database(config)
    try:
        with pytest.raises(ConfigError, match="bad value 'ldap' for catalog_source"):
            build(config, db)
    finally:
        db.dispose()


def test_the_light_context_has_no_hosts_and_release_lets_go_of_its_hooks_and_threads(
        make_config: Callable[..., Config]) -> None:
    config = make_config()
    db = open_database(config)
    try:
        ctx = build_context(config, db)
        assert ctx.hosts is None and ctx.catalog is None and not ctx.guest_work.busy(1)
        with pytest.raises(RuntimeError, match="without hosts"):
            ctx.need_hosts()
        assert event.contains(db.sessionmaker, "after_commit", ctx.tokens._clear_if_changed)
        release_context(ctx)
        assert not event.contains(db.sessionmaker, "after_commit", ctx.tokens._clear_if_changed)
        assert ctx.accounts.executor._shutdown
    finally:
        db.dispose()
