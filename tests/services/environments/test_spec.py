"""The template's structural rules: each refusal names its field."""

from __future__ import annotations

import pytest

from fogmachine.errors import ValidationError
from fogmachine.services.environments.spec import MAX_COUNT, MAX_TIERS, parse


def _two() -> dict:
    return {"tiers": [{"name": "db", "target": "tiny"},
                      {"name": "web", "target": "tiny", "count": 2, "anti_affinity": True,
                       "variables": {"db_host": "{{ db.ip }}"}}]}


def test_a_good_template_round_trips():
    spec = parse(_two())
    assert [t.name for t in spec.tiers] == ["db", "web"]
    assert spec.guest_count == 3
    assert spec.tiers[1].guest_name("lab", 2) == "lab-web2"
    assert parse(spec.to_dict()) == spec
    assert spec.tier_index("web") == 1 and spec.tier_index("nope") is None


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.pop("tiers"), "tiers"),
    (lambda d: d.update(tiers=[]), "tiers"),
    (lambda d: d.update(tiers=[{"name": f"t{i}", "target": "tiny"} for i in range(MAX_TIERS + 1)]), "tiers"),
    (lambda d: d["tiers"].append("db"), "tiers[2]"),
    (lambda d: d["tiers"][0].update(name="DB"), "tiers[0].name"),
    (lambda d: d["tiers"][0].update(name="db\n"), "tiers[0].name"),
    (lambda d: d["tiers"][0].update(name="env"), "tiers[0].name"),
    (lambda d: d["tiers"][1].update(name="db"), "tiers[1].name"),
    (lambda d: d["tiers"][0].update(target=""), "tiers[0].target"),
    (lambda d: d["tiers"][0].update(count=0), "tiers[0].count"),
    (lambda d: d["tiers"][0].update(count=MAX_COUNT + 1), "tiers[0].count"),
    (lambda d: d["tiers"][0].update(count=True), "tiers[0].count"),
    (lambda d: d["tiers"][0].update(count="2"), "tiers[0].count"),
    (lambda d: d["tiers"][1].update(name_pattern="{env}-web"), "tiers[1].name_pattern"),
    (lambda d: d["tiers"][1].update(name_pattern="{env}_{n}"), "tiers[1].name_pattern"),
    (lambda d: d["tiers"][1].update(name_pattern="{user}{n}"), "tiers[1].name_pattern"),
    (lambda d: d["tiers"][1].update(anti_affinity="yes"), "tiers[1].anti_affinity"),
    (lambda d: d["tiers"][1].update(variables=["x"]), "tiers[1].variables"),
    (lambda d: d["tiers"][1]["variables"].update({"Bad-Name": "x"}), "tiers[1].variables"),
    (lambda d: d["tiers"][1]["variables"].update(db_port=5432), "tiers[1].variables.db_port"),
    (lambda d: d["tiers"][1]["variables"].update(big="x" * 2001), "tiers[1].variables.big"),
    (lambda d: d["tiers"][0].update(colour="blue"), "tiers[0].colour"),
])
def test_each_refusal_names_its_field(change, field):
    data = _two()
    change(data)
    with pytest.raises(ValidationError) as caught:
        parse(data)
    assert caught.value.field == field
