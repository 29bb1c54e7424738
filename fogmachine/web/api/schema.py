"""Declarative field specs: one source for request validation AND the OpenAPI schemas.

A request body, a query string and a response object are each described once,
as a tuple of ``Field``s. The same description parses and checks what a client
sent (``Body.parse``, ``Query.parse``) and becomes the JSON Schema that the
OpenAPI document publishes (``json_schema``), so the document cannot drift
from what the server accepts. Every refusal is a ``ValidationError`` naming
the field in ``details.field``: a client always learns what to fix.

Deliberately small: strings, integers, booleans, date-times, arrays and nested
objects are all the API needs; a general JSON Schema validator would accept
documents the services were never written for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fogmachine.errors import ValidationError

KINDS = ("string", "integer", "boolean", "number", "datetime", "array", "object", "any")
JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "number",
              "datetime": "string", "array": "array", "object": "object"}
# Largest integer a field may carry unless it says otherwise: beyond it a client
# surely made a mistake, and databases would refuse it with an error of their own.
INT_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class Field:
    """One named value: its kind, whether it is required and the limits it must meet."""

    name: str
    kind: str
    description: str = ""
    required: bool = True
    nullable: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    default: Any = None
    items: Field | Obj | None = None  # for arrays
    ref: Obj | None = None  # for nested objects
    example: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")

    def json_schema(self, refs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """This field as JSON Schema (OpenAPI 3.1 is JSON Schema 2020-12)."""
        if self.kind == "object" and self.ref is not None:
            schema: dict[str, Any] = self.ref.reference(refs)
            if self.nullable:
                return {"oneOf": [schema, {"type": "null"}], **self._annotations()}
            return {**schema, **self._annotations()} if self._annotations() else schema
        schema = {}
        if self.kind != "any":
            json_type: Any = JSON_TYPES[self.kind]
            schema["type"] = [json_type, "null"] if self.nullable else json_type
        if self.kind == "datetime":
            schema["format"] = "date-time"
        if self.kind == "integer" or self.kind == "number":
            low = self.minimum if self.minimum is not None else (-INT_LIMIT if self.kind == "integer" else None)
            high = self.maximum if self.maximum is not None else (INT_LIMIT if self.kind == "integer" else None)
            if low is not None:
                schema["minimum"] = low
            if high is not None:
                schema["maximum"] = high
        if self.min_length is not None:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.enum is not None:
            schema["enum"] = [*self.enum, None] if self.nullable else list(self.enum)
        if self.kind == "array" and self.items is not None:
            schema["items"] = (self.items.reference(refs) if isinstance(self.items, Obj)
                               else self.items.json_schema(refs))
        if self.kind == "object" and self.ref is None:
            schema["additionalProperties"] = True
        schema.update(self._annotations())
        return schema

    def _annotations(self) -> dict[str, Any]:
        notes: dict[str, Any] = {}
        if self.description:
            notes["description"] = self.description
        if self.default is not None:
            notes["default"] = self.default
        if self.example is not None:
            notes["examples"] = [self.example]
        return notes

    def check(self, value: Any, path: str) -> Any:
        """The value if it fits this field, converted where JSON has no type (date-times)."""
        if value is None:
            if self.nullable:
                return None
            raise ValidationError(f"{path} must not be null", field=path)
        kind = self.kind
        if kind == "string" or kind == "datetime":
            if not isinstance(value, str):
                raise ValidationError(f"{path} must be a string", field=path)
            if kind == "datetime":
                return _parse_datetime(value, path)
            if "\x00" in value:
                raise ValidationError(f"{path} must not contain NUL characters", field=path)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # JSON allows a lone surrogate escape ("\ud800"); no database does
                raise ValidationError(f"{path} is not valid Unicode (a lone surrogate)", field=path) from None
            if self.min_length is not None and len(value) < self.min_length:
                raise ValidationError(f"{path} must be at least {self.min_length} characters", field=path)
            if self.max_length is not None and len(value) > self.max_length:
                raise ValidationError(f"{path} must be at most {self.max_length} characters", field=path)
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise ValidationError(f"{path} has the wrong form (expected {self.pattern})", field=path)
            if self.enum is not None and value not in self.enum:
                raise ValidationError(f"{path} must be one of {', '.join(self.enum)}", field=path)
            return value
        if kind == "integer" or kind == "number":
            wanted = int if kind == "integer" else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted):
                article = "an integer" if kind == "integer" else "a number"
                raise ValidationError(f"{path} must be {article}", field=path)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValidationError(f"{path} must be a finite number", field=path)
            low = self.minimum if self.minimum is not None else (-INT_LIMIT if kind == "integer" else None)
            high = self.maximum if self.maximum is not None else (INT_LIMIT if kind == "integer" else None)
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValidationError(f"{path} must be between {low} and {high}", field=path)
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValidationError(f"{path} must be true or false", field=path)
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise ValidationError(f"{path} must be an array", field=path)
            if self.max_length is not None and len(value) > self.max_length:
                raise ValidationError(f"{path} may hold at most {self.max_length} items", field=path)
            if isinstance(self.items, Obj):
                return [self.items.check(item, f"{path}[{i}]") for i, item in enumerate(value)]
            if isinstance(self.items, Field):
                return [self.items.check(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return value
        if kind == "object":
            if not isinstance(value, dict):
                raise ValidationError(f"{path} must be an object", field=path)
            return self.ref.check(value, path) if self.ref is not None else value
        return value


def _parse_datetime(value: str, path: str) -> dt.datetime:
    """An ISO 8601 date-time with an offset (or Z), as naive UTC like every column holds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{path} must be an ISO 8601 date-time such as 2026-01-31T12:00:00Z",
                              field=path) from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{path} needs a time zone (append Z for UTC)", field=path)
    try:
        return parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValidationError(f"{path} is out of range", field=path) from None


