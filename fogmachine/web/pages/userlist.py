"""The admin page's user list as its URL says it: search, role and status filters, sorting, paging.

Every choice lives in the query string (``user_q``, ``user_role``,
``user_status``, ``user_sort``, ``user_page``) beside the guest list's own
arguments, so a filtered, sorted page can be reloaded, bookmarked and sent to
someone; ``listview`` reads and links them as it does the guest lists'. A
value the page never offers is refused as on the guest lists: the page answers
400, lists the users as if that value had not been sent, and says what was
wrong under its field (or above the list, for the order and the page).
"""

from __future__ import annotations

from fogmachine.services.useradmin import ROLES, STATUSES, USER_SORTS, UserFilter
from fogmachine.web.pages import listview
from fogmachine.web.pages.listview import ListSpec, ListView

PAGE_SIZE = 50
SPEC = ListSpec("/admin", "#users", "user_", (listview.one_of("role", ROLES), listview.one_of("status", STATUSES)),
                USER_SORTS, "username")
HEADS: list[tuple[str, str | None]] = [("User", "username"), ("Role", "role"), ("Guests", "guests"),
                                       ("Last login", "last_login"), ("Actions", None)]


def parse(arguments: dict[str, list[bytes]]) -> ListView:
    """The list's choices from the request's query arguments (what is refused takes its default, and its
    message is in ``errors``)."""
    return listview.parse(SPEC, arguments, PAGE_SIZE)


def user_filter(view: ListView) -> UserFilter:
    return UserFilter(search=view.search, role=view.value("role"), status=view.value("status"), sort=view.sort,
                      descending=view.descending, offset=view.offset, limit=view.page_size)
