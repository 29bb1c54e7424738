"""Host files for libvirt's test driver, written per test.

Each ``open()`` of ``test:///PATH.xml`` starts from the file's state, so a test
gets hosts of exactly the size it needs with no daemon.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
RUNSTATE = {"running": None, "paused": "3", "shutoff": "5"}


@dataclass
class TestDomain:
    name: str
    memory_mb: int = 512
    vcpus: int = 1
    state: str = "running"
    mac: str | None = None
    vnc_port: int | None = None
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


def host_xml(cpus: int = 8, memory_mb: int = 16384, domains: list[TestDomain] | None = None) -> str:
    ET.register_namespace("test", TEST_NS)
    node = ET.Element("node")
    cpu = ET.SubElement(node, "cpu")
    for tag, value in (("mhz", "2400"), ("model", "x86_64"), ("active", str(cpus)), ("nodes", "1"),
                       ("sockets", "1"), ("cores", str(cpus)), ("threads", "1")):
        ET.SubElement(cpu, tag).text = value
    ET.SubElement(node, "memory").text = str(memory_mb * 1024)
    for dom in domains or []:
        d = ET.SubElement(node, "domain", {"type": "test"})
        ET.SubElement(d, "name").text = dom.name
        ET.SubElement(d, "uuid").text = dom.uuid
        ET.SubElement(d, "memory", {"unit": "MiB"}).text = str(dom.memory_mb)
        ET.SubElement(d, "vcpu").text = str(dom.vcpus)
        os_ = ET.SubElement(d, "os")
        ET.SubElement(os_, "type").text = "hvm"
        devices = ET.SubElement(d, "devices")
        if dom.mac:
            iface = ET.SubElement(devices, "interface", {"type": "network"})
            ET.SubElement(iface, "mac", {"address": dom.mac})
            ET.SubElement(iface, "source", {"network": "default"})
        if dom.vnc_port:
            ET.SubElement(devices, "graphics", {"type": "vnc", "port": str(dom.vnc_port)})
        runstate = RUNSTATE[dom.state]
        if runstate is not None:
            ET.SubElement(d, f"{{{TEST_NS}}}runstate").text = runstate
    return ET.tostring(node, encoding="unicode")


def write_host(directory: Path, name: str, **kwargs: object) -> str:
    """Write ``name.xml`` into ``directory``; returns its ``test:///`` URI."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.xml"
    path.write_text(host_xml(**kwargs))  # type: ignore[arg-type]
    return f"test://{path.resolve()}"


def write_virthosts(path: Path, hosts: dict[str, str], virt_type: str = "test") -> Path:
    path.write_text("".join(f"{name}, {uri}, {virt_type}\n" for name, uri in hosts.items()))
    return path
