"""The local catalog file (``local_catalog``): an INI file, one section per profile.

It is what can be checked out without Cobbler::

    [tiny]
    description = Tiny test guest
    virt_type = qemu          # qemu, kvm, xen, lxc or test
    ram_mb = 256
    vcpus = 1
    disk_gb = 0               # an empty volume of this size where the host has a storage pool
    boot = kernel             # kernel (kernel/initrd/cmdline), network (PXE, then the disk) or disk
    kernel = /var/lib/fogmachine/vmlinuz
    initrd = /var/lib/fogmachine/initrd.img
    cmdline = console=ttyS0 fm.hostname={name}
    network = user            # user, bridge:NAME or network:NAME
    phonehome = no            # yes: the guest calls /guest/MAC/set when done; no: ready once started

``cmdline`` may use ``{name}``, ``{mac}``, ``{server}`` and ``{phonehome_url}``.

A profile may instead start from a disk image already on the hosts::

    [debian12]
    image = /var/lib/libvirt/images/debian-12-generic-amd64.qcow2
    image_format = qcow2      # or raw
    disk_gb = 0               # 0: the image's own size; more grows the guest's disk
    boot = disk               # the default with an image

Each guest then gets a copy-on-write overlay of the image in its host's
``default`` storage pool, so the image is shared and never written. Such a
profile is only placed on hosts with an active ``default`` pool (no pool, no
disk, nothing to boot: refused with 409 when no host has one). With
``boot = kernel`` and an image, the guest is installed by its kernel and
switched to boot from its disk once it phones home.

Every value is checked when the file is read, so a mistake stops the server at
start (or is refused when the file is edited), never a checkout.
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

from fogmachine.catalog.entry import VIRT_TYPES, CatalogEntry, parse_network, positive
from fogmachine.errors import ConfigError

BOOTS = ("kernel", "network", "disk")
IMAGE_FORMATS = ("qcow2", "raw")
CMDLINE_FIELDS = ("name", "mac", "server", "phonehome_url")
LOCAL_KEYS = {"description", "virt_type", "ram_mb", "vcpus", "disk_gb", "boot", "kernel", "initrd", "cmdline",
              "network", "phonehome", "image", "image_format"}


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"{value!r} is not yes or no")


def _image(section: configparser.SectionProxy) -> tuple[str, str]:
    """(image, image_format): the path is on the hypervisor hosts, so only its form is checked here."""
    image = section.get("image", "").strip()
    image_format = section.get("image_format", "").strip().lower()
    if not image:
        if image_format:
            raise ValueError("image_format needs an image")
        return "", "qcow2"
    if not os.path.isabs(image) or "\0" in image:
        raise ValueError(f"image {image!r} must be an absolute path (on the hypervisor hosts)")
    if image_format and image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}")
    return image, image_format or "qcow2"


def load_local(path: str | Path) -> list[CatalogEntry]:
    """Parse the local catalog; ConfigError names the file, the section and the key on a bad value."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"),
                                       default_section="__defaults__")
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the local catalog {path}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not a valid INI file: {str(exc).splitlines()[0]}") from None
    entries = []
    for name in parser.sections():
        where = f"{path}, [{name}]: "
        section = parser[name]
        unknown = set(section) - LOCAL_KEYS
        if unknown:
            raise ConfigError(f"{where}unknown key(s) {', '.join(sorted(unknown))}")
        try:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
                raise ValueError("the profile name must be letters, digits, '.', '_' or '-'")
            virt_type = section.get("virt_type", "kvm").strip().lower()
            if virt_type not in VIRT_TYPES:
                raise ValueError(f"virt_type must be one of {', '.join(VIRT_TYPES)}")
            image, image_format = _image(section)
            boot = section.get("boot", "disk" if image else "kernel").strip().lower()
            if boot not in BOOTS:
                raise ValueError(f"boot must be one of {', '.join(BOOTS)}")
            if boot == "disk" and not image:
                raise ValueError("boot = disk needs an image (the disk to boot)")
            entry = CatalogEntry(
                name=name, kind="local", virt_type=virt_type, boot=boot,
                ram_mb=positive(section.get("ram_mb", "512"), "ram_mb"),
                vcpus=positive(section.get("vcpus", "1"), "vcpus"),
                disk_gb=positive(section.get("disk_gb", "0"), "disk_gb", zero_ok=True),
                description=section.get("description", "").strip(),
                kernel=section.get("kernel", "").strip(), initrd=section.get("initrd", "").strip(),
                cmdline=" ".join(section.get("cmdline", "").split()),
                network=parse_network(section.get("network", "user")),
                phonehome=_bool(section.get("phonehome", "no")), image=image, image_format=image_format,
            )
            if boot == "kernel" and not entry.kernel:
                raise ValueError("boot = kernel needs a kernel (and usually an initrd)")
            # Every placeholder must be one we fill in: fail at start, not at checkout.
            entry.cmdline.format_map({key: "x" for key in CMDLINE_FIELDS})
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{where}cmdline uses an unknown placeholder {exc}; "
                              f"known: {', '.join('{' + f + '}' for f in CMDLINE_FIELDS)}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}{exc}") from None
        entries.append(entry)
    return entries
