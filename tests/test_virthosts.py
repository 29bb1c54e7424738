from pathlib import Path

import pytest
from sqlalchemy import select

from fogmachine import virthosts
from fogmachine.db import migrate
from fogmachine.db.models import Guest, Host, Step, User
from fogmachine.db.session import Database
from fogmachine.errors import ConfigError


def test_parse_comments_blank_lines_and_relative_test_uri(tmp_path: Path):
    f = tmp_path / "virthosts.conf"
    f.write_text("# hosts\n\nkvm1, qemu+ssh://root@kvm1/system, kvm  # rack 1\n"
                 "demo, test:demo/a.xml, test\n")
    entries = virthosts.parse(f)
    assert entries == [
        virthosts.HostEntry("kvm1", "qemu+ssh://root@kvm1/system", "kvm"),
        virthosts.HostEntry("demo", f"test://{tmp_path}/demo/a.xml", "test"),
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("kvm1, qemu:///system", "expected 'name, libvirt-uri, virt-type', found 2 field(s)"),
        ("kvm 1, qemu:///system, kvm", "host name 'kvm 1'"),
        ("kvm1, not a uri, kvm", "is not a libvirt URI"),
        ("kvm1, qemu:///system, vmware", "virt type 'vmware'"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, problem: str):
    f = tmp_path / "virthosts.conf"
    f.write_text(f"# first\nok1, qemu:///system, kvm\n{line}\n")
    with pytest.raises(ConfigError) as info:
        virthosts.parse(f)
    assert f"{f}, line 3: " in info.value.message
    assert problem in info.value.message


def test_duplicate_name(tmp_path: Path):
    f = tmp_path / "virthosts.conf"
    f.write_text("a, qemu:///system, kvm\na, qemu:///session, kvm\n")
    with pytest.raises(ConfigError, match="already defined on line 1"):
        virthosts.parse(f)


def test_sync_adds_updates_disables_and_deletes(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path}/fm.db")
    migrate.ensure_schema(db.engine)
    E = virthosts.HostEntry
    with db.session() as s:
        r = virthosts.sync(s, [E("a", "qemu:///system", "kvm"), E("b", "test:///default", "test"),
                               E("c", "test:///default", "test")])
        assert r.added == ["a", "b", "c"]
    with db.session() as s:
        owner = User(username="ann")
        s.add(owner)
        b = s.scalar(select(Host).where(Host.name == "b"))
        s.add(Guest(name="g1", live_name="g1", domain_name="g1", owner=owner, host=b, step=Step.READY))
    with db.session() as s:
        r = virthosts.sync(s, [E("a", "qemu+tcp://x/system", "kvm")])
        assert r.updated == ["a"] and r.disabled == ["b"] and r.deleted == ["c"]
    with db.session() as s:
        hosts = {h.name: h for h in s.scalars(select(Host))}
        assert set(hosts) == {"a", "b"}
        assert hosts["a"].uri == "qemu+tcp://x/system"
        assert not hosts["b"].enabled and not hosts["b"].in_config
        assert s.scalar(select(Guest.host_id)) == hosts["b"].id  # nothing lost
    with db.session() as s:  # back in the file: enabled again
        r = virthosts.sync(s, [E("a", "qemu+tcp://x/system", "kvm"), E("b", "test:///default", "test")])
        assert r.updated == ["b"]
        assert s.scalar(select(Host.enabled).where(Host.name == "b"))
    db.dispose()
