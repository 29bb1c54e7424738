"""What the environment pages say, as pure functions of an environment's step, tier and tier names."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fogmachine.services import envview

NAMES = ["db", "web", "app"]


@pytest.mark.parametrize(("step", "tier", "names", "reason", "keep", "sentence"), [
    ("provisioning", -1, NAMES, "", False, "Provisioning tier 1 of 3 (db)"),  # the engine has not started tier 0
    ("provisioning", 0, NAMES, "", False, "Provisioning tier 1 of 3 (db)"),
    ("provisioning", 1, NAMES, "", False, "Provisioning tier 2 of 3 (web)"),
    ("provisioning", 2, NAMES, "", False, "Provisioning tier 3 of 3 (app)"),
    ("provisioning", 7, NAMES, "", False, "Provisioning tier 3 of 3 (app)"),  # never past the last
    ("provisioning", 1, [], "", False, "Provisioning tier 2 of 2 (2)"),  # a spec that no longer parses
    ("ready", 2, NAMES, "", False, "Ready: all 3 tiers are ready"),
    ("ready", 0, ["db"], "", False, "Ready: its tier is ready"),
    ("failed", 1, NAMES, "guest lab1-web1 (tier web) failed at booting: no", False,
     "Failed: the guests it made are deleted"),
    ("failed", 1, NAMES, "guest lab1-web1 failed", True, "Failed: its guests are kept for inspection"),
    ("retired", 2, NAMES, "deleted by alice", False, "Retired: deleted by alice"),
    ("retired", 2, NAMES, "", False, "Retired"),
])
def test_the_sentence(step, tier, names, reason, keep, sentence):
    assert envview.status_sentence(step, tier, names, reason, keep_failed=keep) == sentence


@pytest.mark.parametrize(("step", "tier", "names", "text"), [
    ("provisioning", -1, NAMES, "tier 1 of 3: db"),
    ("provisioning", 1, NAMES, "tier 2 of 3: web"),
    ("ready", 2, NAMES, "3 of 3 tiers ready"),
    ("failed", 1, NAMES, "failed in tier 2 of 3: web"),
    ("retired", 2, NAMES, "3 tiers"),
    ("retired", 0, ["db"], "1 tier"),
])
def test_the_progress_the_list_shows(step, tier, names, text):
    assert envview.progress(step, tier, names) == text


def test_the_reason_stands_alone_when_failed_and_only_then_if_the_sentence_says_it():
    assert envview.reason_line("failed", "guest x failed", "Failed: the guests it made are deleted") == "guest x failed"
    assert envview.reason_line("retired", "deleted by alice", "Retired: deleted by alice") == ""
    assert envview.reason_line("provisioning", "", "Provisioning tier 1 of 1 (db)") == ""
    assert envview.reason_line("ready", "a note", "Ready: its tier is ready") == "a note"


def test_tier_names_from_an_environments_copy_of_its_template():
    spec = {"tiers": [{"name": "db", "target": "small"}, {"name": "web", "target": "small", "count": 2}]}
    assert envview.tier_names(json.dumps(spec)) == ["db", "web"]
    assert envview.tier_names("not json") == []
    assert envview.tier_names(json.dumps({"tiers": [{"name": "Bad Name", "target": "x"}]})) == []
    assert envview.tier_names("") == []


def test_the_page_keeps_asking_while_the_environment_may_move_with_no_guest_changing():
    """``following``: on its way, or every guest retired and the environment not yet (the engine retires it in
    a commit of its own, which no guest message announces)."""
    def env(step):
        return SimpleNamespace(step=step)

    def guests(*steps):
        return [SimpleNamespace(step=s) for s in steps]

    assert envview.following(env("provisioning"), guests("ready", "waiting"))
    assert not envview.following(env("ready"), guests("ready", "ready"))
    assert envview.following(env("ready"), guests("retired", "retired"))
    assert envview.following(env("failed"), guests("retired"))
    assert not envview.following(env("failed"), guests("failed", "retired"))
    assert not envview.following(env("retired"), guests("retired"))
    assert not envview.following(env("ready"), [])
