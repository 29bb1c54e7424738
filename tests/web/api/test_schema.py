"""The field specs: what they accept, what they refuse (naming the field), what they publish."""

from __future__ import annotations

import datetime as dt

import pytest

from fogmachine.errors import ValidationError
from fogmachine.web.api.schema import Field, Obj, Query, page_params

THING = Obj("Thing", (
    Field("name", "string", min_length=1, max_length=5, pattern=r"^[a-z]+$"),
    Field("count", "integer", required=False, minimum=1, maximum=10, default=3),
    Field("on", "boolean", required=False),
    Field("when", "datetime", required=False, nullable=True),
    Field("kind", "string", required=False, enum=("a", "b")),
    Field("tags", "array", required=False, items=Field("tag", "string", max_length=3), max_length=2),
    Field("inner", "object", required=False, ref=Obj("Inner", (Field("x", "integer"),))),
))


def _field_of(fn, *args) -> str:
    with pytest.raises(ValidationError) as info:
        fn(*args)
    return info.value.details["field"]


def test_accepts_and_fills_defaults():
    got = THING.parse(b'{"name": "abc", "when": "2026-01-02T03:04:05+01:00", "tags": ["x"], "inner": {"x": 1}}')
    assert got == {"name": "abc", "count": 3, "on": None, "when": dt.datetime(2026, 1, 2, 2, 4, 5), "kind": None,
                   "tags": ["x"], "inner": {"x": 1}}
    assert THING.check({"name": "a", "when": None})["when"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "ABC"}, "name"), ({"name": "abcdef"}, "name"), ({"name": ""}, "name"), ({}, "name"),
    ({"name": "a", "count": 11}, "count"), ({"name": "a", "count": True}, "count"),
    ({"name": "a", "on": 1}, "on"), ({"name": "a", "when": "2026-01-02"}, "when"),
    ({"name": "a", "when": "2026-01-02T00:00:00"}, "when"), ({"name": "a", "kind": "c"}, "kind"),
    ({"name": "a", "tags": ["x", "y", "z"]}, "tags"), ({"name": "a", "tags": ["long"]}, "tags[0]"),
    ({"name": "a", "tags": "x"}, "tags"), ({"name": "a", "inner": {}}, "inner.x"),
    ({"name": "a", "inner": {"x": 1, "y": 2}}, "inner.y"), ({"name": "a", "extra": 1}, "extra"),
    ({"name": "a", "when": "9999-12-31T23:59:59-23:59"}, "when"),
])
def test_refusals_name_the_field(body, field):
    assert _field_of(THING.check, body) == field


def test_published_schema_matches_the_rules():
    schema = THING.json_schema({})
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["name"] == {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"}
    assert props["count"] == {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}
    assert props["when"] == {"type": ["string", "null"], "format": "date-time"}
    assert props["inner"] == {"$ref": "#/components/schemas/Inner"}
    assert props["tags"]["items"] == {"type": "string", "maxLength": 3}


def test_query_parsing():
    query = Query((Field("state", "string", required=False, enum=("up", "down")),
                   Field("all", "boolean", required=False, default=False), *page_params(10, 50)))
    assert query.parse({}) == {"state": None, "all": False, "offset": 0, "limit": 10}
    assert query.parse({"state": [b"up"], "all": [b"true"], "limit": [b"50"], "_xsrf": [b"t"]})["limit"] == 50
    for args, field in (({"limit": [b"51"]}, "limit"), ({"limit": [b"1e3"]}, "limit"), ({"x": [b"1"]}, "x"),
                        ({"state": [b"up", b"down"]}, "state"), ({"state": [b"\xff"]}, "state"),
                        ({"all": [b"sure"]}, "all"), ({"offset": [b"99999999999999"]}, "offset")):
        assert _field_of(query.parse, args) == field
    params = query.openapi_parameters()
    assert [p["name"] for p in params] == ["state", "all", "offset", "limit"]
    assert params[3]["schema"]["maximum"] == 50


def test_a_required_query_parameter_left_out_is_named_and_defaults_are_not_shared():
    query = Query((Field("target", "string"), *page_params()))
    assert _field_of(query.parse, {"limit": [b"5"]}) == "target"
    first = query.parse({"target": [b"web"], "_xsrf": [b"t"]})
    assert first == {"target": "web", "offset": 0, "limit": 100}
    first["limit"] = 7
    assert query.parse({"target": [b"web"]})["limit"] == 100


def test_a_spec_with_an_unknown_kind_or_duplicate_names_is_a_bug():
    with pytest.raises(ValueError):
        Field("x", "float")
    with pytest.raises(ValueError):
        Obj("X", (Field("a", "string"), Field("a", "integer")))
