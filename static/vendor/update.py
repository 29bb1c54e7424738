"""Copy the pinned front-end packages from the npm registry into static/vendor/, with their licences.

    /work/main/.venv/bin/python static/vendor/update.py          # every package in manifest.json
    /work/main/.venv/bin/python static/vendor/update.py xterm    # one of them

Why a script and no CDN: the pages load nothing from another site at run time (the CSP says
``script-src 'self'``), so the files are served from here and committed. ``manifest.json`` pins each
package (exact version, and the sha512 integrity of its npm tarball, as ``npm view PKG@V dist.integrity``
prints it) and names the files to copy: a path ending in ``/`` is a directory, copied whole. For each
entry the script runs ``npm pack PKG@VERSION`` in a temporary directory, refuses a tarball whose sha512
differs from the manifest's, then replaces ``static/vendor/NAME/`` with exactly those files (paths
kept, so ES modules' relative imports still resolve) and a ``VERSION`` file saying where they came
from. Run it again and ``git diff`` shows nothing: ``tests/test_vendor.py`` checks that what is
committed is what the manifest says.

A package the pages never load but the tests do (axe-core, which the browser tests inject into each
page) is marked ``"test_only": true`` and goes to ``tests/browser/vendor/NAME/`` instead: outside
``static/``, so the server never serves it, and pinned, checked and licensed like the others.

To upgrade a package: change its version and integrity here, run the script, run the browser tests.
Needs ``npm`` and the registry; the server never does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent
MANIFEST = VENDOR / "manifest.json"
TEST_VENDOR = VENDOR.parent.parent / "tests" / "browser" / "vendor"  # test-only packages: never served


def load_manifest() -> dict[str, dict[str, Any]]:
    manifest: dict[str, dict[str, Any]] = json.loads(MANIFEST.read_text())
    return manifest


def target_of(name: str, entry: dict[str, Any]) -> Path:
    """Where a package's files go: ``static/vendor/NAME/``, served; a test-only one under the tests."""
    return (TEST_VENDOR if entry.get("test_only") else VENDOR) / name


def version_text(entry: dict[str, Any]) -> str:
    """What ``NAME/VERSION`` says: the package, its version, where it came from, its tarball's integrity."""
    spec = f"{entry['package']}@{entry['version']}"
    used = " Used by the tests only, never served." if entry.get("test_only") else ""
    return (f"{entry['package']} {entry['version']} from the npm registry (npm pack {spec}); "
            f"files copied unchanged.{used}\nintegrity {entry['integrity']}\n")


def integrity_of(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def expected_files(entry: dict[str, Any], root: Path) -> list[str]:
    """The package-relative paths the manifest's ``files`` name, under ``root`` (an unpacked package)."""
    found: list[str] = []
    for item in entry["files"]:
        if item.endswith("/"):
            base = root / item
            if not base.is_dir():
                raise SystemExit(f"{entry['package']}: no directory {item} in the package")
            found += sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())
        else:
            if not (root / item).is_file():
                raise SystemExit(f"{entry['package']}: no file {item} in the package")
            found.append(item)
    return found


def fetch(entry: dict[str, Any], work: Path) -> Path:
    """``npm pack`` the pinned version into ``work``, check its integrity, unpack it; the package's root."""
    spec = f"{entry['package']}@{entry['version']}"
    done = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(work)], cwd=work,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"npm pack {spec} failed: {done.stderr.strip()}")
    tarball = work / json.loads(done.stdout)[0]["filename"]
    got = integrity_of(tarball)
    if got != entry["integrity"]:
        raise SystemExit(f"{spec}: the tarball's integrity is {got}, the manifest pins {entry['integrity']}")
    unpacked = work / "unpacked"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked / "package"


def install(name: str, entry: dict[str, Any]) -> int:
    with tempfile.TemporaryDirectory(prefix="fm-vendor-") as tmp:
        root = fetch(entry, Path(tmp))
        files = expected_files(entry, root)
        target = target_of(name, entry)
        if target.exists():
            shutil.rmtree(target)
        for rel in files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, dest)
        (target / "VERSION").write_text(version_text(entry))
    print(f"{name}: {entry['package']} {entry['version']}, {len(files)} files in {target}")
    return len(files)


def main(argv: list[str]) -> int:
    manifest = load_manifest()
    names = argv or list(manifest)
    unknown = [n for n in names if n not in manifest]
    if unknown:
        print(f"not in {MANIFEST.name}: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in names:
        install(name, manifest[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
