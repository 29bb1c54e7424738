"""The kernel command line of a guest booted directly from a kernel and initrd.

A local catalog entry fills its own placeholders (``{name}``, ``{mac}``,
``{server}``, ``{phonehome_url}``) and gets an environment's variables as
``fogmachine_var_NAME=VALUE`` arguments (``/proc/cmdline`` in the guest); a Cobbler entry gets the argument its
distro's installer reads the autoinstall URL from, as koan does it. The
phone-home token appears here in clear: the command line is shown to the guest
alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from fogmachine.catalog import CatalogEntry
from fogmachine.config import Config
from fogmachine.db.models import TargetKind

VARIABLE_ARG = "fogmachine_var_"
# The kernel argument that carries the autoinstall URL, per Cobbler distro breed (as koan does it).
AUTOINSTALL_ARG = {"redhat": "ks", "suse": "autoyast", "debian": "url", "ubuntu": "url"}


def autoinstall_base(config: Config) -> str:
    """Cobbler's svc URL as guests see it: ``cobbler_autoinstall_url``, or derived from ``cobbler_url``."""
    if config.cobbler_autoinstall_url:
        return config.cobbler_autoinstall_url.rstrip("/")
    parts = urlsplit(config.cobbler_url)
    return f"{parts.scheme}://{parts.hostname}/cblr/svc/op"


def autoinstall_url(config: Config, system: str) -> str:
    return f"{autoinstall_base(config)}/autoinstall/system/{system}"


def phonehome_url(config: Config, mac: str, token: str, name: str) -> str:
    return f"{config.server_url}/guest/{mac}/set?" + urlencode({"token": token, "hostname": name})


def variable_args(variables: Mapping[str, str]) -> str:
    """An environment's variables as kernel arguments, ``fogmachine_var_NAME=VALUE`` (double-quoted when the
    value has a space: the kernel's own quoting). The values were checked when they were rendered
    (``environments.variables``): printable, one line, no double quote."""
    return " ".join(f'{VARIABLE_ARG}{name}="{value}"' if (" " in value or not value)
                    else f"{VARIABLE_ARG}{name}={value}" for name, value in sorted(variables.items()))


def kernel_cmdline(config: Config, entry: CatalogEntry, name: str, mac: str, token: str,
                   variables: Mapping[str, str] | None = None) -> str:
    """The kernel command line: the profile's own options plus, with Cobbler, where the autoinstall file is;
    for a local entry, an environment's variables too (a Cobbler system carries them in its metadata)."""
    if entry.kind == TargetKind.LOCAL:
        line = entry.cmdline.format_map({"name": name, "mac": mac, "server": config.server_url,
                                         "phonehome_url": phonehome_url(config, mac, token, name)})
        return f"{line} {variable_args(variables)}".strip() if variables else line
    url = autoinstall_url(config, name)
    breed = entry.breed.lower()
    if breed in ("debian", "ubuntu"):
        extra = f"auto-install/enable=true priority=critical url={url} hostname={name}"
    else:
        extra = f"{AUTOINSTALL_ARG.get(breed, 'autoinstall')}={url}"
    return f"{entry.cmdline} {extra}".strip()