@dataclass(frozen=True)
class Obj:
    """A named JSON object: a request body, or a response object in the document's components."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    # Response objects may grow keys in later versions without breaking clients;
    # request bodies never accept keys they do not know (a typo must not be ignored).
    closed: bool = True

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.name}: duplicate field names")

    @property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def reference(self, refs: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
        """A $ref to this object, registering its schema in ``refs`` (or the schema inline)."""
        if refs is None:
            return self.json_schema(None)
        if self.name not in refs:
            refs[self.name] = {}  # placeholder first: objects may refer to each other
            refs[self.name] = self.json_schema(refs)
        return {"$ref": f"#/components/schemas/{self.name}"}

    def json_schema(self, refs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: f.json_schema(refs) for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": not self.closed,
        }
        if self.description:
            schema["description"] = self.description
        return schema

    def check(self, value: Any, path: str = "") -> dict[str, Any]:
        """The object with every field checked; defaults filled in for optional fields left out."""
        if not isinstance(value, dict):
            raise ValidationError(f"{path or 'the request body'} must be a JSON object", field=path or "body")
        known = self.by_name
        for key in value:
            if key not in known:
                where = f"{path}.{key}" if path else key
                raise ValidationError(f"unknown field {where!r}; known: {', '.join(sorted(known)) or 'none'}",
                                      field=where)
        result: dict[str, Any] = {}
        for f in self.fields:
            where = f"{path}.{f.name}" if path else f.name
            if f.name not in value:
                if f.required:
                    raise ValidationError(f"{where} is required", field=where)
                result[f.name] = f.default
                continue
            result[f.name] = f.check(value[f.name], where)
        return result

    def parse(self, raw: bytes) -> dict[str, Any]:
        """Decode and check a JSON request body; an empty body (no bytes at all) counts as ``{}``."""
        if not raw:
            return self.check({})
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("the request body is not UTF-8", field="body") from None
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                  f"column {exc.colno}", field="body") from None
        except (ValueError, RecursionError):
            raise ValidationError("the request body is not valid JSON", field="body") from None
        return self.check(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Query:
    """The query-string parameters of one operation; anything else is refused (typos too)."""

    params: tuple[Field, ...] = ()
    # Tornado's XSRF check reads ``_xsrf`` from the query string too.
    allowed_extra: frozenset[str] = field(default_factory=lambda: frozenset({"_xsrf"}))

    def parse(self, arguments: Mapping[str, Sequence[bytes]]) -> dict[str, Any]:
        known = {p.name: p for p in self.params}
        result: dict[str, Any] = {}
        for name, values in arguments.items():
            if name in self.allowed_extra:
                continue
            spec = known.get(name)
            if spec is None:
                raise ValidationError(f"unknown query parameter {name!r}; known: "
                                      f"{', '.join(sorted(known)) or 'none'}", field=name)
            if len(values) != 1:
                raise ValidationError(f"query parameter {name} given {len(values)} times", field=name)
            try:
                text = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"{name} is not UTF-8", field=name) from None
            result[name] = spec.check(self._convert(spec, text), name)
        for spec in self.params:
            if spec.name not in result:
                if spec.required:
                    raise ValidationError(f"query parameter {spec.name} is required", field=spec.name)
                result[spec.name] = spec.default
        return result

    @staticmethod
    def _convert(spec: Field, text: str) -> Any:
        if spec.kind == "integer":
            if not re.fullmatch(r"[+-]?[0-9]{1,12}", text.strip()):
                raise ValidationError(f"{spec.name} must be an integer", field=spec.name)
            return int(text)
        if spec.kind == "boolean":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValidationError(f"{spec.name} must be true or false", field=spec.name)
        return text

    def openapi_parameters(self) -> list[dict[str, Any]]:
        parameters = []
        for spec in self.params:
            parameter: dict[str, Any] = {"name": spec.name, "in": "query", "required": spec.required,
                                         "schema": spec.json_schema(None)}
            if spec.description:
                parameter["description"] = spec.description
            parameters.append(parameter)
        return parameters


def page_of(name: str, key: str, item: Obj) -> Obj:
    """One page of a list, its items under ``key``: the answer of every paged list, as ``page_params`` its query."""
    return Obj(name, (Field(key, "array", items=item), Field("total", "integer", minimum=0),
                      Field("offset", "integer", minimum=0), Field("limit", "integer", minimum=1)), closed=False)


def page_params(default_limit: int = 100, max_limit: int = 1000) -> tuple[Field, ...]:
    """``offset`` and ``limit``: the same pagination on every list."""
    return (
        Field("offset", "integer", "how many matching items to skip", required=False, minimum=0,
              maximum=INT_LIMIT, default=0),
        Field("limit", "integer", f"how many items to return (at most {max_limit})", required=False, minimum=1,
              maximum=max_limit, default=default_limit),
    )
