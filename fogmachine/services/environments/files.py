"""Environment templates as YAML files: what administrators keep in git, import and export.

A file is the template's name (optional on import: the URL or the command
names it), its description and its tiers, in the API's own shape::

    name: db-web
    description: a database, then two web servers that use it
    tiers:
      - name: db
        target: small
      - name: web
        target: small
        count: 2
        anti_affinity: true
        variables:
          db_host: "{{ db.ip }}"

``load`` reads one with ``yaml.safe_load``'s rules (no Python objects) and
more: the text is bounded before it is parsed, aliases are refused (``*a``
repeated is YAML's billion laughs: a small file that expands without end
once anything walks it), a key given twice is refused instead of the last
silently winning, and every error says its line. What is inside is checked
by ``spec.parse`` and ``variables.check`` like any API body. ``dump`` writes
the same shape back, tiers in order, keys in the order a person reads them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from fogmachine.errors import ValidationError
from fogmachine.services.environments.spec import TemplateSpec

MAX_FILE_BYTES = 64 * 1024  # as the API's body limit: a file that the API takes, the CLI takes, and back
FILE_KEYS = ("name", "description", "tiers")


def _at(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}" if mark is not None else "somewhere"


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases and without duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ValidationError(f"{_at(event.start_mark)}: aliases (*name) are not accepted in a template file; "
                                  "write the value out", field="body")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise ValidationError(f"{_at(key_node.start_mark)}: the key {str(key)[:64]!r} is given twice",
                                      field="body")
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str | bytes) -> tuple[str | None, str, dict[str, Any]]:
    """(name or None, description, {"tiers": [...]}) from a YAML file; ValidationError (field ``body``, or the
    key at fault) with the line for what is not a template file. The tiers are checked later, by ``spec``."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) > MAX_FILE_BYTES:
        raise ValidationError(f"a template file is at most {MAX_FILE_BYTES} bytes", field="body")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the template file is not UTF-8", field="body") from None
    try:
        data = yaml.load(decoded, Loader=_Loader)  # a SafeLoader, narrowed further
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "not valid YAML"
        raise ValidationError(f"the template file is not valid YAML: {_at(exc.problem_mark)}: {problem}",
                              field="body") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"the template file is not valid YAML: {str(exc)[:200]}", field="body") from None
    except RecursionError:
        raise ValidationError("the template file is nested too deeply", field="body") from None
    if not isinstance(data, dict):
        raise ValidationError("a template file is a mapping with name, description and tiers", field="body")
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise ValidationError(f"unknown keys in the template file: {', '.join(unknown)} (it takes "
                              f"{', '.join(FILE_KEYS)})", field=unknown[0])
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValidationError("name must be text", field="name")
    description = data.get("description")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise ValidationError("description must be text", field="description")
    return name, description, {"tiers": data.get("tiers")}


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes text of several lines (a description) as a block, the way a person would."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def dump(name: str, description: str, spec: TemplateSpec) -> str:
    """The YAML file of a template: ``load`` reads it back to the same name, description and spec."""
    document = {"name": name, "description": description, **spec.to_dict()}
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=120)
    return text
