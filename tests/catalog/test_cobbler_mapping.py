"""Cobbler's objects as catalog entries, on records shaped as Cobbler 3.3's XML-RPC API lists them.

The real Cobbler's answers are checked by the marked tests in test_cobbler_source.py; these pin the rules of
the mapping itself (inheritance, the fogmachine keys, fallbacks) without a Cobbler.
"""

from __future__ import annotations

import logging

import pytest

from fogmachine.catalog.cobbler_mapping import (
    INHERIT,
    blended_entry,
    catalog_entries,
    image_entry,
    profile_entry,
)

SETTINGS = {"default_virt_ram": 1024, "default_virt_cpus": 2, "default_virt_file_size": 5, "default_virt_type": "kvm",
            "default_virt_bridge": "xenbr0"}
DISTROS = {"rocky9": {"name": "rocky9", "kernel": "/srv/vmlinuz", "initrd": "/srv/initrd.img", "breed": "redhat"}}


def profile(name: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"name": name, "parent": "", "distro": INHERIT, "autoinstall_meta": INHERIT,
                               "virt_ram": INHERIT, "virt_cpus": INHERIT, "virt_file_size": INHERIT,
                               "virt_type": INHERIT, "virt_bridge": INHERIT, "comment": ""}
    return {**base, **fields}


def test_a_profile_without_the_fogmachine_key_is_not_in_the_catalog() -> None:
    hidden = profile("hidden", distro="rocky9", autoinstall_meta={"tree": "http://x"})
    assert profile_entry(hidden, {"hidden": hidden}, DISTROS, SETTINGS) is None


def test_a_child_profile_inherits_the_key_the_sizes_and_the_distro_from_its_parent() -> None:
    parent = profile("base", distro="rocky9", autoinstall_meta={"fogmachine": ""}, virt_ram=2048, virt_cpus=4)
    child = profile("web", parent="base", virt_cpus=1, comment="web server")
    parents = {"base": parent, "web": child}
    entry = profile_entry(child, parents, DISTROS, SETTINGS)
    assert entry is not None
    assert (entry.name, entry.kind, entry.ram_mb, entry.vcpus, entry.disk_gb, entry.virt_type) == (
        "web", "profile", 2048, 1, 5, "kvm")
    assert (entry.kernel, entry.initrd, entry.breed, entry.description) == (
        "/srv/vmlinuz", "/srv/initrd.img", "redhat", "web server")
    assert entry.boot == "kernel" and entry.phonehome and entry.network == ("bridge", "xenbr0")


def test_a_parent_loop_ends_at_cobblers_defaults() -> None:
    a = profile("a", parent="b", autoinstall_meta={"fogmachine": ""})
    b = profile("b", parent="a")
    entry = profile_entry(a, {"a": a, "b": b}, DISTROS, SETTINGS)
    assert entry is not None and (entry.ram_mb, entry.kernel) == (1024, "")


def test_the_fogmachine_keys_choose_network_and_boot(caplog: pytest.LogCaptureFixture) -> None:
    item = profile("p", distro="rocky9", autoinstall_meta={"fogmachine": "", "fogmachine_network": "network:lab",
                                                           "fogmachine_boot": "network"})
    entry = profile_entry(item, {"p": item}, DISTROS, SETTINGS)
    assert entry is not None and (entry.network, entry.boot) == (("network", "lab"), "network")
    odd = profile("odd", autoinstall_meta={"fogmachine": "", "fogmachine_network": "wifi:x",
                                           "fogmachine_boot": "floppy"})
    with caplog.at_level(logging.WARNING, "fogmachine.catalog.cobbler_mapping"):
        entry = profile_entry(odd, {"odd": odd}, DISTROS, SETTINGS)
    assert entry is not None and (entry.network, entry.boot) == ("user", "kernel")
    assert "Cobbler profile odd: network 'wifi:x' must be" in caplog.text


def test_bad_sizes_and_virt_types_fall_back_rather_than_hide_the_profile() -> None:
    item = profile("p", autoinstall_meta={"fogmachine": ""}, virt_ram="lots", virt_cpus=0, virt_file_size=-3,
                   virt_type="xenpv")
    entry = profile_entry(item, {"p": item}, DISTROS, {})
    assert entry is not None and (entry.ram_mb, entry.vcpus, entry.disk_gb, entry.virt_type) == (512, 1, 0, "xen")
    item = profile("q", autoinstall_meta={"fogmachine": ""}, virt_type="vmware")
    assert profile_entry(item, {"q": item}, DISTROS, {}).virt_type == "kvm"  # type: ignore[union-attr]


def test_blended_data_reads_flattened_meta_and_kernel_options() -> None:
    data = {"name": "web", "profile_name": "web", "autoinstall_meta": "fogmachine fogmachine_boot=network",
            "virt_ram": 768, "virt_cpus": 2, "virt_file_size": 0, "virt_type": "qemu", "virt_bridge": "",
            "kernel": "/k", "initrd": "/i", "breed": "debian",
            "kernel_options": {"console": "ttyS0", "quiet": "~", "panic": -1}}
    entry = blended_entry(data)
    assert entry is not None
    assert (entry.ram_mb, entry.vcpus, entry.virt_type, entry.boot, entry.network) == (768, 2, "qemu", "network",
                                                                                       "user")
    assert (entry.cmdline, entry.kernel, entry.breed) == ("console=ttyS0 quiet panic=-1", "/k", "debian")
    assert blended_entry({**data, "autoinstall_meta": "tree=http://x"}) is None
    assert blended_entry({**data, "kernel_options": "  a=1   b "}).cmdline == "a=1 b"  # type: ignore[union-attr]


def test_an_image_boots_from_the_network() -> None:
    entry = image_entry({"name": "live", "virt_ram": INHERIT, "virt_cpus": 1, "virt_bridge": "br1",
                         "autoinstall_meta": {}, "breed": "redhat"}, SETTINGS)
    assert (entry.kind, entry.boot, entry.ram_mb, entry.network, entry.phonehome) == (
        "image", "network", 1024, ("bridge", "br1"), True)


def test_the_whole_catalog_is_sorted_by_kind_then_name() -> None:
    profiles = [profile("zeta", autoinstall_meta={"fogmachine": ""}), profile("hidden"),
                profile("alpha", autoinstall_meta={"fogmachine": ""})]
    images = [{"name": "img"}]
    entries = catalog_entries(profiles, images, list(DISTROS.values()), SETTINGS)
    assert [(e.kind, e.name) for e in entries] == [("image", "img"), ("profile", "alpha"), ("profile", "zeta")]
