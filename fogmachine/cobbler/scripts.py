"""Installing Fogmachine's kickstarts and snippets (``ks_scripts/``) into Cobbler over its API.

Copying files into ``/var/lib/cobbler/templates`` by hand needs a shell on the
Cobbler server and goes stale silently; ``write_autoinstall_template`` and
``write_autoinstall_snippet`` put them where Cobbler renders them from, with
Cobbler's own checks, from wherever Fogmachine runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fogmachine.cobbler.client import CobblerClient

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "ks_scripts"


@dataclass(frozen=True)
class Script:
    kind: str  # "template" (a whole kickstart) or "snippet"
    name: str
    text: str


def find_scripts(directory: Path = DEFAULT_DIR) -> list[Script]:
    """``kickstarts/*`` become templates and ``snippets/*`` snippets, under their file names."""
    scripts = []
    for sub, kind in (("kickstarts", "template"), ("snippets", "snippet")):
        folder = directory / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                scripts.append(Script(kind, path.name, path.read_text(encoding="utf-8")))
    return scripts


async def install(client: CobblerClient, scripts: list[Script]) -> None:
    for script in scripts:
        if script.kind == "template":
            await client.write_autoinstall_template(script.name, script.text)
        else:
            await client.write_autoinstall_snippet(script.name, script.text)
