"""The pydantic v2 side of bench/api_schema.py: the glue a port of fogmachine/web/api/schema.py would keep.

Beside its models, a port would still need all of this: a string type that refuses NUL (JSON allows
``\\u0000``, PostgreSQL does not), date-times turned into the naive UTC every column holds, the API's
error shape (a ``ValidationError`` whose ``details.field`` names the culprit) made from pydantic's
errors, the query string decoded into a model, and the models' JSON Schemas as the OpenAPI
document's components. The integer bounds are today's ``Field.bounds``. bench/api_schema.py counts
these lines against schema.py's; the models themselves come from bench/api_schema.py, translated from
today's declarations so that both sides check the very same rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from fogmachine.errors import ValidationError


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


NO_NUL = AfterValidator(_no_nul)
When = Annotated[pydantic.AwareDatetime, AfterValidator(_naive_utc)]


class Body(BaseModel):
    """A request body: JSON types exactly (no "3" for 3), and no key it does not know."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Answer(BaseModel):
    """A response object: may grow keys in later versions."""

    model_config = ConfigDict(extra="allow")


class QueryModel(BaseModel):
    """Query parameters arrive as text: lax mode turns "50" into 50 and "true" into True."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _where(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "body"


def _refusal(exc: pydantic.ValidationError) -> ValidationError:
    first = exc.errors(include_url=False)[0]
    field = _where(first["loc"])
    return ValidationError(f"{field}: {first['msg']}", field=field)


def parse_body(model: type[BaseModel], raw: bytes) -> BaseModel:
    """Decode and check a JSON request body; an empty body counts as ``{}``."""
    try:
        return model.model_validate_json(raw or b"{}")
    except pydantic.ValidationError as exc:
        raise _refusal(exc) from None


def parse_query(model: type[BaseModel], arguments: Mapping[str, Sequence[bytes]],
                allowed_extra: frozenset[str] = frozenset({"_xsrf"})) -> BaseModel:
    """The query string into ``model``: each parameter once, UTF-8, known to the model."""
    values: dict[str, str] = {}
    for name, given in arguments.items():
        if name in allowed_extra:
            continue
        if len(given) != 1:
            raise ValidationError(f"query parameter {name} given {len(given)} times", field=name)
        try:
            values[name] = given[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"{name} is not UTF-8", field=name) from None
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise _refusal(exc) from None


def components(models: Iterable[type[BaseModel]]) -> dict[str, Any]:
    """The models' JSON Schemas, referring to each other as ``#/components/schemas/NAME``."""
    _, schema = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.get("$defs", {})
    return definitions
