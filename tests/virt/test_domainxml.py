"""Domain XML built and read with xml.etree, and Fogmachine's mark surviving libvirt."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from fogmachine.errors import ValidationError
from fogmachine.virt.domainxml import (
    FOGMACHINE_NS,
    DomainSpec,
    boot_from_disk,
    build_domain_xml,
    new_vnc_password,
    parse_domain_xml,
)
from fogmachine.virt.errors import silence_libvirt
from tests.support import testhosts

UUID = "5b0f7a7e-2f6f-4b8a-9d0e-1f2a3b4c5d6e"


def test_round_trip_of_everything_fogmachine_reads():
    spec = DomainSpec(name="web1", uuid=UUID, memory_mb=2048, vcpus=2, mac="52:54:00:aa:bb:cc",
                      network=("bridge", "br0"), disk_path="/var/lib/libvirt/images/web1.qcow2", guest_id=42)
    parsed = parse_domain_xml(build_domain_xml(spec))
    assert (parsed.name, parsed.uuid, parsed.domain_type) == ("web1", UUID, "qemu")
    assert (parsed.memory_mb, parsed.current_memory_mb, parsed.vcpus) == (2048, 2048, 2)
    assert parsed.macs == ("52:54:00:aa:bb:cc",)
    assert parsed.guest_id == 42
    assert parsed.vnc_port is None  # autoport: -1 until the domain runs


def test_network_boot_bridge_and_network_sources():
    root = ET.fromstring(build_domain_xml(DomainSpec(name="a", memory_mb=512, vcpus=1, network=("network", "lab"))))
    assert [b.get("dev") for b in root.findall("./os/boot")] == ["network", "hd"]
    assert root.find("./devices/interface").get("type") == "network"
    assert root.find("./devices/interface/source").get("network") == "lab"
    assert root.find("./devices/graphics").attrib == {"type": "vnc", "port": "-1", "autoport": "yes",
                                                      "listen": "127.0.0.1"}
    bridged = ET.fromstring(build_domain_xml(DomainSpec(name="b", memory_mb=512, vcpus=1, network=("bridge", "br0"))))
    assert bridged.find("./devices/interface/source").attrib == {"bridge": "br0"}
    user = ET.fromstring(build_domain_xml(DomainSpec(name="c", memory_mb=512, vcpus=1, vnc=False)))
    assert user.find("./devices/interface").get("type") == "user"
    assert user.find("./devices/graphics") is None


def test_vnc_password_is_set_on_the_graphics_and_checked():
    password = new_vnc_password()
    assert len(password) == 8 and password.isalnum() and password != new_vnc_password()
    root = ET.fromstring(build_domain_xml(DomainSpec(name="v", memory_mb=256, vcpus=1, vnc_password=password)))
    assert root.find("./devices/graphics").get("passwd") == password
    plain = ET.fromstring(build_domain_xml(DomainSpec(name="v", memory_mb=256, vcpus=1)))
    assert plain.find("./devices/graphics").get("passwd") is None
    assert plain.find("./devices/serial").get("type") == "pty" and plain.find("./devices/serial/log") is None
    for bad in ("", "nine char", "ninechars", "quo'te"):
        with pytest.raises(ValidationError) as info:
            build_domain_xml(DomainSpec(name="v", memory_mb=256, vcpus=1, vnc_password=bad))
        assert info.value.details.get("field") == "vnc_password"


def test_kernel_boot_text_is_escaped_not_formatted():
    nasty = "console=ttyS0 ks=http://10.0.2.2/ks?a=1&b=<2> \"quoted\" 'single'"
    xml = build_domain_xml(DomainSpec(name="k", memory_mb=256, vcpus=1, boot="kernel", kernel="/boot/vmlinuz",
                                      initrd="/boot/initrd.img", cmdline=nasty, serial_log="/var/log/k & co.log"))
    root = ET.fromstring(xml)
    assert root.findtext("./os/cmdline") == nasty
    serial = root.find("./devices/serial")
    assert serial.get("type") == "pty"  # the console needs a pty; the log file keeps the tail
    assert serial.find("log").attrib == {"file": "/var/log/k & co.log", "append": "on"}
    assert serial.find("source") is None
    assert root.find("./os/boot") is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": "web 1"}, "name"),
    ({"name": "<x>"}, "name"),
    ({"name": ""}, "name"),
    ({"memory_mb": 0}, "memory_mb"),
    ({"vcpus": True}, "vcpus"),
    ({"mac": "52:54:00:AA:BB"}, "mac"),
    ({"uuid": "not-a-uuid"}, "uuid"),
    ({"network": ("vlan", "x")}, "network"),
    ({"boot": "kernel"}, "kernel"),
    ({"boot": "disk"}, "disk_path"),
    ({"boot": "floppy"}, "boot"),
    ({"disk_path": "/d.img", "disk_format": "vmdk"}, "disk_format"),
    ({"domain_type": "vmware"}, "domain_type"),
])
def test_bad_specs_are_refused_with_the_field(changes, field):
    values = {"name": "ok", "memory_mb": 256, "vcpus": 1, **changes}
    with pytest.raises(ValidationError) as info:
        build_domain_xml(DomainSpec(**values))
    assert info.value.field == field


def test_parse_units_vnc_port_and_foreign_metadata():
    xml = f"""<domain type='kvm'><name>x</name><uuid>{UUID}</uuid>
      <metadata><other:thing xmlns:other='http://example.org/x' id='9'/></metadata>
      <memory unit='GiB'>4</memory><currentMemory>1048576</currentMemory><vcpu current='2'>4</vcpu>
      <devices><interface type='bridge'><mac address='52:54:00:00:00:0A'/></interface>
      <interface type='network'><mac address='52:54:00:00:00:0b'/></interface>
      <graphics type='spice' port='5930'/><graphics type='vnc' port='5901'/></devices></domain>"""
    parsed = parse_domain_xml(xml)
    assert (parsed.memory_mb, parsed.current_memory_mb, parsed.vcpus) == (4096, 1024, 2)
    assert parsed.macs == ("52:54:00:00:00:0a", "52:54:00:00:00:0b")
    assert parsed.vnc_port == 5901
    assert parsed.guest_id is None  # someone else's metadata is not Fogmachine's mark
    assert parsed.disks == ()


def test_parse_disks_are_the_files_of_disk_devices_only():
    xml = f"""<domain type='kvm'><name>x</name><uuid>{UUID}</uuid><memory>1048576</memory><vcpu>1</vcpu><devices>
      <disk type='file' device='disk'><source file='/pool/x.qcow2'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/install.iso'/></disk>
      <disk type='block' device='disk'><source dev='/dev/sdb'/></disk>
      <disk type='file'><source file='/pool/data.img'/></disk></devices></domain>"""
    assert parse_domain_xml(xml).disks == ("/pool/x.qcow2", "/pool/data.img")


@pytest.mark.parametrize("xml", ["<domain", "<node/>"])
def test_parse_rejects_what_is_not_a_domain(xml):
    with pytest.raises(ValidationError):
        parse_domain_xml(xml)


def test_the_mark_survives_libvirt(tmp_path):
    """Defined on the test driver and read back through XMLDesc, the guest id is still there."""
    silence_libvirt()
    conn = libvirt.open(testhosts.write_host(tmp_path, "h"))
    try:
        spec = DomainSpec(name="marked", domain_type="test", memory_mb=128, vcpus=1, mac="52:54:00:01:02:03",
                          guest_id=7)
        dom = conn.defineXML(build_domain_xml(spec))
        described = dom.XMLDesc(0)
        assert FOGMACHINE_NS in described
        parsed = parse_domain_xml(described)
        assert (parsed.guest_id, parsed.macs, parsed.memory_mb) == (7, ("52:54:00:01:02:03",), 128)
    finally:
        conn.close()


def test_disk_boot_boots_the_disk_only():
    root = ET.fromstring(build_domain_xml(DomainSpec(name="d", memory_mb=256, vcpus=1, boot="disk",
                                                     disk_path="/pool/d.qcow2")))
    assert [b.get("dev") for b in root.findall("./os/boot")] == ["hd"]
    assert root.find("./os/kernel") is None
    assert root.find("./devices/disk/source").get("file") == "/pool/d.qcow2"
    assert root.find("./devices/disk/driver").get("type") == "qcow2"


def _kernel_domain(**changes) -> str:
    values = {"name": "k", "memory_mb": 256, "vcpus": 1, "boot": "kernel", "kernel": "/boot/vmlinuz",
              "initrd": "/boot/initrd.img", "cmdline": "ks=http://x/ks", "disk_path": "/pool/k.qcow2",
              "guest_id": 5, **changes}
    return build_domain_xml(DomainSpec(**values))


def test_boot_from_disk_drops_the_installer_and_keeps_the_rest():
    before = ET.fromstring(_kernel_domain())
    after = ET.fromstring(boot_from_disk(_kernel_domain()))
    for tag in ("kernel", "initrd", "cmdline"):
        assert after.find(f"./os/{tag}") is None
    assert [b.get("dev") for b in after.findall("./os/boot")] == ["hd"]
    assert after.findtext("./os/type") == "hvm"
    # Everything outside <os> is as it was, Fogmachine's mark included.
    for path in ("devices", "memory", "vcpu", "name"):
        assert ET.tostring(after.find(path)) == ET.tostring(before.find(path))
    assert parse_domain_xml(ET.tostring(after, encoding="unicode")).guest_id == 5


def test_boot_from_disk_replaces_existing_boot_entries_and_respects_per_device_order():
    root = ET.fromstring(_kernel_domain())
    os_el = root.find("os")
    ET.SubElement(os_el, "boot", dev="network")
    ET.SubElement(os_el, "boot", dev="hd")  # libvirt adds one to a kernel-booted domain
    after = ET.fromstring(boot_from_disk(ET.tostring(root, encoding="unicode")))
    assert [b.get("dev") for b in after.findall("./os/boot")] == ["hd"]
    ordered = ET.fromstring(_kernel_domain())
    ET.SubElement(ordered.find("./devices/disk"), "boot", order="1")
    after = ET.fromstring(boot_from_disk(ET.tostring(ordered, encoding="unicode")))
    assert after.find("./os/boot") is None and after.find("./os/kernel") is None
    assert after.find("./devices/disk/boot").get("order") == "1"


@pytest.mark.parametrize("xml", [
    _kernel_domain(disk_path=None),  # nothing to boot from
    build_domain_xml(DomainSpec(name="n", memory_mb=256, vcpus=1, disk_path="/pool/n.qcow2")),  # not a kernel
])
def test_boot_from_disk_leaves_what_it_cannot_or_need_not_change(xml):
    assert boot_from_disk(xml) is None


def test_boot_from_disk_refuses_what_is_not_xml():
    with pytest.raises(ValidationError):
        boot_from_disk("<domain")
