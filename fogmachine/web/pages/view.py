"""Presentation helpers the templates and the live feed share.

``guest_actions`` decides which buttons a guest's row shows for its state.
It is only a courtesy to the user: the lifecycle service checks every action
again and answers "already running" and the like; what the row shows and what
the feed pushes come from this one function so they never disagree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fogmachine.db.models import IN_PROGRESS_STEPS, GuestState, Step, utcnow
from fogmachine.services.checkout.claim import MAX_PURPOSE

RUNNING_STATES = (GuestState.RUNNING, GuestState.BLOCKED)
STOPPED_STATES = (GuestState.SHUTOFF, GuestState.SHUTDOWN, GuestState.CRASHED, GuestState.NOSTATE)
# In the order the buttons appear.
ALL_ACTIONS = ("start", "stop", "restart", "pause", "unpause", "destroy", "refresh", "extend", "delete")
ACTION_LABELS = {
    "start": "Start", "stop": "Stop", "restart": "Restart", "pause": "Pause", "unpause": "Unpause",
    "destroy": "Power off", "refresh": "Refresh", "extend": "Extend", "delete": "Delete",
}
# A row's one primary button: at most one of these is allowed at a time (stopped, paused, running);
# every other action is in the row's "More" menu.
PRIMARY_ACTIONS = ("start", "unpause", "stop")
MORE_ACTIONS = ("restart", "pause", "destroy", "refresh")
# Actions that ask first: the button's script with the question, and without script (or
# without confirm=yes) a page asks instead (templates/confirm.html).
CONFIRMED = {
    "delete": ("Delete {name}?", "The guest is powered off and undefined on {host}; the disk Fogmachine made "
                                 "for it and its Cobbler record are removed. This cannot be undone."),
    "destroy": ("Power off {name}?", "Like pulling the power cord: it stops at once, without shutting down, and "
                                     "whatever it had not written to its disk is lost. Start brings it back."),
    "restart": ("Restart {name}?", "The guest is asked to reboot: what runs on it stops, and whoever is logged "
                                   "in is disconnected."),
}
ACTION_DONE = {
    "start": "started", "stop": "asked to shut down", "restart": "restarting", "pause": "paused",
    "unpause": "running again", "destroy": "powered off", "refresh": "refreshed",
}


# A guest whose lease ends within this much stands out in every guest list (``expiry_badge``).
EXPIRING_SOON = dt.timedelta(hours=24)


def guest_actions(guest: dict[str, Any]) -> list[str]:
    """The actions that make sense for a guest (as ``guest_to_dict`` gives it) right now."""
    if not guest.get("managed", True) or guest.get("step") == Step.RETIRED:
        return []
    state = guest.get("state")
    step = guest.get("step")
    actions: list[str] = []
    if step not in IN_PROGRESS_STEPS:
        if state in STOPPED_STATES:
            actions.append("start")
        if state in RUNNING_STATES:
            actions += ["stop", "restart", "pause"]
        if state == GuestState.PAUSED:
            actions.append("unpause")
        if state in (*RUNNING_STATES, GuestState.PAUSED):
            actions.append("destroy")
        actions.append("refresh")
    actions += ["extend", "delete"]
    return actions


def confirm_question(action: str, guest: dict[str, Any]) -> str:
    """The question (and what it means) that ``action`` asks before it is done to ``guest``."""
    question, meaning = CONFIRMED[action]
    return f"{question} {meaning}".format(name=guest["name"], host=guest.get("host") or "its host")


def confirm_parts(action: str, guest: dict[str, Any]) -> tuple[str, str]:
    """The question and the explanation apart, for the confirmation page."""
    question, meaning = CONFIRMED[action]
    values = {"name": guest["name"], "host": guest.get("host") or "its host"}
    return question.format(**values), meaning.format(**values)


def extend_form(guest_id: int) -> str:
    """The name a guest's extend form goes by when it failed (``forms.FailedForm``, ``form_view``)."""
    return f"extend-{guest_id}"


def parse_iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)


def time_left(expires_at: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
    """'3 d 4 h', '5 h 10 min', '12 min', 'expired' — the short form the rows show."""
    if isinstance(expires_at, str):
        expires_at = parse_iso(expires_at)
    if expires_at is None:
        return "no expiry"
    seconds = int((expires_at - (now or utcnow())).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{max(minutes, 1)} min"


def expiry_badge(expires_at: dt.datetime | str | None, now: dt.datetime | None = None) -> tuple[str, str]:
    """A list's time left and its class: "expires in 5 h 10 min" and ``soon`` within ``EXPIRING_SOON``,
    "expired" and ``expired`` after, else the time left with no class. The words say it, not the colour
    alone; app.js keeps them true while the page stays open (``data-soon-s``)."""
    if isinstance(expires_at, str):
        expires_at = parse_iso(expires_at)
    left = time_left(expires_at, now)
    if expires_at is None:
        return left, ""
    remaining = expires_at - (now or utcnow())
    if remaining <= dt.timedelta(0):
        return left, "expired"
    if remaining <= EXPIRING_SOON:
        return f"expires in {left}", "soon"
    return left, ""


def when(value: dt.datetime | str | None) -> str:
    """A UTC time as the pages print it."""
    return _printed(value, "%Y-%m-%d %H:%M UTC")


def when_exact(value: dt.datetime | str | None) -> str:
    """To the second, for the audit log, where the order of events within a minute matters."""
    return _printed(value, "%Y-%m-%d %H:%M:%S UTC")


def _printed(value: dt.datetime | str | None, fmt: str) -> str:
    """A row's datetime, or the ISO text a payload carries (live updates), in ``fmt``; "-" for none."""
    if isinstance(value, str):
        value = parse_iso(value)
    return "-" if value is None else value.strftime(fmt)


def took(seconds: int | None) -> str:
    """How long a provisioning step took, as the guest page's steps print it; "—" for the step it is at."""
    if seconds is None:
        return "—"
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def mib(value: int | None) -> str:
    """Memory in MiB, printed in GiB from 1 GiB up."""
    value = value or 0
    if value >= 1024:
        return f"{value / 1024:.1f} GiB".replace(".0 GiB", " GiB")
    return f"{value} MiB"


def state_class(state: str | None) -> str:
    return f"state state-{state or 'unknown'}"


NAMESPACE = {
    "max_purpose": MAX_PURPOSE,  # the form's maxlength is the service's own limit
    "guest_actions": guest_actions,
    "action_labels": ACTION_LABELS,
    "all_actions": ALL_ACTIONS,
    "time_left": time_left,
    "expiry_badge": expiry_badge,
    "expiring_soon_s": int(EXPIRING_SOON.total_seconds()),
    "when": when,
    "when_exact": when_exact,
    "took": took,
    "mib": mib,
    "state_class": state_class,
    "primary_actions": PRIMARY_ACTIONS,
    "more_actions": MORE_ACTIONS,
    "confirmed": CONFIRMED,
    "confirm_question": confirm_question,
    "confirm_parts": confirm_parts,
    "extend_form": extend_form,
}
