"""What a page's live socket receives: guest rows as the pages show them, and each message's JSON text.

A row here must look like the row the page rendered (the same actions, the
same printed expiry), or ``static/live.js`` would patch a row into something
the server never drew. The same holds for the guest page (``page_payload``):
its sentence, reason, ssh line and steps come from the functions that
render the page (``services.guestview.status_parts``, ``pages.view``),
printed here as the template prints them: the script only puts text in
place. Host rows go out as ``services.hosts.host_dicts`` makes
them for the hosts page and the API, so they need nothing here.

A message is encoded once however many pages get it: administrators, the tabs
of one user and (when only hosts changed) everyone get the same text, and
encoding it per socket would repeat the same work for every open page.
"""

from __future__ import annotations

from typing import Any

from fogmachine.db.models import Guest
from fogmachine.services.guests import guest_to_dict
from fogmachine.web.base import to_json
from fogmachine.web.pages.view import guest_actions, took, when, when_exact

# Fields of a guest that its rows never show: a change in them alone is no news.
QUIET_FIELDS = ("updated_at",)


def guest_payload(guest: Guest) -> dict[str, Any]:
    """A guest as its row on the page shows it, with the owner id the feed filters on."""
    data = guest_to_dict(guest)
    data["owner_id"] = guest.owner_id
    data["actions"] = guest_actions(data)
    data["expires_text"] = when(data["expires_at"])
    for name in QUIET_FIELDS:
        data.pop(name, None)
    return data


def page_payload(guest: Guest, parts: dict[str, Any]) -> dict[str, Any]:
    """A guest as its page shows it: its row (``guest_payload``, with the owner id the feed filters on) and
    the parts ``guestview.status_parts`` gives, the steps' times and durations printed."""
    data = guest_payload(guest)
    data.update(sentence=parts["sentence"], reason=parts["reason"], ssh=parts["ssh"], retired=parts["retired"])
    data["retired_text"] = when(data["retired_at"]) if data["retired_at"] else ""
    data["steps"] = [{"step": s.step, "at": s.at, "at_text": when_exact(s.at), "took_text": took(s.took_seconds),
                      "reason": s.reason} for s in parts["steps"]]
    return data


class Messages:
    """The JSON texts of one fan-out, each made once for all the pages it goes to.

    Within one fan-out the hosts of a kind of message are one list and a guest
    id is one row, so (kind, guest ids, gone ids) names a message. A new
    ``Messages`` per fan-out: the next poll's rows differ.
    """

    def __init__(self) -> None:
        self._texts: dict[tuple[str, tuple[int, ...], tuple[int, ...]], str] = {}

    def text(self, kind: str, hosts: list[dict[str, Any]], guests: list[dict[str, Any]], gone: list[int]) -> str:
        key = (kind, tuple(g["id"] for g in guests), tuple(gone))
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = to_json({"type": kind, "hosts": hosts, "guests": guests, "gone": gone})
        return text

    def page(self, guest: dict[str, Any]) -> str:
        """The message for the pages of one guest (``page_payload``)."""
        key = ("page", (guest["id"],), ())
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = to_json({"type": "page", "guest": guest})
        return text
