"""The guest page's service: the status sentence, the step history, the audit timeline, who may see it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from fogmachine.db.models import Guest, GuestState, GuestStep, Step, User, utcnow
from fogmachine.errors import NotFound
from fogmachine.services import audit, expiry, guestview, reconcile
from fogmachine.services.actor import Actor
from fogmachine.services.guestview import StepRow, failed_at, status_sentence
from fogmachine.services.users import create_user

S, G = Step, GuestState


@pytest.mark.parametrize(("step", "state", "reason", "failed_at_step", "sentence"), [
    # provisioning, numbered the same whichever steps a guest skips
    (S.PLACING, G.UNDEFINED, "", None, "Waiting for a host"),
    (S.REGISTERING, G.UNDEFINED, "", None, "Registering with the catalog, step 1 of 5"),
    (S.DEFINING, G.UNDEFINED, "", None, "Defining its virtual machine, step 2 of 5"),
    (S.BOOTING, G.UNDEFINED, "", None, "Booting, step 3 of 5"),
    (S.INSTALLING, G.RUNNING, "", None, "Installing, step 4 of 5"),
    (S.INSTALLING, G.UNKNOWN, "", None,
     "Installing, step 4 of 5; its host does not answer, so its state is unknown"),
    (S.INSTALLING, G.MISSING, "", None, "Gone from its host: delete it or ask an administrator"),
    # ready, by what its host says
    (S.READY, G.RUNNING, "", None, "Ready and running"),
    (S.READY, G.BLOCKED, "", None, "Ready and running (waiting on its host)"),
    (S.READY, G.PAUSED, "", None, "Ready, paused: unpause it to go on"),
    (S.READY, G.SHUTDOWN, "", None, "Ready, shutting down"),
    (S.READY, G.SHUTOFF, "", None, "Ready, powered off: start it to use it"),
    (S.READY, G.CRASHED, "", None, "Ready, but it crashed: start it again"),
    (S.READY, G.NOSTATE, "", None, "Ready, in no particular state: refresh it"),
    (S.READY, G.SUSPENDED, "", None, "Ready, suspended by its own power management"),
    (S.READY, G.UNKNOWN, "", None, "Ready, but its host does not answer, so its state is unknown"),
    (S.READY, G.MISSING, "missing from its host (h1); delete it or ask an admin", None,
     "Gone from its host: delete it or ask an administrator"),
    (S.READY, G.UNDEFINED, "", None, "Ready, but it has no virtual machine on its host"),
    # failed: where, and why
    (S.FAILED, G.UNDEFINED, "no such kernel", S.DEFINING, "Failed at defining: no such kernel"),
    (S.FAILED, G.UNDEFINED, "no such kernel", None, "Failed: no such kernel"),
    (S.FAILED, G.UNDEFINED, "", S.BOOTING, "Failed at booting"),
    # retired: why
    (S.RETIRED, G.UNDEFINED, "deleted by alice", None, "Retired: deleted by alice"),
    (S.RETIRED, G.UNDEFINED, "reservation expired", None, "Retired: reservation expired"),
    (S.RETIRED, G.UNKNOWN, "", None, "Retired"),
])
def test_status_sentence(step, state, reason, failed_at_step, sentence):
    assert status_sentence(step, state, reason, failed_at=failed_at_step) == sentence


def test_status_sentence_of_a_domain_fogmachine_did_not_create():
    assert status_sentence(S.READY, G.RUNNING, managed=False) == \
        "Not created by Fogmachine (shown, never touched); running"
    assert status_sentence(S.READY, G.UNKNOWN, managed=False).endswith("its host does not answer, so its state "
                                                                        "is unknown")


def test_failed_at_is_the_step_before_the_failure():
    rows = [StepRow("defining", "t0", "", 1), StepRow("booting", "t1", "", 1), StepRow("failed", "t2", "x", None)]
    assert failed_at(rows) == "booting"
    assert failed_at(rows[:2]) is None
    assert failed_at([StepRow("failed", "t0", "x", None)]) is None  # made failed (no earlier step recorded)


def _setup(session):
    alice = create_user(session, "alice", "", password_hash="x")
    create_user(session, "bob", "", password_hash="x")
    guest = Guest(name="web1", live_name="web1", domain_name="web1", owner_id=alice.id, target="tiny",
                  step=Step.DEFINING, state=GuestState.UNDEFINED, worker="p1", expires_at=utcnow())
    session.add(guest)
    session.add(Guest(name="legacy", domain_name="legacy", managed=False, step=Step.READY))
    session.flush()
    return guest.id


def _steps(session, guest_id):
    return [(r.step, r.reason) for r in session.scalars(
        select(GuestStep).where(GuestStep.guest_id == guest_id).order_by(GuestStep.id))]


def _advance(session, guest_id, step, reason=""):
    guest = session.get(Guest, guest_id)
    guest.step, guest.step_reason = step, reason


def test_every_change_of_step_is_recorded_in_its_transaction(make_ctx):
    """On each database: the insert and every step change write a row (with the reason the change gave);
    a write that leaves the step as it was, or rolls back, writes none; unmanaged rows have no history."""
    db = make_ctx().db
    gid = db.run_sync(_setup)
    db.run_sync(_advance, gid, Step.BOOTING)
    db.run_sync(_advance, gid, Step.BOOTING, "same step, new reason")  # not a step change

    def rolled_back(session):
        _advance(session, gid, Step.READY)
        session.flush()
        raise NotFound("rolled back")

    with pytest.raises(NotFound):
        db.run_sync(rolled_back)
    # a real writer of the step: reconciliation marks an interrupted checkout failed
    assert db.run_sync(reconcile._mark_failed, gid, "the process died", (Step.BOOTING,))
    assert db.run_sync(_steps, gid) == [("defining", ""), ("booting", ""), ("failed", "the process died")]
    legacy = db.run_sync(lambda s: s.scalar(select(Guest.id).where(Guest.name == "legacy")))
    assert db.run_sync(_steps, legacy) == []


def test_the_history_purge_takes_the_step_rows_with_the_guest(make_ctx):
    db = make_ctx(retired_keep_days="2").db
    gid = db.run_sync(_setup)

    def retire(session):
        expiry.mark_retired(session.get(Guest, gid), "deleted by alice")

    db.run_sync(retire)
    assert db.run_sync(_steps, gid)[-1] == ("retired", "deleted by alice")
    assert db.run_sync(expiry._purge, 2, utcnow()) == 0  # too recent: kept, with its history
    assert len(db.run_sync(_steps, gid)) == 2
    assert db.run_sync(expiry._purge, 2, utcnow() + dt.timedelta(days=3)) == 1
    assert db.run_sync(_steps, gid) == []
    assert db.run_sync(lambda s: s.get(Guest, gid)) is None


def test_the_page_is_the_owners_and_the_administrators(make_ctx):
    db = make_ctx().db
    gid = db.run_sync(_setup)
    ids = db.run_sync(lambda s: {u.username: u.id for u in s.scalars(select(User))})
    alice = Actor(ids["alice"], "alice", remote_addr="192.0.2.1")
    db.run_sync(lambda s: [audit.record(s, alice, f"guest.{a}", object_type="guest", object_id=gid,
                                        object_name="web1", message=a) for a in ("checkout", "extend")])
    db.run_sync(lambda s: audit.record(s, alice, "guest.start", object_type="guest", object_id=gid + 1000))
    db.run_sync(lambda s: audit.record(s, alice, "host.disable", object_type="host", object_id=gid))
    page = db.run_sync(guestview.guest_page, alice, gid)
    assert page["guest"]["name"] == "web1" and page["sentence"] == "Defining its virtual machine, step 2 of 5"
    assert [e["action"] for e in page["events"]] == ["guest.extend", "guest.checkout"]  # this guest's, newest first
    assert page["events"][0]["remote_addr"] == ""  # where from is for administrators
    assert page["console_name"] == "web1" and page["ssh"] == ""
    root = Actor(None, "root", is_admin=True)
    assert db.run_sync(guestview.guest_page, root, gid)["events"][0]["remote_addr"] == "192.0.2.1"
    with pytest.raises(NotFound, match=f"no guest with id {gid}"):  # as if it did not exist
        db.run_sync(guestview.guest_page, Actor(ids["bob"], "bob"), gid)
    with pytest.raises(NotFound, match=f"no guest with id {gid + 1000}"):
        db.run_sync(guestview.guest_page, alice, gid + 1000)


def test_the_timeline_is_limited(make_ctx):
    db = make_ctx().db
    gid = db.run_sync(_setup)
    actor = Actor(None, "expiry", is_admin=True)
    db.run_sync(lambda s: [audit.record(s, actor, "guest.extend", object_type="guest", object_id=gid,
                                        message=str(i)) for i in range(guestview.TIMELINE_LIMIT + 5)])
    page = db.run_sync(guestview.guest_page, actor, gid)
    assert len(page["events"]) == guestview.TIMELINE_LIMIT and page["events_limited"]
    assert page["events"][0]["message"] == str(guestview.TIMELINE_LIMIT + 4)
