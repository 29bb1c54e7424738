"""Tier variables: every refusal names its tier and variable; rendering gives one line of text or says why not."""

from __future__ import annotations

import pytest

from fogmachine.errors import ValidationError
from fogmachine.services.environments import variables
from fogmachine.services.environments.spec import TemplateSpec, parse
from fogmachine.services.environments.variables import (
    MAX_VALUE,
    EnvFacts,
    GuestFacts,
    OwnerFacts,
    VariableError,
    check,
    render,
)

ENV = EnvFacts("lab", "integration tests", "db-web")
OWNER = OwnerFacts("alice", "alice@example.org")
DB = [GuestFacts("lab-db1", "10.0.0.5", "lab-db1.example.org", "52:54:00:00:00:01"),
      GuestFacts("lab-db2", "10.0.0.6", "lab-db2.example.org", "52:54:00:00:00:02")]


def _spec(web_vars: dict[str, str], db_vars: dict[str, str] | None = None) -> TemplateSpec:
    """db x2, then web x2 (whose variables are under test), then app x1."""
    return parse({"tiers": [
        {"name": "db", "target": "small", "count": 2, "variables": db_vars or {}},
        {"name": "web", "target": "small", "count": 2, "variables": web_vars},
        {"name": "app", "target": "small"},
    ]})


