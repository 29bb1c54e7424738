"""Reading a host on the test driver: what the XML cache keeps, and what makes it read a domain again."""

import xml.etree.ElementTree as ET

import libvirt
import pytest

from fogmachine.virt.errors import silence_libvirt
from fogmachine.virt.inventory import XmlCache, read_snapshot, read_static
from tests.support import testhosts


@pytest.fixture
def host(tmp_path):
    silence_libvirt()
    uri = testhosts.write_host(tmp_path, "h", domains=[
        testhosts.TestDomain("web", memory_mb=512, mac="52:54:00:00:00:01", vnc_port=5901),
        testhosts.TestDomain("db", memory_mb=1024, state="shutoff"),
    ])
    conn = libvirt.open(uri)
    yield conn, read_static(conn), XmlCache()
    conn.close()


def by_name(snapshot):
    return {d.name: d for d in snapshot.domains}


def set_memory(conn, name, mib):
    """Redefine a domain with another memory size, as an admin would with virsh edit."""
    root = ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for tag in ("memory", "currentMemory"):
        node = root.find(tag)
        if node is not None:
            node.set("unit", "MiB")
            node.text = str(mib)
    conn.defineXML(ET.tostring(root, encoding="unicode"))


def test_an_unchanged_host_gives_back_the_same_snapshot(host):
    conn, static, cache = host
    first = read_snapshot(conn, static, cache)
    assert [d.name for d in first.domains] == ["db", "web"]
    assert by_name(first)["web"].vnc_port == 5901 and by_name(first)["web"].mac == "52:54:00:00:00:01"
    assert read_snapshot(conn, static, cache) is first
    assert first.same_as(read_snapshot(conn, static, cache), 0)


def test_a_restart_missed_by_the_events_is_still_seen(host):
    """No event reached the cache (the safety-net resync): the domain's new id makes it read again."""
    conn, static, cache = host
    before = by_name(read_snapshot(conn, static, cache))["web"]
    dom = conn.lookupByName("web")
    dom.destroy()
    dom.create()  # between two reads: the state is the same as before, only the id tells
    after = by_name(read_snapshot(conn, static, cache))["web"]
    assert after.state == "running" and after.domain_id not in (-1, before.domain_id)


def test_a_redefinition_is_read_after_its_event_drops_the_entry(host):
    """A new definition keeps (id, state): the DEFINED event's drop is what makes the XML be read again."""
    conn, static, cache = host
    first = read_snapshot(conn, static, cache)
    set_memory(conn, "db", 2048)
    assert read_snapshot(conn, static, cache) is first  # by design: the cache waits for the event
    cache.drop(by_name(first)["db"].uuid)
    assert by_name(read_snapshot(conn, static, cache))["db"].memory_mb == 2048


def test_a_read_that_overlapped_a_drop_leaves_nothing_behind(host):
    """A read that began before an event dropped an entry may carry the old XML: it is not kept."""
    conn, static, cache = host
    generation = cache.generation
    read_snapshot(conn, static, cache)
    assert cache.last is not None
    stale_entries, stale_last = cache.entries, cache.last
    cache.drop("00000000-0000-0000-0000-000000000000")  # an event for any domain of the host
    cache.commit(generation, stale_entries, stale_last)  # what the overlapping read would hand in
    assert cache.last is None


def test_new_and_removed_domains_change_the_snapshot(host):
    conn, static, cache = host
    first = read_snapshot(conn, static, cache)
    conn.lookupByName("db").undefine()
    second = read_snapshot(conn, static, cache)
    assert [d.name for d in second.domains] == ["web"] and second.facts.guest_count == 1
    assert set(cache.entries) == {by_name(first)["web"].uuid}  # the gone domain's XML is forgotten
    assert not second.same_as(first, 0)
