"""The checkout tests' server: test-driver hosts and the local catalog, on each of the three databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogmachine.config import Config
from fogmachine.services.checkout import CheckoutRequest
from tests.support import provisioning as pv

UNIT = {"virt_type": "kvm", "ram_mb": 1024, "vcpus": 1, "boot": "network", "network": "user"}
PROFILES = {
    "unit": UNIT,
    "big": {**UNIT, "ram_mb": 6144, "vcpus": 2},
    "vm-xen": {**UNIT, "virt_type": "xen", "disk_gb": 5},
    "announce": {**UNIT, "boot": "kernel", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img",
                 "cmdline": "console=ttyS0 fm.hostname={name} fm.phonehome={phonehome_url}", "phonehome": "yes"},
}
POOL = """<pool type='dir'><name>default</name><uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>
<capacity unit='GiB'>100</capacity><allocation>0</allocation><available unit='GiB'>100</available>
<source/><target><path>/var/lib/libvirt/images</path></target></pool>"""


def pool_host(directory: Path, name: str, *, cpus: int = 4, memory_mb: int = 8192) -> str:
    """A test-driver host with a 'default' storage pool (volumes are created in it)."""
    import xml.etree.ElementTree as ET

    from tests.support.testhosts import host_xml

    node = ET.fromstring(host_xml(cpus=cpus, memory_mb=memory_mb))
    node.append(ET.fromstring(POOL))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.xml"
    path.write_text(ET.tostring(node, encoding="unicode"))
    return f"test://{path}"


@pytest.fixture
async def server(make_config: Callable[..., Config], start_server: Callable[..., Any], tmp_path: Path,
                 database_url: str):
    """A server on each of the three databases: checkout is the write every user makes."""

    async def start(hosts: dict[str, Any] | None = None, **settings: str) -> Any:
        hosts = hosts if hosts is not None else {"h1": {"cpus": 4, "memory_mb": 8192}}
        return await pv.start_with_catalog(start_server, make_config, tmp_path / "catalog.conf", PROFILES, hosts,
                                           database_url, **settings)

    return start


def req(name: str, target: str = "unit", days: Any = 3, purpose: str = "testing") -> CheckoutRequest:
    return CheckoutRequest(name=name, target=target, days=days, purpose=purpose)