def _refusal(source: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        check(_spec({"ok": "{{ db.ip }}", "bad": source}))
    error = caught.value
    assert error.field == "tiers[1].variables.bad"
    assert error.message.startswith("tiers[1] (web), variable bad: "), error.message
    assert error.details["tier"] == "web" and error.details["variable"] == "bad"
    return error


@pytest.mark.parametrize("source", [
    "{{ db.ip }}", "{{ db.ip }}:5432", "{{ db | map(attribute='ip') | join(',') }}", "{{ env.name }}",
    "{{ owner.username }}", "{{ db[1].hostname }}", "{{ db[-1].mac }}", "{{ env['purpose'] }}",
    "{{ db.hostname.split('.')[0] }}", "{{ db | sort(attribute='hostname') | map(attribute='name') | join(' ') }}",
    "{% if db | length > 1 %}{{ db[1].ip }}{% else %}{{ db.ip }}{% endif %}", "plain text", "",
    "{{ owner.email | replace('@', ' at ') }}", "{{ (db | first).ip }}", "{{ 2 ** 10 * 4 }}",
])
def test_good_variables_pass(source: str) -> None:
    check(_spec({"v": source}))


@pytest.mark.parametrize(("source", "words"), [
    # a tier's own guests, or a later tier's: a cycle
    ("{{ web.ip }}", ["its own tier web", "cycle"]),
    ("{{ web[0].hostname }}", ["its own tier web", "cycle"]),
    ("{{ app.ip }}", ["tier app", "not before web", "cycle"]),
    ("{{ app | map(attribute='ip') | join(',') }}", ["tier app", "not before web"]),
    # unknown tier or name
    ("{{ cache.ip }}", ["unknown tier or name 'cache'", "db, env, owner"]),
    ("{{ range(10) | join }}", ["unknown tier or name 'range'"]),
    ("{{ lipsum(n=1000000) }}", ["unknown tier or name 'lipsum'"]),
    # unknown attribute, of a tier, a guest, env, owner, or in map(attribute=...)
    ("{{ db.port }}", ["unknown attribute 'port'", "tier db", "hostname, ip, mac, name"]),
    ("{{ db[1].port }}", ["unknown attribute 'port'"]),
    ("{{ db['port'] }}", ["unknown attribute 'port'"]),
    ("{{ env.owner }}", ["unknown attribute 'owner' of env", "name, purpose, template"]),
    ("{{ owner.password }}", ["unknown attribute 'password' of owner"]),
    ("{{ db | map(attribute='port') | join(',') }}", ["unknown attribute 'port' of the guests"]),
    ("{{ db | selectattr('port') | list }}", ["unknown attribute 'port' of the guests"]),
    ("{{ db.count }}", ["unknown attribute 'count'"]),
    ("{{ db.ip.format('x') }}", ["unknown attribute 'format'"]),
    # a subscript beyond the tier's count
    ("{{ db[2].ip }}", ["db[2] is beyond tier db's 2 guest(s)", "db[0] to db[1]"]),
    ("{{ db[-3].ip }}", ["db[-3] is beyond"]),
    # syntax errors
    ("{{ db.ip", ["syntax error at line 1"]),
    ("{{ db.ip }}\n{% if %}", ["syntax error at line 2"]),
    ("{{ db.ip | nosuchfilter }}", ["unknown filter 'nosuchfilter'"]),
    ("{{ 'x' | center(999999999) }}", ["unknown filter 'center'"]),
    ("{{ db.ip is nosuchtest }}", ["nosuchtest"]),
    # statements other than if
    ("{% for g in db %}{{ g.ip }}{% endfor %}", ["For is not allowed"]),
    ("{% set x = db.ip %}{{ x }}", ["Assign is not allowed"]),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", ["Macro is not allowed"]),
    ("{% include 'x' %}", ["Include is not allowed"]),
    # sandbox escapes
    ("{{ db.__class__ }}", ["'__class__' reaches into Python's internals"]),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", ["reaches into Python's internals"]),
    ("{{ cycler.__init__.__globals__.os }}", ["'__globals__' reaches into Python's internals"]),
    ("{{ db['__class__'] }}", ["'__class__' reaches into Python's internals"]),
    ("{{ db | map(attribute='__class__') | list }}", ["'__class__' reaches into Python's internals"]),
    ("{{ db | map(attribute='ip.__class__') | list }}", ["'ip.__class__' reaches into Python's internals"]),
    ("{{ db | selectattr('__dict__') | list }}", ["'__dict__' reaches into Python's internals"]),
    ("{{ db.ip.__len__() }}", ["'__len__' reaches into Python's internals"]),
    # huge outputs, refused before they are made (a made one would fail with MemoryError, or take hours)
    ("{{ 'x' * 10**15 }}", [f"longer than {MAX_VALUE} characters or items"]),
    ("{{ 10**15 * 'x' }}", [f"longer than {MAX_VALUE} characters or items"]),
    ("{{ [db.ip] * 10**15 }}", [f"longer than {MAX_VALUE} characters or items"]),
    ("{{ 9**9**9 }}", ["more than 64 bits"]),
    ("{{ 2**64 }}", ["more than 64 bits"]),
    ("{{ ('x' * 4000) | replace('x', 'y' * 4000) | replace('y', 'z' * 4000) }}", ["longer than"]),
    ("{{ ('x' * 4000) | list | join('y' * 4000) }}", ["longer than"]),
    ("{{ '%999999999999s' % db.ip }}", ["'%' formatting of text"]),
    ("{{ 'x' * 4000 ~ 'y' * 4000 }}", [f"longer than {MAX_VALUE} characters"]),
    ("{{ " + "(" * 900 + "1" + ")" * 900 + " }}", ["nested too deeply"]),
    # what only shows when it runs
    ("{{ 1 / 0 }}", ["division by zero"]),
    ("{{ db.ip + 1 }}", ["str"]),
    # a value that is not one printable line
    ("first\nsecond", ["U+000A", "one line of printable text"]),
    ("{{ '\x1b[31m' }}{{ db.ip }}", ["U+001B"]),
    ("{{ db.ip }}\u2028", ["U+2028"]),
])
def test_each_refusal_names_the_tier_and_variable_and_says_why(source: str, words: list[str]) -> None:
    message = _refusal(source).message
    for word in words:
        assert word in message, message


def test_the_first_tier_may_use_only_env_and_owner() -> None:
    check(_spec({}, db_vars={"label": "{{ env.name }}-{{ owner.username }}"}))
    with pytest.raises(ValidationError) as caught:
        check(_spec({}, db_vars={"self": "{{ db.ip }}"}))
    assert caught.value.field == "tiers[0].variables.self" and "cycle" in caught.value.message
    with pytest.raises(ValidationError, match="here a variable may use env, owner"):
        check(_spec({}, db_vars={"x": "{{ nope }}"}))


def test_a_refusal_names_the_first_bad_variable_in_tier_order() -> None:
    spec = parse({"tiers": [{"name": "db", "target": "small", "variables": {"a": "{{ env.name }}"}},
                            {"name": "web", "target": "small", "variables": {"b": "{{ db.x }}", "c": "{{ y }}"}},
                            {"name": "app", "target": "small", "variables": {"d": "{{ z }}"}}]})
    with pytest.raises(ValidationError) as caught:
        check(spec)
    assert caught.value.field == "tiers[1].variables.b"


def test_the_arithmetic_bounds_refuse_before_computing() -> None:
    """Called directly: had the operation run, these would raise MemoryError or not return for hours."""
    for op, left, right in (("*", "x", 10**15), ("*", 10**15, [1]), ("**", 9, 9**9), ("**", 2.5, 10**6),
                            ("+", "x" * 4000, "y" * 4000)):
        with pytest.raises(variables._Unbounded):
            variables._binop(op, left, right)
    assert variables._binop("**", 2, 63) == 2**63
    assert variables._binop("*", "ab", 3) == "ababab"


# -- render ----------------------------------------------------------------------------------------

def test_render_gives_each_variable_from_the_reported_facts() -> None:
    spec = _spec({
        "db_host": "{{ db.ip }}", "db_url": "postgresql://{{ db.ip }}:5432/{{ env.name }}",
        "replicas": "{{ db | map(attribute='ip') | join(',') }}", "second": "{{ db[1].hostname }}",
        "owner": "{{ owner.username }} <{{ owner.email }}>", "short": "{{ db.hostname.split('.')[0] }}",
    })
    values = render(spec, 1, {"db": DB}, ENV, OWNER)
    assert values == {
        "db_host": "10.0.0.5", "db_url": "postgresql://10.0.0.5:5432/lab", "replicas": "10.0.0.5,10.0.0.6",
        "second": "lab-db2.example.org", "owner": "alice <alice@example.org>", "short": "lab-db1",
    }
    assert render(spec, 2, {"db": DB, "web": DB}, ENV, OWNER) == {}
    assert render(_spec({}, db_vars={"who": "{{ env.template }}/{{ owner.username }}"}), 0, {}, ENV, OWNER) == {
        "who": "db-web/alice"}


def test_render_refuses_a_value_with_a_line_break_or_control_character_from_the_facts() -> None:
    spec = _spec({"db_host": "{{ db.hostname }}", "purpose": "{{ env.purpose }}"})
    evil = [GuestFacts("lab-db1", "10.0.0.5", "db\nrm -rf /", "52:54:00:00:00:01"), DB[1]]
    with pytest.raises(VariableError) as caught:
        render(spec, 1, {"db": evil}, ENV, OWNER)
    assert "tier web, variable db_host" in caught.value.message and "U+000A" in caught.value.message
    assert caught.value.details == {"tier": "web", "variable": "db_host"}
    with pytest.raises(VariableError, match=r"variable purpose: .*U\+001B"):
        render(spec, 1, {"db": DB}, EnvFacts("lab", "see \x1b]0;owned\x07", "db-web"), OWNER)


def test_render_says_which_tier_gave_no_facts_and_which_variable_found_too_few_guests() -> None:
    spec = _spec({"second": "{{ db[1].ip }}"})
    with pytest.raises(VariableError, match="no facts from tier db"):
        render(spec, 1, {}, ENV, OWNER)
    with pytest.raises(VariableError, match="tier web, variable second"):
        render(spec, 1, {"db": DB[:1]}, ENV, OWNER)


def test_a_tier_is_its_first_guest_and_its_guests() -> None:
    tier = variables.TierFacts(DB)
    assert (tier.name, tier.ip, tier.hostname, tier.mac) == ("lab-db1", "10.0.0.5", "lab-db1.example.org",
                                                           "52:54:00:00:00:01")
    assert tier[1] is DB[1] and list(tier) == DB and len(tier) == 2
