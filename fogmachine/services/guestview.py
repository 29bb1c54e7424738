"""Everything the guest page shows about one guest, read in one unit of work.

The page is for the guest's owner and administrators; anyone else gets the
same "not found" as for a guest that does not exist (``guests.get_guest``), so
ids cannot be probed. The audit timeline is read here and not through
``audit.list_events``, which is for administrators: an owner may see what
happened to their own guest, but not who did it from which address.

``status_sentence`` turns step and state into the one sentence a user reads
first; it is a pure function of the row so that every combination is tested
without a host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fogmachine.db.models import AuditEvent, Guest, GuestState, GuestStep, Step
from fogmachine.services import envview
from fogmachine.services.actor import Actor
from fogmachine.services.guests import get_guest, guest_to_dict
from fogmachine.timestamps import iso_utc

TIMELINE_LIMIT = 50
# The steps a checkout goes through, numbered as the page counts them ("Installing, step 4 of 5"). A guest
# from a catalog source that keeps no record of it starts at defining, one without a phone-home skips
# installing: the numbers stay the same, so step 3 always means booting.
PROVISIONING = (Step.REGISTERING, Step.DEFINING, Step.BOOTING, Step.INSTALLING, Step.READY)
DOING: dict[str, str] = {Step.PLACING: "Waiting for a host",
         Step.WAITING: "Waiting for its environment's earlier tiers to be ready",
         Step.REGISTERING: "Registering with the catalog",
         Step.DEFINING: "Defining its virtual machine", Step.BOOTING: "Booting",
         Step.INSTALLING: "Installing"}
READY_STATES: dict[str, str] = {
    GuestState.RUNNING: "Ready and running",
    GuestState.BLOCKED: "Ready and running (waiting on its host)",
    GuestState.PAUSED: "Ready, paused: unpause it to go on",
    GuestState.SHUTDOWN: "Ready, shutting down",
    GuestState.SHUTOFF: "Ready, powered off: start it to use it",
    GuestState.CRASHED: "Ready, but it crashed: start it again",
    GuestState.NOSTATE: "Ready, in no particular state: refresh it",
    GuestState.SUSPENDED: "Ready, suspended by its own power management",
    GuestState.UNDEFINED: "Ready, but it has no virtual machine on its host",
}
GONE = "Gone from its host: delete it or ask an administrator"
UNREACHABLE = "its host does not answer, so its state is unknown"


def status_sentence(step: str, state: str, reason: str = "", *, managed: bool = True,
                    failed_at: str | None = None) -> str:
    """Step and state in one plain sentence: "Installing, step 4 of 5", "Ready and running",
    "Failed at defining: <reason>", "Retired: deleted by alice"."""
    if not managed:
        now = UNREACHABLE if state == GuestState.UNKNOWN else state
        return f"Not created by Fogmachine (shown, never touched); {now}"
    if step == Step.RETIRED:
        return f"Retired: {reason}" if reason else "Retired"
    if step == Step.FAILED:
        where = f" at {failed_at}" if failed_at and failed_at != Step.FAILED else ""
        return f"Failed{where}: {reason}" if reason else f"Failed{where}"
    if state == GuestState.MISSING:
        return GONE
    if step in DOING:
        sentence = DOING[step]  # StrEnum keys: a plain string finds them
        if step in PROVISIONING:
            sentence += f", step {PROVISIONING.index(step) + 1} of {len(PROVISIONING)}"
        return f"{sentence}; {UNREACHABLE}" if state == GuestState.UNKNOWN else sentence
    if state == GuestState.UNKNOWN:
        return f"Ready, but {UNREACHABLE}"
    return READY_STATES.get(state, f"Ready, {state}")


@dataclass(frozen=True)
class StepRow:
    step: str
    at: str
    reason: str
    took_seconds: int | None  # until the next step began; None for the step it is at


def _steps(session: Session, guest_id: int) -> list[StepRow]:
    rows = list(session.scalars(select(GuestStep).where(GuestStep.guest_id == guest_id)
                                .order_by(GuestStep.at, GuestStep.id)))
    out = []
    for i, row in enumerate(rows):
        took = int((rows[i + 1].at - row.at).total_seconds()) if i + 1 < len(rows) else None
        out.append(StepRow(row.step, iso_utc(row.at) or "", row.reason, took))
    return out


def failed_at(steps: list[StepRow]) -> str | None:
    """The step a failed guest was at when it failed: the one before its last ``failed``."""
    for i in range(len(steps) - 1, 0, -1):
        if steps[i].step == Step.FAILED:
            return steps[i - 1].step if steps[i - 1].step != Step.FAILED else None
    return None


def timeline(session: Session, guest_id: int, *, with_addresses: bool,
             limit: int = TIMELINE_LIMIT) -> list[dict[str, Any]]:
    """The audit events whose object is this guest, newest first; the caller has checked who may see it."""
    rows = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "guest",
                                                    AuditEvent.object_id == str(guest_id))
                           .order_by(AuditEvent.id.desc()).limit(limit))
    return [{"at": iso_utc(e.at), "actor": e.actor_name, "action": e.action, "result": e.result,
             "message": e.message, "remote_addr": e.remote_addr if with_addresses else ""} for e in rows]


def status_parts(session: Session, guest: Guest) -> dict[str, Any]:
    """The parts of the page that follow the guest's row and its steps: the sentence, the reason, the ssh
    line, the steps. The page renders them, and the live feed sends them again whenever the row changes
    (``web/live``), so an open page shows what a reload would; the caller has checked who may see them."""
    steps = _steps(session, guest.id)
    sentence = status_sentence(guest.step, guest.state, guest.step_reason, managed=guest.managed,
                               failed_at=failed_at(steps))
    owner = guest.owner.username if guest.owner is not None else None
    return {
        "sentence": sentence,
        # The reason stands on its own line unless the sentence already says it.
        "reason": guest.step_reason if guest.step_reason and guest.step_reason not in sentence else "",
        "ssh": f"ssh {owner}@{guest.ip}" if owner and guest.ip else "",
        "steps": steps,
        "retired": guest.step == Step.RETIRED,
    }


def guest_page(session: Session, actor: Actor, guest_id: int) -> dict[str, Any]:
    """The guest page's data; NotFound for a guest the actor may not see."""
    guest = get_guest(session, actor, guest_id)
    events = timeline(session, guest.id, with_addresses=actor.is_admin)
    return {
        "guest": guest_to_dict(guest),
        **status_parts(session, guest),
        "events": events,
        "events_limited": len(events) >= TIMELINE_LIMIT,
        # The console log is named after the guest; once retired its name may belong to a new guest.
        "console_name": guest.name if guest.managed and guest.live_name == guest.name else "",
        # A guest of an environment says which and in which tier ("Part of environment lab1 (tier web)").
        "environment": envview.membership(guest),
    }
