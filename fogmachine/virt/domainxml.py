"""Domain XML: built from a ``DomainSpec`` and read back into a ``ParsedDomain``.

Always through ``xml.etree``, never string formatting: names, paths and kernel
command lines end up in attributes and text nodes that the library escapes.

Fogmachine marks the domains it creates with an element of its own namespace
in ``<metadata>`` (``<fogmachine:guest id="42" name="web1"/>``). libvirt keeps
such elements verbatim, so a resync can tell from the XML alone which guest
row a domain belongs to, and a domain without the mark is someone else's
(shown to admins as unmanaged, never touched).

``boot_from_disk`` edits a defined domain's XML instead of rebuilding it: after
an install, the domain libvirt holds may carry changes (an admin's extra disk,
libvirt's own defaults, a VNC password) that a rebuild from the spec would drop.
"""

from __future__ import annotations

import re
import secrets
import uuid as uuidmod
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from fogmachine.errors import ValidationError

FOGMACHINE_NS = "http://fogmachine.org/xmlns/libvirt/1.0"
ET.register_namespace("fogmachine", FOGMACHINE_NS)

DOMAIN_TYPES = ("qemu", "kvm", "test")
BOOTS = ("network", "kernel", "disk")
DISK_FORMATS = ("qcow2", "raw")
_KERNEL_BOOT = ("kernel", "initrd", "cmdline")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # fullmatch only
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# VNC authentication reads 8 bytes of the password and ignores the rest: 8 characters from 62 (about 47 bits),
# and the relay hands it only to the guest's owner or an administrator with a one-time ticket.
VNC_PASSWORD_LENGTH = 8
_VNC_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
VNC_PASSWORD_RE = re.compile(r"[A-Za-z0-9]{1,8}")


def new_vnc_password() -> str:
    """A random password for one guest's VNC server."""
    return "".join(secrets.choice(_VNC_ALPHABET) for _ in range(VNC_PASSWORD_LENGTH))

# A network is 'user' (QEMU user mode), ('bridge', NAME) or ('network', NAME).
Network = str | tuple[str, str]

_UNITS = {"b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
          "gb": 1000**3, "g": 1024**3, "gib": 1024**3, "tb": 1000**4, "t": 1024**4, "tib": 1024**4}


@dataclass(frozen=True)
class DomainSpec:
    """What Fogmachine wants a guest's domain to look like."""

    name: str
    memory_mb: int
    vcpus: int
    domain_type: str = "qemu"
    uuid: str | None = None
    mac: str | None = None
    network: Network = "user"
    disk_path: str | None = None
    boot: str = "network"  # 'network' (PXE, then disk), 'kernel' (direct kernel boot) or 'disk'
    disk_format: str = "qcow2"  # of disk_path: Fogmachine's volumes and overlays are qcow2
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    serial_log: str | None = None
    vnc: bool = True
    # Where the VNC server listens on the host; 127.0.0.1 keeps consoles off the network
    # unless a deployment decides otherwise (a console proxy on the host).
    vnc_listen: str = "127.0.0.1"
    # The VNC server's password (``new_vnc_password``; VNC uses at most 8 characters). It lives only in the
    # domain's XML: the console relay reads it back with the XML's secrets (``virt.console``).
    vnc_password: str | None = None
    guest_id: int | None = None


