"""The kernel command line of a directly booted guest, for local and Cobbler entries."""

from __future__ import annotations

from collections.abc import Callable

from fogmachine.config import Config
from fogmachine.services import checkout as co


def test_kernel_command_lines(make_config: Callable[..., Config]) -> None:
    from fogmachine.catalog import CatalogEntry

    config = make_config(public_url="http://10.0.2.2:8080", cobbler_url="http://cobbler.example.org/cobbler_api")
    local = CatalogEntry("l", "local", 256, 1, 0, "qemu", cmdline="console=ttyS0 x={name} p={phonehome_url}")
    line = co.kernel_cmdline(config, local, "web1", "52:54:00:00:00:01", "tok")
    assert line == ("console=ttyS0 x=web1 p=http://10.0.2.2:8080/guest/52:54:00:00:00:01/set?"
                    "token=tok&hostname=web1")
    redhat = CatalogEntry("p", "profile", 256, 1, 0, "qemu", cmdline="console=ttyS0", breed="redhat")
    assert co.kernel_cmdline(config, redhat, "web1", "m", "t") == \
        "console=ttyS0 ks=http://cobbler.example.org/cblr/svc/op/autoinstall/system/web1"
    debian = CatalogEntry("p", "profile", 256, 1, 0, "qemu", breed="debian")
    assert "auto-install/enable=true priority=critical url=http://cobbler.example.org" in \
        co.kernel_cmdline(config, debian, "web1", "m", "t")
    other = CatalogEntry("p", "profile", 256, 1, 0, "qemu", breed="")
    config = config.replace(cobbler_autoinstall_url="http://10.0.2.2:25152/cblr/svc/op/")
    assert co.kernel_cmdline(config, other, "web1", "m", "t") == \
        "autoinstall=http://10.0.2.2:25152/cblr/svc/op/autoinstall/system/web1"
