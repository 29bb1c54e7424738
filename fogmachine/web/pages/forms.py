"""A form that failed: what was typed and what is wrong, carried to the page that shows it again.

Every form a person fills in (checkout, register, the administrators' new user,
the profile's forms, a guest's extend) fails the same way: post, redirect (303)
to the page the form is on, get. The failure rides to that page in a signed,
HttpOnly cookie read once (``FailedForm``), and the page draws it with
``FormView``: the message under the field that caused it (``aria-invalid`` and
``aria-describedby`` on the field, which gets the focus), or at the top of the
form when no field owns it, and every typed value back in its field. The page
that shows it is an ordinary GET, so Back and reload never ask to send the form
again.

A password or any other secret is never carried: not by the caller's choice
alone, ``FailedForm.of`` drops every value whose name says it is one. The cookie
stays small (``MAX_COOKIE``); a form whose typed text would not fit (several SSH
keys) is shown again in place instead, with the error's status, so nothing typed
is lost (``common.DashboardHandler.form_failed``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tornado.escape import xhtml_escape

from fogmachine.errors import FogmachineError

FORM_COOKIE = "fm_form"
# The signed cookie's value at most, in bytes: browsers keep 4096 per cookie (name and value), and a
# reverse proxy's header buffer (nginx: 8 KB for the whole Cookie line) must still hold the others.
MAX_COOKIE = 3000
MAX_MESSAGE = 500
# A value cut to this when the form has no page to be shown on in place (a guest's extend: a number).
MAX_VALUE = 200
# How long a failed form waits for its page: the redirect follows at once, so minutes are plenty.
MAX_AGE_DAYS = 10 / (24 * 60)
# A value whose name holds one of these is never carried, whatever the caller passes.
SECRET_MARKS = ("password", "secret", "token")


def is_secret(name: str) -> bool:
    return any(mark in name.lower() for mark in SECRET_MARKS)


@dataclass(frozen=True)
class FailedForm:
    """One failed form: its name (unique on its page), the field at fault ("" for none), the message,
    and what was typed."""

    form: str
    field: str
    message: str
    values: Mapping[str, str]

    @classmethod
    def of(cls, form: str, error: FogmachineError, values: Mapping[str, str]) -> FailedForm:
        at_fault = error.details.get("field") if error.details else None
        return cls(form, at_fault if isinstance(at_fault, str) else "", error.message[:MAX_MESSAGE],
                   {name: value for name, value in values.items() if not is_secret(name)})

    def encode(self) -> str:
        return json.dumps({"form": self.form, "field": self.field, "message": self.message,
                           "values": dict(self.values)}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> FailedForm | None:
        """The form a cookie carried, or None for anything that is not one (an old or changed format)."""
        try:
            state = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(state, dict):
            return None
        form, at_fault, message, values = (state.get(k) for k in ("form", "field", "message", "values"))
        if not (isinstance(form, str) and isinstance(at_fault, str) and isinstance(message, str)
                and isinstance(values, dict)):
            return None
        return cls(form, at_fault, message, {k: v for k, v in values.items()
                                             if isinstance(k, str) and isinstance(v, str) and not is_secret(k)})

    def cut(self) -> FailedForm:
        """The same failure with each value cut to ``MAX_VALUE`` characters, to fit a cookie."""
        return replace(self, values={k: v[:MAX_VALUE] for k, v in self.values.items()})

    def without_values(self) -> FailedForm:
        return replace(self, values={})


class FormView:
    """What a template needs to draw one form: the typed values, and the error under its field or at the
    top of the form. With no failure (``failed`` None) every call gives the form as it normally is.

    ``fields`` are the fields the form shows; an error about any other field (or none) is said at the top.
    The markup helpers return HTML for ``{% raw %}``: the message is escaped here.
    """

    def __init__(self, form: str, fields: Iterable[str], failed: FailedForm | None) -> None:
        self.form = form
        self.fields = tuple(fields)
        self._failed = failed if failed is not None and failed.form == form else None

    @property
    def failed(self) -> bool:
        return self._failed is not None

    @property
    def message(self) -> str:
        return self._failed.message if self._failed is not None else ""

    def value(self, name: str, default: Any = "") -> Any:
        """What was typed into ``name`` when the form failed, else ``default`` (the form's usual value)."""
        if self._failed is None:
            return default
        return self._failed.values.get(name, "")

    def checked(self, name: str, default: bool) -> bool:
        """A checkbox (sent as "yes" when ticked): as it was sent, else ``default``."""
        return bool(self.value(name, "yes" if default else "") == "yes")

    def invalid(self, name: str) -> bool:
        return self._failed is not None and self._failed.field == name and name in self.fields

    def error_id(self, name: str = "") -> str:
        return f"{self.form}-{name}-error" if name else f"{self.form}-error"

    def attrs(self, name: str, *, focus: bool = True) -> str:
        """The field's attributes when it is the one at fault: marked, described by its message, focused."""
        if not self.invalid(name):
            return ""
        marks = f'aria-invalid="true" aria-describedby="{self.error_id(name)}"'
        return marks + (" autofocus" if focus else "")

    def error(self, name: str) -> str:
        """The message under the field, when it is the one at fault."""
        if not self.invalid(name):
            return ""
        return f'<span class="field-error" id="{self.error_id(name)}">{xhtml_escape(self.message)}</span>'

    def top(self) -> str:
        """The message at the top of the form, when no field it shows is at fault (a refusal of the whole
        form: too many attempts, no host has room, a backend down). Focused by the page's script."""
        if self._failed is None or self._failed.field in self.fields:
            return ""
        return (f'<p class="flash flash-error form-error" role="alert" id="{self.error_id()}" tabindex="-1">'
                f"{xhtml_escape(self.message)}</p>")
