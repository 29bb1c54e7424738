"""The import rules of docs/ARCHITECTURE.md, checked on the source without running it.

Every module under ``fogmachine/`` is parsed with ``ast`` (nothing is imported,
so no module's import-time code runs), each of its imports of ``fogmachine.*``
is collected (absolute and relative, at the top or inside a function, under
``if TYPE_CHECKING:`` too: a type is a dependency as well), and each module is
mapped to its layer. An import from one layer into another that the layer may
not use is a violation. The libraries whose errors an adapter translates
(libvirt, Cobbler's XML-RPC) are imported by that adapter alone.

The code breaks some of these rules today (issue 12). Those imports are named,
pair by pair, in ``KNOWN_DEPARTURES``: a new violation fails, and so does an
entry that no longer happens, so the list can only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "fogmachine"
ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / PACKAGE

# Which layer a module belongs to: the entry that is the module itself or the longest package containing it.
# "fogmachine" alone is the package's __init__ (``__version__``): it does not cover the modules under it, so
# a new top-level module has no layer until it is given one here (test_every_module_has_a_layer).
LAYERS: dict[str, str] = {
    "fogmachine": "base",
    "fogmachine.errors": "base",
    "fogmachine.logs": "base",
    "fogmachine.states": "base",
    "fogmachine.timestamps": "base",
    "fogmachine.config": "config",
    "fogmachine.db": "db",
    "fogmachine.virt": "virt",
    "fogmachine.cobbler": "cobbler",
    "fogmachine.notify": "notify",
    "fogmachine.catalog": "catalog",
    "fogmachine.context": "services",
    "fogmachine.services": "services",
    "fogmachine.placement": "services",
    "fogmachine.virthosts": "services",
    "fogmachine.tasks": "services",
    "fogmachine.web": "web",
    "fogmachine.app": "composition",
    "fogmachine.composition": "composition",
    "fogmachine.memtrim": "composition",
    "fogmachine.cli": "composition",
    "fogmachine.daemon": "composition",
}

_ADAPTER = frozenset({"base", "config"})
_BELOW_SERVICES = frozenset({"base", "config", "db", "virt", "cobbler", "notify", "catalog"})
# What each layer may import (its own layer always). Lower layers know nothing of the ones above them:
# the adapters (virt, cobbler, notify, catalog) know no database, no services (the context among them) and
# no web; services know no web; web reaches hosts and Cobbler only through services and the context; only
# the composition (app, composition, cli, daemon) imports web, and nothing imports the composition.
ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "config": frozenset({"base"}),
    "db": frozenset({"base"}),
    "virt": _ADAPTER,
    "cobbler": _ADAPTER,
    "notify": _ADAPTER,
    "catalog": _ADAPTER | {"cobbler"},  # a Cobbler catalog source speaks through the Cobbler adapter
    "services": _BELOW_SERVICES,
    "web": frozenset({"base", "config", "db", "services"}),
    "composition": frozenset(LAYERS.values()),
}

# Imports that break the rules today, each to be removed by issue 12 (docs/ARCHITECTURE.md, "Known departures").
# (importer, imported): exact module names as the import statement names them.
KNOWN_DEPARTURES: dict[tuple[str, str], str] = {
}

# Libraries whose errors one adapter turns into fogmachine.errors: imported nowhere else, so no caller ever
# sees a libvirt.libvirtError or an xmlrpc.client.Fault.
ADAPTER_LIBRARIES: dict[str, str] = {"libvirt": "virt", "libvirtaio": "virt", "xmlrpc": "cobbler"}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: str
    line: int


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    importer_layer: str
    imported_layer: str
    where: str  # path:line of the first such import

    def __str__(self) -> str:
        return (f"{self.where}: {self.importer} ({self.importer_layer}) imports {self.imported} "
                f"({self.imported_layer}); {self.importer_layer} may import only "
                f"{', '.join(sorted(ALLOWED[self.importer_layer] | {self.importer_layer}))}")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path, package_dir.parent): path for path in sorted(package_dir.rglob("*.py"))}


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _relative_base(module: str, is_package: bool, level: int, name: str | None) -> str:
    """What ``from <level dots><name> import ...`` in ``module`` refers to."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    parts = parts[:len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def imports_in(source: str, module: str, *, is_package: bool = False, path: str = "",
               known: Iterable[str] = ()) -> Iterator[Import]:
    """Every import of a ``fogmachine`` module in ``source`` (the text of ``module``), wherever it stands.

    ``from P import n`` names the module ``P.n`` when that is a module in ``known``, else ``P`` itself.
    """
    modules = set(known)
    where = path or module
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    yield Import(module, alias.name, where, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _relative_base(module, is_package, node.level, node.module) if node.level else node.module or ""
            if not _ours(base):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(module, candidate if candidate in modules else base, where, node.lineno)


def libraries_in(source: str, module: str, *, path: str = "") -> Iterator[Import]:
    """Every absolute import of a library in ADAPTER_LIBRARIES (``imported`` is its top-level name)."""
    where = path or module
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in ADAPTER_LIBRARIES:
                yield Import(module, top, where, node.lineno)


def layer_of(module: str) -> str | None:
    if module == PACKAGE:
        return LAYERS[PACKAGE]
    best = ""
    for prefix in LAYERS:
        if prefix != PACKAGE and (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best] if best else None


def violations(imports: Iterable[Import]) -> dict[tuple[str, str], Violation]:
    """The imports that cross a line their importer's layer may not cross, one per (importer, imported)."""
    found: dict[tuple[str, str], Violation] = {}
    for imp in imports:
        source, target = layer_of(imp.importer), layer_of(imp.imported)
        if source is None or target is None or target == source or target in ALLOWED[source]:
            continue
        found.setdefault((imp.importer, imp.imported),
                         Violation(imp.importer, imp.imported, source, target, f"{imp.path}:{imp.line}"))
    return found


def misplaced_libraries(imports: Iterable[Import]) -> list[str]:
    return [f"{imp.path}:{imp.line}: {imp.importer} imports {imp.imported}, which only "
            f"fogmachine.{ADAPTER_LIBRARIES[imp.imported]} may import (it translates its errors)"
            for imp in imports if layer_of(imp.importer) != ADAPTER_LIBRARIES[imp.imported]]


def scan(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    modules = package_modules(package_dir)
    found: list[Import] = []
    for name, path in modules.items():
        found.extend(imports_in(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py",
                                path=str(path.relative_to(package_dir.parent)), known=modules))
    return found


# -- the rules, on the real tree ---------------------------------------------------------------------------

def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in package_modules() if layer_of(name) is None]
    assert not unplaced, f"modules with no layer (add them to LAYERS and docs/ARCHITECTURE.md): {unplaced}"


def test_every_layer_has_modules() -> None:
    """The table follows the tree: a layer whose modules all moved away is a stale rule."""
    used = {layer_of(name) for name in package_modules()}
    assert set(ALLOWED) <= used, f"layers with no module: {sorted(set(ALLOWED) - used)}"
    assert set(LAYERS.values()) == set(ALLOWED)


def test_no_import_crosses_a_layer_boundary() -> None:
    new = [str(v) for pair, v in sorted(violations(scan()).items()) if pair not in KNOWN_DEPARTURES]
    assert not new, "imports across a forbidden direction (see docs/ARCHITECTURE.md):\n" + "\n".join(new)


def test_adapter_libraries_stay_in_their_adapter() -> None:
    found: list[Import] = []
    for name, path in package_modules().items():
        found.extend(libraries_in(path.read_text(encoding="utf-8"), name, path=str(path.relative_to(ROOT))))
    assert {imp.imported for imp in found} >= {"libvirt", "xmlrpc"}  # the scan does see them
    misplaced = misplaced_libraries(found)
    assert not misplaced, "\n".join(misplaced)


def test_known_departures_still_happen() -> None:
    """A departure that was fixed leaves the list, so it cannot come back unnoticed."""
    found = violations(scan())
    gone = [f"{importer} -> {imported}" for importer, imported in KNOWN_DEPARTURES
            if (importer, imported) not in found]
    assert not gone, "fixed; remove from KNOWN_DEPARTURES (and the doc's Known departures): " + ", ".join(gone)


# -- the checker itself: it must see what it is meant to see ------------------------------------------------

BAD_ADAPTER = '''
from typing import TYPE_CHECKING

import fogmachine.web.live
from fogmachine.errors import NotFound
from fogmachine.db import models

if TYPE_CHECKING:
    from fogmachine.context import Context


def later() -> None:
    from ..services import hoststate
    from . import callthreads
'''


def test_checker_reports_imports_across_the_line() -> None:
    known = set(package_modules())
    found = list(imports_in(BAD_ADAPTER, "fogmachine.virt.sample", known=known))
    assert {imp.imported for imp in found} == {
        "fogmachine.web.live", "fogmachine.errors", "fogmachine.db.models", "fogmachine.context",
        "fogmachine.services.hoststate", "fogmachine.virt.callthreads"}
    reported = violations(found)
    assert set(reported) == {
        ("fogmachine.virt.sample", "fogmachine.web.live"),  # import a.b.c
        ("fogmachine.virt.sample", "fogmachine.db.models"),  # from package import module
        ("fogmachine.virt.sample", "fogmachine.context"),  # under TYPE_CHECKING
        ("fogmachine.virt.sample", "fogmachine.services.hoststate"),  # relative, inside a function
    }
    assert reported["fogmachine.virt.sample", "fogmachine.db.models"].where == "fogmachine.virt.sample:6"
    assert "virt may import only base, config, virt" in str(reported["fogmachine.virt.sample", "fogmachine.context"])


def test_checker_resolves_relative_imports_in_a_package() -> None:
    source = "from . import live\nfrom .api import base\nfrom .. import errors\n"
    found = list(imports_in(source, "fogmachine.web", is_package=True, known=set(package_modules())))
    assert [imp.imported for imp in found] == ["fogmachine.web.live", "fogmachine.web.api.base",
                                               "fogmachine.errors"]


def test_checker_allows_what_the_rules_allow() -> None:
    source = "from fogmachine.db.models import Guest\nfrom fogmachine.virt import HostConnection\n"
    assert not violations(imports_in(source, "fogmachine.services.sample", known=set(package_modules())))
    assert violations(imports_in("from fogmachine.web import live\n", "fogmachine.services.sample",
                                 known=set(package_modules())))
    assert violations(imports_in("from fogmachine import app\n", "fogmachine.web.sample",
                                 known=set(package_modules())))


def test_checker_reports_adapter_libraries_elsewhere() -> None:
    source = "import libvirt\nimport os.path\n\n\ndef f() -> None:\n    from xmlrpc.client import Fault\n"
    found = list(libraries_in(source, "fogmachine.services.sample"))
    assert [(imp.imported, imp.line) for imp in found] == [("libvirt", 1), ("xmlrpc", 6)]
    assert len(misplaced_libraries(found)) == 2
    assert not misplaced_libraries(libraries_in("import libvirt\n", "fogmachine.virt.sample"))


def wait_for_calls(source: str) -> list[int]:
    """Lines that call ``asyncio.wait_for`` (or a bare ``wait_for`` imported from asyncio)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "wait_for":
                lines.append(node.lineno)
    return lines


def test_no_asyncio_wait_for_in_the_package() -> None:
    """On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives as what it waits for
    completes (CPython gh-86296): a live feed's stop() then waited forever (tests/web/live/test_feed.py).
    ``async with asyncio.timeout(...)`` is the one way to bound a wait."""
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted(PACKAGE_DIR.rglob("*.py"))
             for line in wait_for_calls(path.read_text())]
    assert not found, f"use asyncio.timeout instead of wait_for: {found}"


def test_wait_for_finder_finds_both_spellings() -> None:
    assert wait_for_calls("import asyncio\nasyncio.wait_for(x, 1)\nfrom asyncio import wait_for\nwait_for(y, 2)\n") \
        == [2, 4]
