"""The admin page's user list as its URL says it: search, role and status filters, sorting, paging.

Every choice lives in the query string (``user_q``, ``user_role``,
``user_status``, ``user_sort``, ``user_page``) beside the guest list's own
arguments, so a filtered, sorted page can be reloaded, bookmarked and sent to
someone. A value the page never offers falls back to its default rather than
failing: these are links and a form of the page itself, not data to store.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fogmachine.services.useradmin import ROLES, STATUSES, USER_SORTS, UserFilter

PAGE_SIZE = 50
MAX_PAGE = 100_000
MAX_SEARCH = 100
PARAMS = ("user_q", "user_role", "user_status", "user_sort", "user_page")
SORT_LABELS = {"username": "User", "role": "Role", "guests": "Guests", "last_login": "Last login"}


@dataclass(frozen=True)
class UserListView:
    """What the template needs: the filter as asked, the page, and every other query argument to keep."""

    search: str
    role: str
    status: str
    sort: str
    descending: bool
    page: int
    others: tuple[tuple[str, str], ...]

    @property
    def filter(self) -> UserFilter:
        return UserFilter(search=self.search, role=self.role, status=self.status, sort=self.sort,
                          descending=self.descending, offset=self.page * PAGE_SIZE, limit=PAGE_SIZE)

    @property
    def filtered(self) -> bool:
        return bool(self.search or self.role or self.status)

    def link(self, **changes: str | int) -> str:
        """This page's URL with some of the list's choices changed (paging restarts unless given)."""
        values: dict[str, str | int] = {"user_q": self.search, "user_role": self.role, "user_status": self.status,
                                        "user_sort": ("-" if self.descending else "") + self.sort, "user_page": 1}
        values.update(changes)
        if values["user_sort"] == "username":
            values["user_sort"] = ""
        chosen = [(k, str(v)) for k, v in values.items() if v != "" and not (k == "user_page" and v == 1)]
        kept = [*self.others, *chosen]
        return "/admin?" + urlencode(kept) + "#users" if kept else "/admin#users"

    def sort_link(self, column: str) -> str:
        """A column head's link: sort by it, or turn its order round when it is the order already."""
        flip = self.sort == column and not self.descending
        return self.link(user_sort=("-" if flip else "") + column)

    def aria_sort(self, column: str) -> str:
        if self.sort != column:
            return "none"
        return "descending" if self.descending else "ascending"


def parse(arguments: dict[str, list[bytes]]) -> UserListView:
    """The list's choices from the request's query arguments."""
    def one(name: str) -> str:
        values = arguments.get(name) or [b""]
        return values[-1].decode("utf-8", "replace").strip()

    search = one("user_q")[:MAX_SEARCH]
    role = one("user_role") if one("user_role") in ROLES else ""
    status = one("user_status") if one("user_status") in STATUSES else ""
    sort_arg = one("user_sort")
    descending = sort_arg.startswith("-")
    sort = sort_arg.lstrip("-")
    if sort not in USER_SORTS:
        sort, descending = "username", False
    try:
        page = min(max(0, int(one("user_page") or "1") - 1), MAX_PAGE)
    except ValueError:
        page = 0
    others = tuple((k, v.decode("utf-8", "replace")) for k, vs in arguments.items() if k not in PARAMS for v in vs)
    return UserListView(search, role, status, sort, descending, page, others)
