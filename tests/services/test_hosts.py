"""Host capacity as pages show it, and maintenance switching (administrators only)."""

import pytest

from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent, Host
from fogmachine.db.session import Database
from fogmachine.errors import Conflict, NotFound, PermissionDenied
from fogmachine.services import hosts
from fogmachine.services.actor import Actor

ADMIN = Actor(user_id=None, username="root", is_admin=True)
USER = Actor(user_id=7, username="ann")


@pytest.fixture
def db(database_url):
    database = Database(database_url, threads=2)
    migrate.ensure_schema(database.engine)
    with database.session() as s:
        s.add_all([
            Host(name="a", uri="test:///a", virt_type="test", state="up", total_memory_mb=8192,
                 free_memory_mb=2048, cpus=4, committed_vcpus=6, guest_count=3),
            Host(name="b", uri="test:///b", virt_type="test", state="down", total_memory_mb=4096,
                 free_memory_mb=4096, cpus=2),
            Host(name="gone", uri="test:///g", virt_type="test", state="up", enabled=False, in_config=False),
        ])
    yield database
    database.dispose()


def test_host_dict_and_capacity(db):
    with db.session() as s:
        listed = hosts.list_hosts(s)
        a = hosts.host_to_dict(listed[0], 2.0)
        cap = hosts.capacity(listed, 2.0)
    assert [h.name for h in listed] == ["a", "b", "gone"]
    assert a["memory_used_pct"] == 75 and a["vcpu_capacity"] == 8 and a["vcpus_free"] == 2
    assert a["cpu_used_pct"] == 75 and a["display_state"] == "up"
    # only the enabled host that is up counts as usable capacity
    assert (cap.hosts_total, cap.hosts_usable, cap.memory_total_mb, cap.memory_free_mb) == (3, 1, 8192, 2048)
    assert cap.memory_used_pct == 75 and cap.guests == 3


def test_disable_enable_is_admin_only_and_audited(db):
    with db.session() as s, pytest.raises(PermissionDenied):
        hosts.set_enabled(s, USER, "a", False)
    with db.session() as s:
        host = hosts.set_enabled(s, ADMIN, "a", False)
        assert hosts.display_state(host) == "disabled"
    with db.session() as s:
        assert hosts.get_host(s, "a").enabled is False
        assert hosts.set_enabled(s, ADMIN, "a", True).enabled is True
        actions = [e.action for e in s.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions == ["host.disable", "host.enable"]
    with db.session() as s, pytest.raises(NotFound):
        hosts.set_enabled(s, ADMIN, "nope", True)
    # a host that left virthosts.conf cannot be switched back on
    with db.session() as s, pytest.raises(Conflict, match=r"virthosts\.conf"):
        hosts.set_enabled(s, ADMIN, "gone", True)
