"""domainops.undefine: the fullest cleanup the driver knows, and a failure that carries no libvirt error."""

from __future__ import annotations

import libvirt
import pytest

from fogmachine.virt import domainops
from tests.support import testhosts


def bare_error() -> libvirt.libvirtError:
    """What libvirt-python raises when the call failed and the thread's last error was reset meanwhile."""
    libvirt.virResetLastError()
    return libvirt.libvirtError("virDomainUndefineFlags() failed")


def accepted_flags(conn: libvirt.virConnect) -> int:
    """The first of UNDEFINE_FLAGS this driver accepts, found on a scratch domain."""
    scratch = conn.defineXML("<domain type='test'><name>scratch</name><memory>131072</memory>"
                             "<os><type>hvm</type></os></domain>")
    for flags in domainops.UNDEFINE_FLAGS:
        try:
            scratch.undefineFlags(flags)
            return flags
        except libvirt.libvirtError:
            continue
    raise AssertionError("the driver accepts no undefine flags")


class Failing:
    """A test double of one domain (the real one underneath): its first ``bare`` undefines that the driver
    accepts fail with no error; with ``done`` the real undefine happened before (the reason was lost), without
    it nothing was done."""

    def __init__(self, dom: libvirt.virDomain, bare: int, done: bool) -> None:
        self.dom, self.bare, self.done, self.lost = dom, bare, done, 0
        self.accepted = accepted_flags(dom.connect())

    def undefineFlags(self, flags: int) -> None:
        if self.lost < self.bare and not self.done:
            if flags != self.accepted:
                self.dom.undefineFlags(flags)  # a set the driver refuses: its own refusal, with its code
            self.lost += 1
            raise bare_error()
        self.dom.undefineFlags(flags)
        if self.lost < self.bare:
            self.lost += 1
            raise bare_error()

    def connect(self) -> libvirt.virConnect:
        return self.dom.connect()

    def UUIDString(self) -> str:
        return str(self.dom.UUIDString())


@pytest.fixture
def conn(tmp_path):
    uri = testhosts.write_host(tmp_path, "h", domains=[testhosts.TestDomain("web1", state="shutoff")])
    connection = libvirt.open(uri)
    yield connection
    connection.close()


def test_an_error_without_a_reason_for_a_domain_that_is_gone_is_done(conn):
    dom = Failing(conn.lookupByName("web1"), bare=1, done=True)
    domainops.undefine(dom)
    assert dom.lost == 1 and "web1" not in conn.listDefinedDomains()


def test_an_error_without_a_reason_for_a_domain_still_there_is_tried_once_more(conn):
    dom = Failing(conn.lookupByName("web1"), bare=1, done=False)
    domainops.undefine(dom)
    assert dom.lost == 1 and "web1" not in conn.listDefinedDomains()


def test_twice_without_a_reason_is_raised(conn):
    dom = Failing(conn.lookupByName("web1"), bare=2, done=False)
    with pytest.raises(libvirt.libvirtError):
        domainops.undefine(dom)
    assert "web1" in conn.listDefinedDomains()
