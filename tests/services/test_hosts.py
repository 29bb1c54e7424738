"""Host capacity as pages show it, and maintenance switching (administrators only)."""

import pytest
from sqlalchemy import select

from fogmachine.db import migrate
from fogmachine.db.models import AuditEvent, Guest, Host, Step
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
                 free_memory_mb=5000, cpus=4, committed_vcpus=1, guest_count=3),
            Host(name="b", uri="test:///b", virt_type="test", state="down", total_memory_mb=4096,
                 free_memory_mb=4096, cpus=2),
            Host(name="gone", uri="test:///g", virt_type="test", state="up", enabled=False, in_config=False),
        ])
    yield database
    database.dispose()


def test_host_dict_and_capacity(db):
    """Free is placement's: total minus what the guests hold (a shut-off one and one being provisioned
    too; a failed one not), whatever the hypervisor reports (5000 MiB here) and whatever runs (1 vCPU)."""
    with db.session() as s:
        a_id = s.scalar(select(Host.id).where(Host.name == "a"))
        for name, ram, vcpus, step, state in (("up1", 4096, 4, Step.READY, "running"),
                                              ("off", 1024, 1, Step.READY, "shutoff"),
                                              ("new", 1024, 1, Step.DEFINING, "undefined"),
                                              ("bad", 2048, 2, Step.FAILED, "undefined")):
            s.add(Guest(name=name, live_name=name, domain_name=name, host_id=a_id, ram_mb=ram, vcpus=vcpus,
                        step=step, state=state))
    with db.session() as s:
        listed = hosts.list_hosts(s)
        a = hosts.host_dicts(s, listed, 2.0)[0]
        cap = hosts.capacity(listed, 2.0, hosts.usage(s, listed))
    assert [h.name for h in listed] == ["a", "b", "gone"]
    assert (a["free_memory_mb"], a["placed_memory_mb"], a["hypervisor_free_memory_mb"]) == (2048, 6144, 5000)
    assert a["memory_used_pct"] == 75 and a["vcpu_capacity"] == 8 and a["vcpus_free"] == 2
    assert a["placed_vcpus"] == 6 and a["committed_vcpus"] == 1
    assert a["cpu_used_pct"] == 75 and a["display_state"] == "up"
    # only the enabled host that is up counts as usable capacity
    assert (cap.hosts_total, cap.hosts_usable, cap.memory_total_mb, cap.memory_free_mb) == (3, 1, 8192, 2048)
    assert cap.memory_used_pct == 75 and cap.guests == 3 and (cap.vcpu_capacity, cap.vcpus_free) == (8, 2)


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
