"""Environment templates on SQLite, MariaDB and PostgreSQL: who sees and changes which, whole saves, audit."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from fogmachine.catalog.local_source import LocalCatalog
from fogmachine.context import Context
from fogmachine.db.models import AuditEvent, Environment, EnvTemplate, User
from fogmachine.errors import Conflict, NotFound, PermissionDenied, ValidationError
from fogmachine.services.actor import Actor
from fogmachine.services.environments import spec as specmod
from fogmachine.services.environments import templates

DB_WEB: dict[str, Any] = {"tiers": [
    {"name": "db", "target": "small"},
    {"name": "web", "target": "small", "count": 2, "anti_affinity": True, "variables": {"db_host": "{{ db.ip }}"}},
]}


def _ctx(make_ctx: Any, **settings: str) -> Context:
    ctx: Context = make_ctx(**settings)
    ctx.catalog = LocalCatalog(ctx.config)  # the repository's catalog.conf: small, medium, large, rescue
    return ctx


def _users(ctx: Context) -> dict[str, Actor]:
    with ctx.db.session() as s:
        rows = [User(username=name, is_admin=name == "root", password_hash="x") for name in ("root", "ann", "bob")]
        s.add_all(rows)
        s.flush()
        return {u.username: Actor(u.id, u.username, u.is_admin) for u in rows}


def _audit(ctx: Context) -> list[tuple[str, str, str]]:
    with ctx.db.session() as s:
        return [(e.action, e.object_name, e.message) for e in
                s.scalars(select(AuditEvent).where(AuditEvent.action.like("envtemplate.%")).order_by(AuditEvent.id))]


def _count(ctx: Context) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(EnvTemplate)) or 0


async def test_an_administrator_creates_then_replaces_a_shared_template_whole(make_ctx: Any) -> None:
    ctx = _ctx(make_ctx)
    root = _users(ctx)["root"]
    made = await templates.save(ctx, root, "db-web", "  a db, then two web servers \n", DB_WEB)
    assert made.shared and made.owner is None and made.description == "a db, then two web servers"
    assert [t.name for t in made.spec.tiers] == ["db", "web"] and made.spec.tiers[1].anti_affinity
    with ctx.db.session() as s:
        row = s.scalars(select(EnvTemplate)).one()
        assert json.loads(row.spec) == made.spec.to_dict() and row.owner_id is None
    changed = copy.deepcopy(DB_WEB)
    changed["tiers"][1]["count"] = 3
    replaced = await templates.save(ctx, root, "db-web", "", changed)
    assert replaced.id == made.id and replaced.spec.guest_count == 4 and replaced.description == ""
    assert replaced.updated_at >= made.updated_at
    assert _count(ctx) == 1
    with ctx.db.session() as s:
        assert templates.get_template(s, root, "db-web").spec == replaced.spec
    assert _audit(ctx) == [
        ("envtemplate.save", "db-web", "created: db x1 (small), web x2 (small)"),
        ("envtemplate.save", "db-web", "replaced: db x1 (small), web x3 (small)"),
    ]


async def test_users_manage_nothing_unless_user_templates_allows_it(make_ctx: Any) -> None:
    ctx = _ctx(make_ctx)
    actors = _users(ctx)
    await templates.save(ctx, actors["root"], "shared", "", DB_WEB)
    with pytest.raises(PermissionDenied, match="user_templates"):
        await templates.save(ctx, actors["ann"], "mine", "", DB_WEB)
    with pytest.raises(PermissionDenied, match="user_templates"):
        await templates.delete(ctx, actors["ann"], "shared")
    with ctx.db.session() as s:
        views, total = templates.list_templates(s, actors["ann"])
    assert [v.name for v in views] == ["shared"] and total == 1
    assert _count(ctx) == 1 and len(_audit(ctx)) == 1


async def test_with_user_templates_a_user_keeps_private_ones_that_nobody_else_sees(make_ctx: Any) -> None:
    ctx = _ctx(make_ctx, user_templates="true")
    actors = _users(ctx)
    root, ann, bob = actors["root"], actors["ann"], actors["bob"]
    await templates.save(ctx, root, "shared", "", DB_WEB)
    mine = await templates.save(ctx, ann, "ann-lab", "mine", DB_WEB)
    assert mine.owner == "ann" and not mine.shared
    await templates.save(ctx, ann, "ann-lab", "still mine", DB_WEB)
    with ctx.db.session() as s:
        assert [v.name for v in templates.list_templates(s, ann)[0]] == ["ann-lab", "shared"]
        assert [v.name for v in templates.list_templates(s, bob)[0]] == ["shared"]
        assert templates.list_templates(s, root)[1] == 2
        assert templates.get_template(s, root, "ann-lab").description == "still mine"
        with pytest.raises(NotFound):
            templates.get_template(s, bob, "ann-lab")
    # Bob can neither read, take over nor delete ann's; nobody but an administrator changes a shared one.
    with pytest.raises(Conflict, match="taken"):
        await templates.save(ctx, bob, "ann-lab", "", DB_WEB)
    with pytest.raises(NotFound):
        await templates.delete(ctx, bob, "ann-lab")
    with pytest.raises(PermissionDenied, match="shared"):
        await templates.save(ctx, ann, "shared", "", DB_WEB)
    with pytest.raises(PermissionDenied, match="shared"):
        await templates.delete(ctx, ann, "shared")
    # An administrator edits (the owner stays) and deletes anyone's.
    edited = await templates.save(ctx, root, "ann-lab", "checked", DB_WEB)
    assert edited.owner == "ann"
    await templates.delete(ctx, root, "ann-lab")
    with ctx.db.session() as s:
        assert [v.name for v in templates.list_templates(s, ann)[0]] == ["shared"]
    # A read-only token changes nothing.
    reader = Actor(ann.user_id, "ann", scope="read")
    with pytest.raises(PermissionDenied, match="read scope"):
        await templates.save(ctx, reader, "ann-two", "", DB_WEB)


@pytest.mark.parametrize(("name", "description", "spec", "field"), [
    ("Db-Web", "", DB_WEB, "name"),
    ("db-web\n", "", DB_WEB, "name"),
    ("db_web", "", DB_WEB, "name"),
    ("db-web", "x" * (templates.MAX_DESCRIPTION + 1), DB_WEB, "description"),
    ("db-web", "see \x1b[2J", DB_WEB, "description"),
    ("db-web", 7, DB_WEB, "description"),
    ("db-web", "", {"tiers": []}, "tiers"),
    ("db-web", "", {"tiers": [{"name": "db", "target": "nosuch"}]}, "tiers[0].target"),
    ("db-web", "", {"tiers": [{"name": "db", "target": "small"}, {"name": "web", "target": "local:nosuch"}]},
     "tiers[1].target"),
    ("db-web", "", {"tiers": [{"name": "db", "target": "small"},
                              {"name": "web", "target": "small", "variables": {"db_host": "{{ db.port }}"}}]},
     "tiers[1].variables.db_host"),
])
async def test_a_bad_template_is_refused_naming_the_field_and_nothing_is_written(
        make_ctx: Any, name: Any, description: Any, spec: Any, field: str) -> None:
    ctx = _ctx(make_ctx)
    root = _users(ctx)["root"]
    with pytest.raises(ValidationError) as caught:
        await templates.save(ctx, root, name, description, spec)
    assert caught.value.field == field, caught.value.message
    if field.endswith(".target"):
        assert "unknown" in caught.value.message and caught.value.message.startswith(field.split(".")[0])
    assert _count(ctx) == 0 and _audit(ctx) == []


async def test_deleting_a_template_leaves_its_environments_with_their_copy(make_ctx: Any) -> None:
    ctx = _ctx(make_ctx)
    root = _users(ctx)["root"]
    made = await templates.save(ctx, root, "db-web", "", DB_WEB)
    with ctx.db.session() as s:
        env = Environment(name="lab", live_name="lab", template_id=made.id, template_name="db-web",
                          spec=json.dumps(made.spec.to_dict()))
        s.add(env)
        s.flush()
        env_id = env.id
    await templates.delete(ctx, root, "db-web")
    with ctx.db.session() as s:
        env = s.get(Environment, env_id)
        assert env is not None and env.template_id is None and env.template_name == "db-web"
    assert _count(ctx) == 0
    assert _audit(ctx)[-1] == ("envtemplate.delete", "db-web", "db x1 (small), web x2 (small)")
    with pytest.raises(NotFound):
        await templates.delete(ctx, root, "db-web")


async def test_concurrent_creates_of_one_name_leave_one_template_and_no_server_error(make_ctx: Any) -> None:
    ctx = _ctx(make_ctx)
    root = _users(ctx)["root"]
    results = await asyncio.gather(*(templates.save(ctx, root, "race", f"try {i}", DB_WEB) for i in range(6)),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, Conflict) for f in failures), failures
    assert len(failures) < len(results)
    assert _count(ctx) == 1
    saves = [a for a in _audit(ctx) if a[0] == "envtemplate.save"]
    assert [m.split(":")[0] for _, _, m in saves].count("created") == 1
    assert len(saves) == len(results) - len(failures)


def test_the_unique_name_turns_a_lost_race_into_a_conflict(make_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit itself, as if the twin had been committed between its look-up and its insert."""
    ctx = _ctx(make_ctx)
    root = _users(ctx)["root"]
    spec = specmod.parse(DB_WEB)
    ctx.db.run_sync(templates._save, root, "twin", "", spec)
    monkeypatch.setattr(templates, "_find", lambda session, name: None)
    with pytest.raises(Conflict, match="just created by someone else"):
        ctx.db.run_sync(templates._save, root, "twin", "", spec)
    assert _count(ctx) == 1


def test_may_write_offers_what_save_allows(make_config: Any) -> None:
    """The pages offer the editor by ``may_write``: the same rules ``save`` checks (above, through it)."""
    spec = specmod.parse(DB_WEB)
    now = dt.datetime(2026, 5, 4)

    def view(owner: str | None) -> templates.TemplateView:
        return templates.TemplateView(1, "t", "", owner, spec, now, now)

    root, ann, reader = Actor(1, "root", is_admin=True), Actor(2, "ann"), Actor(2, "ann", scope="read")
    off, on = make_config(), make_config(user_templates="true")
    assert templates.may_write(root, off) and templates.may_write(root, off, view(None))
    assert templates.may_write(root, off, view("ann"))
    assert not templates.may_write(ann, off) and not templates.may_write(ann, off, view("ann"))
    assert templates.may_write(ann, on) and templates.may_write(ann, on, view("ann"))
    assert not templates.may_write(ann, on, view(None)) and not templates.may_write(ann, on, view("bob"))
    assert not templates.may_write(reader, on) and not templates.may_write(Actor(None, "x"), on)
