"""The local catalog file: the shipped one parses, and each mistake is named with its file and section."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmachine.catalog.local_file import load_local
from fogmachine.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_shipped_catalog_parses() -> None:
    entries = {e.name: e for e in load_local(ROOT / "catalog.conf")}
    assert {"small", "medium", "large", "rescue"} <= set(entries)
    small = entries["small"]
    assert (small.ram_mb, small.vcpus, small.disk_gb, small.virt_type, small.boot) == (1024, 1, 10, "kvm", "network")
    assert small.network == ("network", "default")
    rescue = entries["rescue"]
    assert rescue.boot == "kernel" and rescue.kernel and rescue.network == "user" and not rescue.phonehome


def test_the_shipped_image_example_parses(tmp_path: Path) -> None:
    """The commented [debian12] example in catalog.conf is a valid profile once uncommented."""
    lines = (ROOT / "catalog.conf").read_text().splitlines()
    start = lines.index("#   [debian12]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    (entry,) = load_local(_write(tmp_path, "\n".join(block) + "\n"))
    assert (entry.name, entry.boot, entry.image_format, entry.disk_gb) == ("debian12", "disk", "qcow2", 20)
    assert entry.image.endswith(".qcow2") and entry.network == ("network", "default")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("[a]\nram_mb = lots\n", "ram_mb must be a number"),
    ("[a]\nvcpus = 0\n", "vcpus must be at least 1"),
    ("[a]\nvirt_type = vmware\n", "virt_type must be one of"),
    ("[a]\nboot = floppy\n", "boot must be one of"),
    ("[a]\nboot = kernel\n", "needs a kernel"),
    ("[a]\nboot = network\nnetwork = wifi:x\n", "network 'wifi:x' must be"),
    ("[a]\nboot = network\ncolour = red\n", "unknown key(s) colour"),
    ("[a]\nkernel = /k\ncmdline = x={nope}\n", "unknown placeholder 'nope'"),
    ("[bad name]\nboot = network\n", "profile name must be"),
    ("[a]\nboot = disk\n", "boot = disk needs an image"),
    ("[a]\nimage = images/base.qcow2\n", "image 'images/base.qcow2' must be an absolute path"),
    ("[a]\nimage = /i/base.img\nimage_format = vmdk\n", "image_format must be one of qcow2, raw"),
    ("[a]\nboot = network\nimage_format = raw\n", "image_format needs an image"),
    ("[a]\nimage = /i/base.qcow2\nboot = kernel\n", "needs a kernel"),
    ("no section\n", "not a valid INI file"),
])
def test_a_bad_local_catalog_names_file_section_and_problem(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_local(path)
    assert message in info.value.message
    assert str(path) in info.value.message


def test_image_profiles_boot_their_disk_unless_told_otherwise(tmp_path: Path) -> None:
    path = _write(tmp_path, "[cloud]\nimage = /var/lib/libvirt/images/base.qcow2\nvirt_type = qemu\n\n"
                            "[install]\nimage = /srv/blank.img\nimage_format = RAW\nboot = kernel\n"
                            "kernel = /k\ndisk_gb = 20\n\n[plain]\nboot = network\n")
    entries = {e.name: e for e in load_local(path)}
    cloud, install, plain = entries["cloud"], entries["install"], entries["plain"]
    assert (cloud.image, cloud.image_format, cloud.boot, cloud.disk_gb) == (
        "/var/lib/libvirt/images/base.qcow2", "qcow2", "disk", 0)
    assert (install.image, install.image_format, install.boot, install.disk_gb) == ("/srv/blank.img", "raw",
                                                                                    "kernel", 20)
    assert (plain.image, plain.boot) == ("", "network")
