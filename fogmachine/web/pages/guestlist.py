"""The guest lists as their URLs say them: search, filters, sortable columns and paging, on the overview
(your guests), My reservations, the hosts page and the admin page.

The arguments are the same on every page: ``q`` (part of a name, hostname or IP address), ``state``,
``host``, ``owner`` (administrators' lists only), ``sort`` (a column, ``-`` before it for the other way
round), ``page``; the admin page adds ``guests=retired``. ``listview`` reads and links them; the guests
service filters, orders and pages in the database and never shows an actor more than their own guests,
whatever the URL says. Unlike the user list, a value the page never offers is refused: the page answers
400 with the message under its field (or above the list) and shows the list as if that value were left out.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from fogmachine.db.models import GuestState, Step
from fogmachine.services.actor import Actor
from fogmachine.services.guests import GuestFilter
from fogmachine.web.pages import listview
from fogmachine.web.pages.listview import Choice, ListSpec, ListView

PAGE_SIZE = 50
STATES = tuple(s.value for s in GuestState)
STATE = Choice("state", re.compile("|".join(STATES)), "state must be one of the states the list offers")
HOST = Choice("host", re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
              "host must be a host's name: up to 64 letters, digits, '.', '_' or '-'")
OWNER = Choice("owner", re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"),
               "owner must be a user's name: up to 64 letters, digits, '.', '_', '-' or '@'")
RETIRED = Choice("guests", re.compile("retired"), "guests must be retired, or left out for the live guests",
                 field=False)
SORTS = ("name", "state", "host", "expires", "created")
OWNER_REFUSED = "this list shows only your own guests; administrators find anyone's on the admin page"
# Each list's column heads, left to right: (label, the sort it offers or None).
NAME, OWNER_HEAD, STATE_HEAD = ("Guest", "name"), ("Owner", "owner"), ("State", "state")
HOST_HEAD, EXPIRES, CREATED = ("Host", "host"), ("Expires", "expires"), ("Created", "created")
STEP, ADDRESS, ACTIONS = ("Step", None), ("Address", None), ("Actions", None)


def spec(page: str, actor: Actor) -> ListSpec:
    """The list on ``page`` ("mine", "reservations", "host" or "admin") as ``actor`` sees it: the owner
    filter and column only where the list holds other users' guests, that is for administrators."""
    if page == "mine":
        return ListSpec("/", "#guests", "", (STATE, HOST), SORTS, "created")
    if page == "reservations":
        return ListSpec("/guests", "", "", (STATE, HOST), SORTS, "created")
    if page == "host":
        if actor.is_admin:
            return ListSpec("/hosts", "#guests", "", (STATE, HOST, OWNER), (*SORTS, "owner"), "host")
        return ListSpec("/hosts", "#guests", "", (STATE, HOST), SORTS, "host")
    if page == "admin":
        return ListSpec("/admin", "#guests", "", (STATE, HOST, OWNER, RETIRED), (*SORTS, "owner", "retired"),
                        "created")
    raise ValueError(f"no guest list on {page}")


def parse(page: str, actor: Actor, arguments: dict[str, list[bytes]]) -> ListView:
    """The list's choices from the query arguments, with a message for each refused one."""
    list_spec = spec(page, actor)
    view = listview.parse(list_spec, arguments, PAGE_SIZE)
    if not any(c.key == "owner" for c in list_spec.choices) and listview.argument(arguments, "owner"):
        others = tuple((k, v) for k, v in view.others if k != "owner")
        view = replace(view, others=others, errors={**view.errors, "owner": OWNER_REFUSED})
    return view


def guest_filter(view: ListView, *, owner: str | None = None, unmanaged: bool = False) -> GuestFilter:
    """What to ask the guests service for: the view's choices, within ``owner``'s guests when given
    (the lists of your own), with the domains Fogmachine did not make when ``unmanaged`` (administrators)."""
    retired = view.value("guests") == "retired"
    return GuestFilter(owner=owner or view.value("owner") or None, state=view.value("state") or None,
                       host=view.value("host") or None, step=Step.RETIRED if retired else None,
                       search=view.search, include_unmanaged=unmanaged and not retired, sort=view.sort,
                       descending=view.descending, offset=view.offset, limit=view.page_size)


def heads(page: str, view: ListView) -> list[tuple[str, str | None]]:
    """The column heads of the list's table, as ``templates/guest_row.html`` (or ``retired_row.html``)
    draws the cells, with the sorts the list offers."""
    owner = any(c.key == "owner" for c in view.spec.choices)
    if view.value("guests") == "retired":
        return [NAME, OWNER_HEAD, ("Target", None), HOST_HEAD, CREATED, ("Retired", "retired"), ("Reason", None)]
    columns = [NAME, *([OWNER_HEAD] if owner else []), STATE_HEAD, STEP, ADDRESS, HOST_HEAD, EXPIRES, CREATED]
    return [*columns, *([ACTIONS] if page in ("reservations", "admin") else [])]


def takes_new_rows(view: ListView, total: int) -> str:
    """Which guests the live page may add to this list when it hears of them (``data-insert`` for
    static/live.js): only an unfiltered list in the order guests are made knows where one goes. "all"
    when that list is on one page (any guest it lacks belongs, in id order), "new" on the last of
    several (a guest newer than every row: at the end), else "no"."""
    if view.filtered or view.value("guests") == "retired" or (view.sort, view.descending) != ("created", False):
        return "no"
    paging = view.paging(total)
    if paging.has_next or paging.beyond:
        return "no"
    return "all" if paging.pages == 1 else "new"


def template_values(page: str, view: ListView, total: int, host_names: list[str]) -> dict[str, Any]:
    """What the list's part of a page (``templates/guest_list.html``) needs besides its rows; the host
    filter offers ``host_names``."""
    return {"lv": view, "paging": view.paging(total), "heads": heads(page, view),
            "inserts": takes_new_rows(view, total), "guest_states": STATES, "host_names": host_names}
