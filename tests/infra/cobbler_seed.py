#!/usr/bin/env python3
"""Seed a (test) Cobbler 3.3 server with what Fogmachine's tests expect: an autoinstall template, a distro,
a profile and an image.  Standard library only (xmlrpc.client).  Idempotent: existing objects are modified.

    python tests/infra/cobbler_seed.py URL KERNEL INITRD [--user cobbler --password cobbler ...]

Cobbler quirks this works around (measured on 3.3.10):
  * the distro kernel's *file name* must look like a kernel (regex
    ``vmlinu[xz]|kernel|linux(.img)?|...`` anchored at the start) or modify_distro faults; other names get a
    ``vmlinuz`` symlink in ``link_dir``.  The paths are checked on the Cobbler host (= this machine here).
  * use the 3.x attribute names ``autoinstall`` / ``autoinstall_meta``: the legacy ``kickstart`` / ``ks_meta``
    return True but store nothing.
  * ``get_<item>(name)`` returns the string ``"~"`` for a missing object, not a fault.
  * cobblerd checks kernel/initrd existence again when it loads its collections at start: if a file has
    vanished, that distro and its profiles and systems are skipped (only an ERROR in cobbler.log).  Re-run
    seed after rebuilding/moving the kernel; ``cobbler_server.sh reset`` also deletes such ghost objects.
  * image_type: the setter upper-cases the string and looks it up in the enum *names*
    (DIRECT, ISO, MEMDISK, VIRT_CLONE), so "virt-clone" faults and "virt_clone" is accepted but serialized as
    "virt-clone", which cobblerd cannot load again (at its next start it skips that image, logging
    "Error while loading a collection ... Skipping this collection!", which really means "this item").
    Default here: "iso".
"""

import argparse
import os
import re
import sys
import xmlrpc.client

# Cobbler 3.3 cobbler/utils.py _re_kernel, used with re.match on the file name.
_RE_KERNEL = re.compile(r"(vmlinu[xz]|(kernel|linux(\.img)?)|pxeboot\.n12|wimboot|mboot\.c32|.+\.kernel)")

DEFAULT_TEMPLATE = """\
## Fogmachine test kickstart (Cheetah template rendered by Cobbler).  Lines starting with "##" are
## Cheetah comments and do not appear in the rendered file.
# fogmachine autoinstall for system=$getVar('system_name', '') profile=$getVar('profile_name', '')
text
lang en_US.UTF-8
keyboard us
timezone UTC --utc
rootpw --plaintext fogmachine
network --bootproto=dhcp
zerombr
clearpart --all --initlabel
autopart
reboot

%packages
%end

%post
$SNIPPET('fogmachine_update')
%end
"""


def _kernel_path(kernel, distro, link_dir):
    """Return a path to `kernel` whose file name Cobbler accepts as a kernel (symlinking if needed)."""
    kernel = os.path.abspath(kernel)
    if _RE_KERNEL.match(os.path.basename(kernel)):
        return kernel
    target_dir = os.path.join(link_dir, distro)
    os.makedirs(target_dir, exist_ok=True)
    link = os.path.join(target_dir, "vmlinuz")
    if os.path.islink(link) or os.path.exists(link):
        if os.path.realpath(link) == os.path.realpath(kernel):
            return link
        os.unlink(link)
    os.symlink(kernel, link)
    return link


def _upsert(server, token, what, name, fields):
    """new_<what> or get_<what>_handle, then modify_<what> for every field, then save_<what>.

    Returns "created" or "modified".  Raises xmlrpc.client.Fault (faultCode 1, text such as
    'virt_ram needs to be an integer') on invalid values.
    """
    exists = server.get_item(what, name) != "~"
    if exists:
        handle = server.get_item_handle(what, name, token)
    else:
        handle = server.new_item(what, token)
        server.modify_item(what, handle, "name", name, token)
    for key, value in fields.items():
        server.modify_item(what, handle, key, value, token)
    server.save_item(what, handle, token, "bypass")
    return "modified" if exists else "created"