@dataclass(frozen=True)
class ParsedDomain:
    """What Fogmachine reads from a domain's XML."""

    name: str
    uuid: str
    domain_type: str
    memory_mb: int
    current_memory_mb: int
    vcpus: int
    macs: tuple[str, ...] = field(default_factory=tuple)
    vnc_port: int | None = None
    guest_id: int | None = None
    disks: tuple[str, ...] = field(default_factory=tuple)  # the files of its disks (not CD-ROMs)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def validate_spec(spec: DomainSpec) -> None:
    """Refuse a spec that libvirt would reject or that would put surprises into the XML."""
    if not NAME_RE.fullmatch(spec.name):
        raise ValidationError("domain name must be 1-63 letters, digits, '.', '_' or '-'", field="name")
    if spec.domain_type not in DOMAIN_TYPES:
        raise ValidationError(f"domain type must be one of {', '.join(DOMAIN_TYPES)}", field="domain_type")
    if isinstance(spec.memory_mb, bool) or not isinstance(spec.memory_mb, int) or spec.memory_mb < 1:
        raise ValidationError("memory must be a positive number of MiB", field="memory_mb")
    if isinstance(spec.vcpus, bool) or not isinstance(spec.vcpus, int) or spec.vcpus < 1:
        raise ValidationError("vcpus must be a positive whole number", field="vcpus")
    if spec.uuid is not None:
        try:
            uuidmod.UUID(spec.uuid)
        except ValueError:
            raise ValidationError(f"{spec.uuid!r} is not a UUID", field="uuid") from None
    if spec.mac is not None and not MAC_RE.fullmatch(spec.mac):
        raise ValidationError(f"{spec.mac!r} is not a MAC address like 52:54:00:12:34:56", field="mac")
    if isinstance(spec.network, tuple):
        if len(spec.network) != 2 or spec.network[0] not in ("bridge", "network") or not spec.network[1]:
            raise ValidationError("network must be 'user', ('bridge', NAME) or ('network', NAME)", field="network")
    elif spec.network != "user":
        raise ValidationError("network must be 'user', ('bridge', NAME) or ('network', NAME)", field="network")
    if spec.boot not in BOOTS:
        raise ValidationError("boot must be 'network', 'kernel' or 'disk'", field="boot")
    if spec.boot == "kernel" and not spec.kernel:
        raise ValidationError("direct kernel boot needs a kernel path", field="kernel")
    if spec.boot == "disk" and not spec.disk_path:
        raise ValidationError("booting from the disk needs a disk", field="disk_path")
    if spec.disk_format not in DISK_FORMATS:
        raise ValidationError(f"disk format must be one of {', '.join(DISK_FORMATS)}", field="disk_format")
    if spec.vnc_password is not None and not VNC_PASSWORD_RE.fullmatch(spec.vnc_password):
        raise ValidationError("a VNC password is 1-8 letters or digits", field="vnc_password")
    if spec.guest_id is not None and (isinstance(spec.guest_id, bool) or spec.guest_id < 1):
        raise ValidationError("guest id must be a positive integer", field="guest_id")


