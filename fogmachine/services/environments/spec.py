"""An environment template's shape: ordered tiers, and the structural rules each must keep.

A template is ``{"tiers": [tier, ...]}``; a tier is::

    name           "db": a lower-case identifier, so that a variable can say {{ db.ip }}
    target         a catalog entry (a Cobbler profile or image, or a local entry)
    count          how many guests (1 to MAX_COUNT)
    name_pattern   how its guests are named: {env} (the environment's name), {tier} and {n}
                   (1, 2, ...); default "{env}-{tier}{n}"
    anti_affinity  true: its guests go to different hosts
    variables      {NAME: expression}: Jinja2 expressions over the tiers before it (variables.py)

This module checks what can be checked without Jinja2 or the catalog: types,
names, counts, sizes, no unknown keys. Every check names the field the way the
API's error shape does (``tiers[1].count``, ``tiers[0].variables.db_host``), so
a form can put the message under the field. Nothing a client sends is trusted:
every name is full-matched, every size is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fogmachine.errors import ValidationError

TIER_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")
VARIABLE_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
PATTERN_RE = re.compile(r"(?:[a-z0-9-]|\{env\}|\{tier\}|\{n\})+")
# Names a variable may not take: what the expressions themselves are given (variables.py).
RESERVED_NAMES = frozenset({"env", "owner", "range", "loop", "self", "true", "false", "none"})
DEFAULT_NAME_PATTERN = "{env}-{tier}{n}"
MAX_TIERS = 10
MAX_COUNT = 20
MAX_VARIABLES = 50
MAX_EXPRESSION = 2000
MAX_PATTERN = 63
TIER_KEYS = frozenset({"name", "target", "count", "name_pattern", "anti_affinity", "variables"})


@dataclass(frozen=True)
class TierSpec:
    name: str
    target: str
    count: int = 1
    name_pattern: str = DEFAULT_NAME_PATTERN
    anti_affinity: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)

    def guest_name(self, env: str, n: int) -> str:
        """The name of this tier's ``n``-th guest (1 first) in environment ``env``."""
        return self.name_pattern.replace("{env}", env).replace("{tier}", self.name).replace("{n}", str(n))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "count": self.count, "name_pattern": self.name_pattern,
                "anti_affinity": self.anti_affinity, "variables": dict(self.variables)}


@dataclass(frozen=True)
class TemplateSpec:
    tiers: tuple[TierSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tiers": [tier.to_dict() for tier in self.tiers]}

    def tier_index(self, name: str) -> int | None:
        return next((i for i, tier in enumerate(self.tiers) if tier.name == name), None)

    @property
    def guest_count(self) -> int:
        return sum(tier.count for tier in self.tiers)


def _tier(data: Any, where: str) -> TierSpec:
    if not isinstance(data, Mapping):
        raise ValidationError(f"{where} must be an object with name, target and count", field=where)
    unknown = sorted(str(k) for k in data if k not in TIER_KEYS)
    if unknown:
        raise ValidationError(f"{where} has unknown keys: {', '.join(unknown)} (a tier takes "
                              f"{', '.join(sorted(TIER_KEYS))})", field=f"{where}.{unknown[0]}")
    name = data.get("name")
    if not isinstance(name, str) or not TIER_NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
        raise ValidationError(
            f"{where}.name must be 1 to 31 lower-case letters, digits or '_', starting with a letter "
            f"(and not one of {', '.join(sorted(RESERVED_NAMES))}): it is how variables name the tier",
            field=f"{where}.name")
    target = data.get("target")
    if not isinstance(target, str) or not target.strip() or len(target) > 255 or not target.isprintable():
        raise ValidationError(f"{where}.target must name a catalog entry", field=f"{where}.target")
    count = data.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValidationError(f"{where}.count must be a whole number from 1 to {MAX_COUNT}", field=f"{where}.count")
    pattern = data.get("name_pattern", DEFAULT_NAME_PATTERN)
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN or not PATTERN_RE.fullmatch(pattern):
        raise ValidationError(
            f"{where}.name_pattern may hold lower-case letters, digits, '-' and {{env}}, {{tier}}, {{n}} "
            f"(at most {MAX_PATTERN} characters)", field=f"{where}.name_pattern")
    if count > 1 and "{n}" not in pattern:
        raise ValidationError(f"{where}.name_pattern must hold {{n}}: the tier has {count} guests",
                              field=f"{where}.name_pattern")
    anti = data.get("anti_affinity", False)
    if not isinstance(anti, bool):
        raise ValidationError(f"{where}.anti_affinity must be true or false", field=f"{where}.anti_affinity")
    variables = data.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise ValidationError(f"{where}.variables must be an object of name: expression",
                              field=f"{where}.variables")
    if len(variables) > MAX_VARIABLES:
        raise ValidationError(f"{where}.variables: at most {MAX_VARIABLES}", field=f"{where}.variables")
    for key, expression in variables.items():
        if not isinstance(key, str) or not VARIABLE_NAME_RE.fullmatch(key):
            raise ValidationError(f"{where}.variables: {str(key)[:64]!r} is not a variable name (lower-case "
                                  "letters, digits and '_', starting with a letter, at most 63)",
                                  field=f"{where}.variables")
        if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION:
            raise ValidationError(f"{where}.variables.{key} must be text of at most {MAX_EXPRESSION} characters",
                                  field=f"{where}.variables.{key}")
    return TierSpec(name=name, target=target.strip(), count=count, name_pattern=pattern, anti_affinity=anti,
                    variables={str(k): str(v) for k, v in variables.items()})


def parse(data: Any) -> TemplateSpec:
    """A ``TemplateSpec`` from what a client sent (JSON or YAML, already decoded), or ValidationError."""
    if not isinstance(data, Mapping) or not isinstance(data.get("tiers"), list):
        raise ValidationError("a template needs tiers: a list of {name, target, count, ...}", field="tiers")
    raw = data["tiers"]
    if not 1 <= len(raw) <= MAX_TIERS:
        raise ValidationError(f"a template has 1 to {MAX_TIERS} tiers", field="tiers")
    tiers = tuple(_tier(item, f"tiers[{i}]") for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, tier in enumerate(tiers):
        if tier.name in seen:
            raise ValidationError(f"tiers[{i}].name: two tiers are named {tier.name}", field=f"tiers[{i}].name")
        seen.add(tier.name)
    return TemplateSpec(tiers)