def seed(
    url,
    user,
    password,
    kernel,
    initrd,
    *,
    distro="fm-tiny",
    profile="fm-tiny",
    autoinstall_name="fm-tiny.ks",
    template=DEFAULT_TEMPLATE,
    arch="x86_64",
    breed="redhat",
    os_version="rhel9",
    kernel_options="",
    virt_ram=256,
    virt_cpus=1,
    virt_type="qemu",
    virt_file_size=1,
    autoinstall_meta=None,
    image="fm-image",
    image_file=None,
    image_type="iso",
    link_dir=None,
    sync=False,
):
    """Create or update the Fogmachine test objects in Cobbler.  Returns {"distro": "created"|"modified", ...}.

    image=None skips the image.  image_file defaults to the kernel path (Cobbler only validates the string's
    form, not that the file exists).  sync=True runs Cobbler's ``sync`` at the end (not needed for
    autoinstall rendering).
    """
    if image and image_type.replace("_", "-").lower() == "virt-clone":
        # 3.3.10 bug: the setter wants "virt_clone" but the file serializer stores "virt-clone", which the
        # setter rejects on reload, so cobblerd silently drops the image at its next start.
        raise ValueError("image_type virt-clone breaks Cobbler 3.3.10's image collection on restart")
    for path in (kernel, initrd):
        # Cobbler checks these paths itself (same machine here); fail early with a clear message.
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
    if autoinstall_meta is None:
        autoinstall_meta = {"fogmachine": 1}
    if link_dir is None:
        base = os.environ.get("FM_TEST_STATE", "/var/tmp/fogmachine-test")
        link_dir = os.path.join(base, "cobbler", "kernels")
    server = xmlrpc.client.ServerProxy(url, allow_none=True)
    token = server.login(user, password)
    result = {}

    # Stored as /var/lib/cobbler/templates/<autoinstall_name>; profiles refer to it by that relative name.
    server.write_autoinstall_template(autoinstall_name, template, token)
    result["autoinstall"] = autoinstall_name

    result["distro"] = _upsert(
        server,
        token,
        "distro",
        distro,
        {
            "kernel": _kernel_path(kernel, distro, link_dir),
            "initrd": os.path.abspath(initrd),
            "arch": arch,
            "breed": breed,
            "os_version": os_version,
            "kernel_options": kernel_options,
        },
    )
    result["profile"] = _upsert(
        server,
        token,
        "profile",
        profile,
        {
            "distro": distro,
            "autoinstall": autoinstall_name,
            "autoinstall_meta": autoinstall_meta,
            "virt_ram": int(virt_ram),
            "virt_cpus": int(virt_cpus),
            "virt_type": virt_type,
            "virt_file_size": virt_file_size,
        },
    )
    if image:
        result["image"] = _upsert(
            server,
            token,
            "image",
            image,
            {
                "file": os.path.abspath(image_file or kernel),
                "image_type": image_type,
                "arch": arch,
                "breed": breed,
                "os_version": os_version,
                "autoinstall": autoinstall_name,
                "virt_ram": int(virt_ram),
                "virt_cpus": int(virt_cpus),
                "virt_type": virt_type,
                "virt_file_size": virt_file_size,
            },
        )
    if sync:
        server.sync(token)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="Cobbler XML-RPC URL, e.g. http://127.0.0.1:25151/")
    ap.add_argument("kernel")
    ap.add_argument("initrd")
    ap.add_argument("--user", default=os.environ.get("FM_COBBLER_USER", "cobbler"))
    ap.add_argument("--password", default=os.environ.get("FM_COBBLER_PASSWORD", "cobbler"))
    ap.add_argument("--distro", default="fm-tiny")
    ap.add_argument("--profile", default="fm-tiny")
    ap.add_argument("--autoinstall-name", default="fm-tiny.ks")
    ap.add_argument("--image", default="fm-image", help="image name; empty string skips the image")
    ap.add_argument("--sync", action="store_true")
    args = ap.parse_args(argv)
    try:
        result = seed(
            args.url,
            args.user,
            args.password,
            args.kernel,
            args.initrd,
            distro=args.distro,
            profile=args.profile,
            autoinstall_name=args.autoinstall_name,
            image=args.image or None,
            sync=args.sync,
        )
    except xmlrpc.client.Fault as exc:
        print(f"cobbler_seed: Cobbler fault {exc.faultCode}: {exc.faultString}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"cobbler_seed: {exc}", file=sys.stderr)
        return 1
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
