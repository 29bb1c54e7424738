"""A list as its page's URL says it: search, filters, order and page, read from the query string, and the
links that change one of them, so a list can be reloaded, bookmarked, sent to someone and walked with
Back and Forward.

The admin's user list (``userlist``) and the guest lists (``guestlist``) are both read and linked
through here. Each list names its arguments in a ``ListSpec``; a page with two lists (the admin page)
gives one of them a prefix (``user_``), and each list's links and form keep the other's arguments as
they were.

Every value must match its rule whole. ``parse`` never fails: a refused value takes its default and
the list carries a message for it (``errors``); the pages answer 400 with the list as if that value
had not been sent, and the message under its field (or above the list when it has none).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

MAX_PAGE = 100_000  # beyond it a page number would overflow the database's integers
PAGE_RE = re.compile(r"[1-9][0-9]{0,5}")
EN_DASH = "\u2013"


@dataclass(frozen=True)
class Choice:
    """A filter in the URL: its name (before the list's prefix), the rule its value must match whole,
    and what to say about a value that does not. An empty value is always allowed: no filter."""

    key: str
    rule: re.Pattern[str]
    message: str
    field: bool = True  # a field of the list's form (False: its links alone set it, as tabs)


def one_of(key: str, values: tuple[str, ...], what: str = "") -> Choice:
    """A filter that takes one of ``values``."""
    return Choice(key, re.compile("|".join(re.escape(v) for v in values)),
                  f"{what or key} must be one of {', '.join(values)}")


@dataclass(frozen=True)
class ListSpec:
    """One list's arguments: where it is (``path`` and ``anchor``, e.g. "#users"), their ``prefix``,
    the search's longest length, its filters, the columns it sorts by and the order it starts in."""

    path: str
    anchor: str
    prefix: str
    choices: tuple[Choice, ...]
    sorts: tuple[str, ...]
    default_sort: str
    default_descending: bool = False
    max_search: int = 100

    def arg(self, key: str) -> str:
        """The query argument ``key`` goes by in the URL."""
        return self.prefix + key

    @property
    def keys(self) -> tuple[str, ...]:
        return ("q", *(c.key for c in self.choices), "sort", "page")


@dataclass(frozen=True)
class ListView:
    """The list's choices as asked (or their defaults where refused), the messages for what was refused,
    and every other query argument of the page, kept by the list's links."""

    spec: ListSpec
    search: str
    chosen: Mapping[str, str]
    sort: str
    descending: bool
    page: int  # from 0
    page_size: int
    others: tuple[tuple[str, str], ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    typed: Mapping[str, str] = field(default_factory=dict)  # what was sent for the refused ones

    def value(self, key: str) -> str:
        """A filter's value ("" for none)."""
        return self.chosen.get(key, "")

    def shown(self, key: str) -> str:
        """What a field of the form shows: the value in force, or what was typed where it was refused."""
        return self.typed.get(key) or (self.search if key == "q" else self.value(key))

    def error(self, key: str) -> str:
        """What was wrong with the argument ``key`` ("" when nothing was)."""
        return self.errors.get(key, "")

    def loose_errors(self) -> list[str]:
        """The messages that have no field of the form to stand under (the order, the page, a tab, an
        argument this list does not take): said above the list instead."""
        fields = {"q", *(c.key for c in self.spec.choices if c.field)}
        return [message for key, message in self.errors.items() if key not in fields]

    @property
    def offset(self) -> int:
        return self.page * self.page_size

    @property
    def filtered(self) -> bool:
        """Whether the search or a filter of the form narrows the list (a tab does not: it picks the list)."""
        return bool(self.search or any(self.value(c.key) for c in self.spec.choices if c.field))

    def sort_arg(self, sort: str, descending: bool) -> str:
        return ("-" if descending else "") + sort

    def link(self, **changes: str | int) -> str:
        """This page's URL with some of the list's choices changed (by key, without the prefix; paging
        starts again at the first page unless ``page`` is given). Defaults are left out of the URL."""
        spec = self.spec
        values: dict[str, str | int] = {"q": self.search, **{c.key: self.value(c.key) for c in spec.choices},
                                        "sort": self.sort_arg(self.sort, self.descending), "page": 1}
        values.update(changes)
        if values["sort"] == self.sort_arg(spec.default_sort, spec.default_descending):
            values["sort"] = ""
        chosen = [(spec.arg(k), str(values[k])) for k in spec.keys
                  if values[k] != "" and not (k == "page" and str(values[k]) == "1")]
        kept = [*self.others, *chosen]
        return spec.path + ("?" + urlencode(kept) if kept else "") + spec.anchor

    def here(self) -> str:
        """This page of the list, as a link: where an action on one of its rows comes back to."""
        return self.link(page=self.page + 1)

    def sort_link(self, column: str) -> str:
        """A column head's link: sort by it, or turn its order round when it is the order already."""
        flip = self.sort == column and not self.descending
        return self.link(sort=self.sort_arg(column, flip))

    def aria_sort(self, column: str) -> str:
        if self.sort != column:
            return "none"
        return "descending" if self.descending else "ascending"

    def sort_arrow(self, column: str) -> str:
        return {"ascending": " ▲", "descending": " ▼"}.get(self.aria_sort(column), "")

    def hidden_fields(self) -> list[tuple[str, str]]:
        """What the list's search form sends besides its fields: the page's other arguments and the order."""
        order = self.sort_arg(self.sort, self.descending)
        default = self.sort_arg(self.spec.default_sort, self.spec.default_descending)
        tabs = [(self.spec.arg(c.key), self.value(c.key)) for c in self.spec.choices
                if not c.field and self.value(c.key)]
        return [*self.others, *tabs, *([(self.spec.arg("sort"), order)] if order != default else [])]

    def paging(self, total: int) -> Paging:
        return Paging(self.page, self.page_size, total)


@dataclass(frozen=True)
class Paging:
    """Where a page stands in the list ("51 to 100 of 230"), and whether there is a page before and after."""

    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return self.page * self.size + 1

    @property
    def last(self) -> int:
        return min(self.total, (self.page + 1) * self.size)

    @property
    def beyond(self) -> bool:
        """A page after the last one (a link kept while the list shrank)."""
        return self.page > 0 and self.first > self.total

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages

    def text(self) -> str:
        """ "51-100 of 230", with an en dash as a person writes a range; "3 of 3" for a range of one."""
        if self.total == 0 or self.beyond:
            return f"0 of {self.total}"
        if self.first == self.last:
            return f"{self.first} of {self.total}"
        return f"{self.first}{EN_DASH}{self.last} of {self.total}"


def argument(arguments: Mapping[str, list[bytes]], name: str) -> str:
    """The last value of the query argument ``name``, stripped ("" when it is not there)."""
    values = arguments.get(name) or [b""]
    return values[-1].decode("utf-8", "replace").strip()


def parse(spec: ListSpec, arguments: Mapping[str, list[bytes]], page_size: int) -> ListView:
    """The list's choices from the request's query arguments; see the module's docstring for refusals."""
    errors: dict[str, str] = {}
    typed: dict[str, str] = {}

    def refuse(key: str, value: str, message: str) -> None:
        errors[key] = message
        typed[key] = value

    search = argument(arguments, spec.arg("q"))
    if len(search) > spec.max_search or any(ord(c) < 32 or ord(c) == 127 for c in search):
        refuse("q", search, f"the search takes at most {spec.max_search} characters, and no control characters")
        search = ""
    chosen: dict[str, str] = {}
    for choice in spec.choices:
        value = argument(arguments, spec.arg(choice.key))
        if value and not choice.rule.fullmatch(value):
            refuse(choice.key, value, f"{choice.message}, not “{_brief(value)}”")
            value = ""
        chosen[choice.key] = value
    sort, descending = spec.default_sort, spec.default_descending
    sort_text = argument(arguments, spec.arg("sort"))
    if sort_text:
        if sort_text.removeprefix("-") in spec.sorts:
            sort, descending = sort_text.removeprefix("-"), sort_text.startswith("-")
        else:
            refuse("sort", sort_text, f"sort must be one of {', '.join(spec.sorts)} (after '-' the other way "
                                      f"round), not “{_brief(sort_text)}”")
    page = 0
    page_text = argument(arguments, spec.arg("page"))
    if page_text:
        if PAGE_RE.fullmatch(page_text) and int(page_text) <= MAX_PAGE:
            page = int(page_text) - 1
        else:
            refuse("page", page_text, f"page must be a whole number from 1 to {MAX_PAGE}, not “{_brief(page_text)}”")
    mine = {spec.arg(k) for k in spec.keys}
    others = tuple((k, v.decode("utf-8", "replace")) for k, vs in arguments.items() if k not in mine for v in vs)
    return ListView(spec, search, chosen, sort, descending, page, page_size, others, errors, typed)


def _brief(value: str) -> str:
    """A refused value as a message quotes it: short, and with no control character."""
    shown = "".join(c if c.isprintable() else "?" for c in value[:40])
    return shown + ("…" if len(value) > 40 else "")