def build_domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML for ``spec`` (validated first)."""
    validate_spec(spec)
    dom = ET.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    if spec.uuid:
        _sub(dom, "uuid", spec.uuid)
    if spec.guest_id is not None:
        metadata = _sub(dom, "metadata")
        ET.SubElement(metadata, f"{{{FOGMACHINE_NS}}}guest", {"id": str(spec.guest_id), "name": spec.name})
    _sub(dom, "memory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    os_el = _sub(dom, "os")
    if spec.domain_type == "test":
        _sub(os_el, "type", "hvm")  # the test driver only knows its own arch and machine
    else:
        _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    if spec.boot == "kernel":
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    elif spec.boot == "disk":
        _sub(os_el, "boot", dev="hd")
    else:
        _sub(os_el, "boot", dev="network")
        _sub(os_el, "boot", dev="hd")
    if spec.domain_type != "test":
        features = _sub(dom, "features")
        _sub(features, "acpi")
        _sub(features, "apic")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    if spec.disk_path:
        disk = _sub(devices, "disk", type="file", device="disk")
        if spec.domain_type != "test":
            _sub(disk, "driver", name="qemu", type=spec.disk_format)
        _sub(disk, "source", file=spec.disk_path)
        _sub(disk, "target", dev="vda", bus="virtio")
    if isinstance(spec.network, tuple):
        kind, source = spec.network
        iface = _sub(devices, "interface", type=kind)
        if spec.mac:
            _sub(iface, "mac", address=spec.mac)
        _sub(iface, "source", **{kind: source})
    else:
        iface = _sub(devices, "interface", type="user")
        if spec.mac:
            _sub(iface, "mac", address=spec.mac)
    _sub(iface, "model", type="virtio")
    # Always a pty, so the console can be opened (virDomainOpenConsole needs one); the log file beside it
    # keeps everything the guest wrote for the guest page's tail, whether a console is open or not.
    serial = _sub(devices, "serial", type="pty")
    if spec.serial_log:
        _sub(serial, "log", file=spec.serial_log, append="on")
    _sub(serial, "target", port="0")
    if spec.vnc:
        graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes", listen=spec.vnc_listen)
        if spec.vnc_password:
            graphics.set("passwd", spec.vnc_password)
    return ET.tostring(dom, encoding="unicode")


def boot_from_disk(xml: str) -> str | None:
    """``xml`` (a defined domain's) changed from direct kernel boot to booting its first disk; None when it
    does not boot a kernel or has no disk, so there is nothing to change.

    This is what an installed guest needs: left alone, a kernel-booted guest runs its installer again at
    every boot (Cobbler's koan makes the same switch). Everything else in the XML is kept as it is.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValidationError(f"domain XML is not well-formed: {exc}") from None
    os_el = root.find("os")
    disks = [d for d in root.findall("./devices/disk") if d.get("device", "disk") == "disk"]
    if os_el is None or os_el.find("kernel") is None or not disks:
        return None
    for tag in _KERNEL_BOOT:
        for element in os_el.findall(tag):
            os_el.remove(element)
    for element in os_el.findall("boot"):
        os_el.remove(element)
    # libvirt refuses <os><boot> next to per-device <boot order=...>: those already say what boots.
    if root.find("./devices/*/boot") is None:
        _sub(os_el, "boot", dev="hd")
    return ET.tostring(root, encoding="unicode")


def _memory_mb(element: ET.Element | None) -> int:
    if element is None or not (element.text or "").strip():
        return 0
    unit = (element.get("unit") or "KiB").lower()
    try:
        amount = int(element.text.strip())  # type: ignore[union-attr]
    except ValueError:
        return 0
    return amount * _UNITS.get(unit, 1024) // (1024 * 1024)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_domain_xml(xml: str) -> ParsedDomain:
    """Read the parts Fogmachine keeps from a domain's XML (as ``XMLDesc`` returns it)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValidationError(f"domain XML is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise ValidationError(f"expected a <domain> element, found <{root.tag}>")
    memory = _memory_mb(root.find("memory"))
    current = _memory_mb(root.find("currentMemory")) or memory
    vcpu = _int_or_none(root.findtext("vcpu"))
    vcpu_el = root.find("vcpu")
    if vcpu_el is not None and vcpu_el.get("current"):
        vcpu = _int_or_none(vcpu_el.get("current")) or vcpu
    macs = tuple(
        mac.get("address", "").lower()
        for mac in root.findall("./devices/interface/mac")
        if mac.get("address")
    )
    vnc_port = None
    for graphics in root.findall("./devices/graphics"):
        if graphics.get("type") == "vnc":
            port = _int_or_none(graphics.get("port"))
            vnc_port = port if port is not None and port > 0 else None
            break
    guest_id = None
    mark = root.find(f"./metadata/{{{FOGMACHINE_NS}}}guest")
    if mark is not None:
        value = _int_or_none(mark.get("id"))
        guest_id = value if value is not None and value > 0 else None
    disks = tuple(
        source.get("file", "")
        for disk in root.findall("./devices/disk")
        if disk.get("device", "disk") == "disk" and (source := disk.find("source")) is not None and source.get("file")
    )
    return ParsedDomain(
        name=(root.findtext("name") or "").strip(),
        uuid=(root.findtext("uuid") or "").strip(),
        domain_type=root.get("type", ""),
        memory_mb=memory,
        current_memory_mb=current,
        vcpus=vcpu or 0,
        macs=macs,
        vnc_port=vnc_port,
        guest_id=guest_id,
        disks=disks,
    )
