"""Storage volumes in a host's ``default`` pool: the checks, the XML and the blocking calls.

A guest's disk is a qcow2 volume NAME.qcow2 in the pool named ``default``:
blank, or a copy-on-write overlay of a disk image already on the host. A
HostConnection validates the request here (``check_volume``) before any
libvirt call, then runs ``pool_path``, ``create_volume`` and ``delete_volume``
on a call thread; their ``libvirtError`` is translated by the connection.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from fogmachine.errors import ValidationError
from fogmachine.virt.domainxml import DISK_FORMATS, NAME_RE

STORAGE_POOL = "default"


def check_volume(name: str, size_gb: int, backing: str | None, backing_format: str) -> None:
    """Raise ValidationError for a request no host should see: a bad name or size, a relative image path."""
    if not NAME_RE.fullmatch(name):
        raise ValidationError("volume name must be 1-63 letters, digits, '.', '_' or '-'", field="name")
    smallest = 0 if backing else 1
    if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb < smallest:
        raise ValidationError("disk size must be a positive number of GiB", field="disk_gb")
    if backing is not None and (not backing.startswith("/") or "\0" in backing):
        raise ValidationError(f"disk image {backing!r} must be an absolute path on the host", field="image")
    if backing_format not in DISK_FORMATS:
        raise ValidationError(f"image format must be one of {', '.join(DISK_FORMATS)}", field="image_format")


def default_pool(conn: libvirt.virConnect) -> libvirt.virStoragePool | None:
    try:
        pool = conn.storagePoolLookupByName(STORAGE_POOL)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise
    return pool if pool.isActive() else None


def pool_path(conn: libvirt.virConnect) -> str | None:
    pool = default_pool(conn)
    if pool is None:
        return None
    return ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""


def volume_xml(name: str, size_gb: int, backing: str | None = None, backing_format: str = "qcow2") -> str:
    """libvirt storage volume XML for NAME.qcow2; an overlay of ``backing`` when given (capacity left out
    when ``size_gb`` is 0: libvirt then takes the image's own size)."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = f"{name}.qcow2"
    if size_gb > 0:
        ET.SubElement(volume, "capacity", unit="G").text = str(size_gb)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type="qcow2")
    if backing is not None:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type=backing_format)
    return ET.tostring(volume, encoding="unicode")


def create_volume(conn: libvirt.virConnect, name: str, size_gb: int, backing: str | None,
                  backing_format: str) -> str | None:
    pool = default_pool(conn)
    if pool is None:
        return None
    return str(pool.createXML(volume_xml(name, size_gb, backing, backing_format), 0).path())


def delete_volume(conn: libvirt.virConnect, path: str) -> None:
    conn.storageVolLookupByPath(path).delete(0)
