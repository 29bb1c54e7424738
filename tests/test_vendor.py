"""static/vendor/ (and tests/browser/vendor/) is what static/vendor/update.py makes from manifest.json, and
nothing else.

The script itself needs npm and the registry; this checks its committed output: every package's
VERSION file names the pinned version and integrity, every file the manifest lists is there, and no
file is there that the manifest does not list (a hand-copied extra would be served unpinned). A
test-only package (axe-core) lives under tests/browser/vendor/, never under static/, which is served.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
VENDOR = STATIC / "vendor"
TEST_VENDOR = ROOT / "tests" / "browser" / "vendor"
OWN_FILES = {"manifest.json", "update.py"}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_update", VENDOR / "update.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_package_is_pinned_and_copied_as_listed():
    update = _script()
    manifest = update.load_manifest()
    assert {"swagger-ui", "xterm", "xterm-addon-fit", "novnc", "axe-core"} <= manifest.keys()
    for name, entry in manifest.items():
        assert entry["integrity"].startswith("sha512-"), name
        assert all(c.isdigit() or c == "." for c in entry["version"]), f"{name}: pin an exact version"
        target = update.target_of(name, entry)
        assert target == (TEST_VENDOR if entry.get("test_only") else VENDOR) / name, name
        assert (target / "VERSION").read_text() == update.version_text(entry), name
        present = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()} - {"VERSION"}
        listed = {item for item in entry["files"] if not item.endswith("/")}
        assert listed <= present, f"{name}: missing {sorted(listed - present)}"
        directories = [item for item in entry["files"] if item.endswith("/")]
        for directory in directories:
            assert any(p.startswith(directory) for p in present), f"{name}: {directory} is empty"
        extra = {p for p in present - listed if not any(p.startswith(d) for d in directories)}
        assert not extra, f"{name}: files the manifest does not list: {sorted(extra)}"
        assert any("licen" in p.lower() for p in present), f"{name}: no licence copied"
    served = {name for name, entry in manifest.items() if not entry.get("test_only")}
    on_disk = {p.name for p in VENDOR.iterdir()} - OWN_FILES
    assert on_disk == served, f"vendored without a manifest entry (or test-only): {sorted(on_disk ^ served)}"
    tests_only = set(manifest) - served
    in_tests = {p.name for p in TEST_VENDOR.iterdir()}
    assert in_tests == tests_only, f"tests/browser/vendor/ differs from the test-only: {sorted(in_tests ^ tests_only)}"


def test_axe_core_is_for_the_tests_and_never_served():
    """The browser tests inject axe.min.js themselves; nothing under static/ (served as /static/) holds it."""
    update = _script()
    entry = update.load_manifest()["axe-core"]
    assert entry["test_only"] is True and entry["package"] == "axe-core"
    target = update.target_of("axe-core", entry)
    assert (target / "axe.min.js").is_file() and (target / "LICENSE").is_file()
    assert not target.is_relative_to(STATIC)
    assert "never served" in (target / "VERSION").read_text()
    assert not [p for p in STATIC.rglob("*") if "axe" in p.name.lower()]
    from tests.browser.test_accessibility import AXE  # what the accessibility test injects

    assert target / "axe.min.js" == AXE


def test_novnc_modules_import_only_what_was_copied():
    """noVNC is loaded as ES modules: every relative import of a copied module must be a copied file."""
    import re

    base = VENDOR / "novnc"
    pattern = re.compile(r"""^\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]""", re.M)
    modules = list((base / "core").rglob("*.js"))
    assert (base / "core" / "rfb.js") in modules
    for module in modules:
        for target in pattern.findall(module.read_text()):
            assert (module.parent / target).resolve().is_file(), f"{module.relative_to(base)} imports {target}"
