"""The loopback Cobbler 3.3 server for the tests (tests/infra/cobbler_server.sh).

Tests that need it fail with the reason when it does not answer (skip only under
FM_ALLOW_MISSING; tests/support/realparts.py); they get it through the ``cobbler_server`` fixture. They use
objects of their own (``fmtest-*``), seeded once per session, so they never
disturb what other tests or the infra smoke check put into Cobbler.
"""

from __future__ import annotations

import importlib.util
import os
import xmlrpc.client
from functools import cache
from pathlib import Path
from types import ModuleType

from tests.support import realparts

ROOT = Path(__file__).resolve().parent.parent.parent
XMLRPC_URL = "http://127.0.0.1:25151/"
SVC_URL = "http://127.0.0.1:25152/cblr/svc/op"
USER = "cobbler"
PASSWORD = "cobbler"
STATE = Path(os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test"))
KERNEL = STATE / "tiny" / "vmlinuz"
INITRD = STATE / "tiny" / "initrd.img"
PROFILE = "fmtest-tiny"  # has fogmachine in autoinstall_meta, user-mode networking
HIDDEN_PROFILE = "fmtest-hidden"  # no fogmachine key: not in the catalog
XEN_PROFILE = "fmtest-xen"  # a xen profile: Fogmachine's domain builder refuses it (a define-step failure)
IMAGE = "fmtest-image"
TEMPLATE = "fogmachine-minimal.ks"
# Environments: the sample kickstart of ks_scripts (fogmachine_user, fogmachine_env, then fogmachine_update), whose
# %post the tiny guest runs as it runs the minimal one's.
ENV_PROFILE = "fmtest-env"
ENV_TEMPLATE = "fogmachine-env.ks"
# The same, with a gate before the phone-home: a tier variable ``gate`` (a URL) makes the guest wait until that URL
# answers, so a fault test can act while the tier is installing for certain, then let it phone home.
GATED_PROFILE = "fmtest-env-gated"
GATED_TEMPLATE = "fmtest-env-gated.ks"
GATED_KICKSTART = """%post
$SNIPPET('fogmachine_env')
#raw
if [ -r /etc/fogmachine/env ]; then (
    . /etc/fogmachine/env
    [ -n "${gate:-}" ] || exit 0
    echo "fmtest: waiting at the gate $gate"
    until timeout 10 wget -q -O /dev/null "$gate"; do sleep 1; done
    echo "fmtest: the gate is open"
) fi
#end raw
$SNIPPET('fogmachine_update')
%end
"""
# A profile whose guests are defined but cannot start (their libvirt network does not exist): a booting failure.
NO_NETWORK_PROFILE = "fmtest-nonet"


def unreachable() -> str | None:
    """Why Cobbler cannot be used, or None when it can."""
    return realparts.check("cobbler", _probe)


def _probe() -> str | None:
    try:
        proxy = xmlrpc.client.ServerProxy(XMLRPC_URL)
        import socket

        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(3)
        try:
            proxy.version()
        finally:
            socket.setdefaulttimeout(old)
    except Exception as exc:  # any failure means: skip with this reason
        return (f"Cobbler at {XMLRPC_URL} not answering ({type(exc).__name__}: {exc}); "
                "start it with: bash tests/infra/cobbler_server.sh start")
    if not KERNEL.exists() or not INITRD.exists():
        return f"tiny guest kernel/initrd missing in {STATE / 'tiny'}; build with: bash tests/infra/tiny_guest.sh build"
    return None


def require() -> None:
    """Record the use (the test must carry the marker); fail, or skip under FM_ALLOW_MISSING, if down."""
    realparts.use("cobbler")
    reason = unreachable()
    if reason:
        realparts.missing("cobbler", reason)


def _seed_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cobbler_seed", ROOT / "tests" / "infra" / "cobbler_seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def proxy() -> tuple[xmlrpc.client.ServerProxy, str]:
    server = xmlrpc.client.ServerProxy(XMLRPC_URL, allow_none=True)
    return server, server.login(USER, PASSWORD)


@cache
def seed() -> None:
    """Install ks_scripts through Fogmachine's own code path, then seed the fmtest objects (once)."""
    from fogmachine.cobbler.scripts import find_scripts

    server, token = proxy()
    for script in find_scripts():
        writer = server.write_autoinstall_template if script.kind == "template" else server.write_autoinstall_snippet
        writer(script.name, script.text, token)
    template = (ROOT / "ks_scripts" / "kickstarts" / TEMPLATE).read_text()
    seed_mod = _seed_module()
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=PROFILE,
                  autoinstall_name=TEMPLATE, template=template, kernel_options="console=ttyS0 panic=-1",
                  autoinstall_meta={"fogmachine": 1, "fogmachine_network": "user"}, virt_ram=256, virt_cpus=1,
                  virt_type="qemu", virt_file_size=0, image=IMAGE)
    # Same distro: repeat its kernel options, seed() sets them again.
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=HIDDEN_PROFILE,
                  autoinstall_name=TEMPLATE, template=template, kernel_options="console=ttyS0 panic=-1",
                  autoinstall_meta={"other": 1}, image=None)
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=XEN_PROFILE,
                  autoinstall_name=TEMPLATE, template=template, kernel_options="console=ttyS0 panic=-1",
                  autoinstall_meta={"fogmachine": 1}, virt_type="xenpv", image=None)
    tiny = {"kernel_options": "console=ttyS0 panic=-1", "virt_ram": 256, "virt_cpus": 1, "virt_type": "qemu",
            "virt_file_size": 0, "image": None}
    env_template = (ROOT / "ks_scripts" / "kickstarts" / ENV_TEMPLATE).read_text()
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=ENV_PROFILE,
                  autoinstall_name=ENV_TEMPLATE, template=env_template,
                  autoinstall_meta={"fogmachine": 1, "fogmachine_network": "user"}, **tiny)
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=GATED_PROFILE,
                  autoinstall_name=GATED_TEMPLATE, template=GATED_KICKSTART,
                  autoinstall_meta={"fogmachine": 1, "fogmachine_network": "user"}, **tiny)
    seed_mod.seed(XMLRPC_URL, USER, PASSWORD, str(KERNEL), str(INITRD), distro=PROFILE, profile=NO_NETWORK_PROFILE,
                  autoinstall_name=ENV_TEMPLATE, template=env_template,
                  autoinstall_meta={"fogmachine": 1, "fogmachine_network": "network:fmtest-missing"}, **tiny)


def system_names() -> list[str]:
    server, _ = proxy()
    return list(server.get_item_names("system"))


def remove_systems(prefix: str) -> None:
    server, token = proxy()
    for name in server.get_item_names("system"):
        if name.startswith(prefix):
            server.remove_system(name, token)
