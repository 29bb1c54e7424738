"""Template files: what dump writes, load reads back the same; what is not a template file is refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmachine.errors import ValidationError
from fogmachine.services.environments import files, variables
from fogmachine.services.environments.spec import parse

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "environments" / "db-web.yaml"


def test_the_sample_file_is_a_good_template() -> None:
    name, description, data = files.load(SAMPLE.read_text())
    spec = parse(data)
    variables.check(spec)
    assert name == "db-web" and "\n" in description
    assert [(t.name, t.count, t.anti_affinity) for t in spec.tiers] == [("db", 1, False), ("web", 2, True)]
    assert spec.tiers[1].variables["db_host"] == "{{ db.ip }}"


@pytest.mark.parametrize("description", [
    "", "one line", "two\nlines", "ends with a newline\n", " leading space", "tab\there", "colon: and # hash",
    "'quotes' and \"quotes\"", "unicode: é ü 漢字 ✓", "yes", "null", "2024-01-01", "- a list?", "{{ braces }}",
])
def test_dump_then_load_gives_back_the_same_template(description: str) -> None:
    spec = parse({"tiers": [
        {"name": "db", "target": "profile:small", "name_pattern": "{env}-db"},
        {"name": "web", "target": "small", "count": 3, "anti_affinity": True, "variables": {
            "db_host": "{{ db.ip }}", "url": "postgresql://{{ db.ip }}:5432/{{ env.name }}",
            "quoted": "'{{ db.hostname }}' \"x\"", "list": "{{ db | map(attribute='ip') | join(', ') }}",
            "plain": "no expression at all", "empty": "", "yes": "yes", "number": "5432"}},
    ]})
    text = files.dump("db-web", description, spec)
    name, loaded_description, data = files.load(text)
    assert (name, loaded_description, parse(data)) == ("db-web", description, spec)
    assert text.index("name: db\n") < text.index("name: web\n")  # tiers in order, keys as a person reads them
    assert text.startswith("name: db-web\ndescription:")


def test_a_description_of_several_lines_is_written_as_a_block() -> None:
    text = files.dump("x", "first\nsecond", parse({"tiers": [{"name": "db", "target": "small"}]}))
    assert "description: |-\n  first\n  second\n" in text


@pytest.mark.parametrize(("text", "field", "words"), [
    ("tiers: [", "body", "line 1"),
    ("name: a\ndescription: b\nname: c\n", "body", "line 3: the key 'name' is given twice"),
    ("base: &b {name: db, target: small}\ntiers: [*b]\n", "body", "line 2: aliases"),
    ("just text", "body", "a mapping"),
    ("name: x\nowner: bob\n", "owner", "unknown keys in the template file: owner"),
    ("name: [x]\n", "name", "name must be text"),
    ("description: 2024-01-01\n", "description", "description must be text"),
    ("[" * 10000, "body", "nested too deeply"),
])
def test_what_is_not_a_template_file_is_refused_saying_where(text: str, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        files.load(text)
    assert caught.value.field == field and words in caught.value.message, caught.value.message


def test_the_size_is_bounded_before_parsing_and_the_text_must_be_utf8() -> None:
    with pytest.raises(ValidationError, match=f"at most {files.MAX_FILE_BYTES} bytes"):
        files.load("description: " + "x" * files.MAX_FILE_BYTES)
    with pytest.raises(ValidationError, match="not UTF-8"):
        files.load(b"name: caf\xe9\n")
    name, description, data = files.load(b"tiers:\n- name: db\n  target: small\n")
    assert (name, description, data) == (None, "", {"tiers": [{"name": "db", "target": "small"}]})
