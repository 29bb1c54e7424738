"""A tier's variables: Jinja2 expressions over what the tiers before it reported, sandboxed and bounded.

A variable is a Jinja2 template string: ``{{ db.ip }}``, ``{{ db.ip }}:5432``,
``{{ web | map(attribute='ip') | join(',') }}``, ``{{ db[1].hostname }}``,
``{{ env.name }}``, ``{{ owner.username }}``. Each earlier tier is a name whose
value is its guests (``TierFacts``): an attribute gives the first guest's,
an index the k-th guest, iteration all of them.

Whoever may save a template writes code that the server runs, so the
evaluation is fenced in three ways, each because the one before leaves a gap:

- Jinja2's ``SandboxedEnvironment`` keeps the expressions away from Python's
  internals (``__class__``, ``__globals__``: ``SecurityError``). Here it is
  narrowed further: attributes only from the facts and a few text methods
  (``_Sandbox.is_safe_attribute``), no ``str.format`` (a width such as
  ``{:>999999999}`` allocates at will), no globals (``range``, ``lipsum``,
  ``cycler``, ``namespace``: nothing a variable needs), and the filters in
  ``FILTERS`` only (``center``, ``indent``, ``wordwrap`` and ``format`` take
  widths; ``random`` would render differently each time).
- Sizes: every operator (intercepted binops), filter and call has its result
  bounded (``MAX_VALUE`` characters or items, numbers to ``MAX_NUMBER_BITS``),
  and ``*`` and ``**`` are refused *before* they compute, so ``'x' * 10**9``
  and ``9**9**9`` cost microseconds. Statements other than ``{% if %}``
  are refused (a ``{% for %}`` nested in a ``{% for %}`` multiplies), so the
  work is linear in the expression, which ``spec`` bounds to 2,000 characters.
- Values: a rendered value must be printable single-line text of at most
  ``MAX_VALUE`` characters: it goes into kernel command lines and Cobbler's
  autoinstall metadata, where a newline or an escape sequence is an injection.

``check`` runs when a template is saved and names the tier and the variable:
a static pass over the AST (names, attributes, subscripts, cycles, escapes)
gives the precise messages, then a dry render on placeholder facts catches
what only shows when it runs. ``render`` is what the engine calls when a tier
starts, with the facts the earlier tiers' guests reported at phone-home.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any, overload

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from fogmachine.errors import FogmachineError, ValidationError
from fogmachine.services.environments.facts import EnvFacts, GuestFacts, OwnerFacts
from fogmachine.services.environments.spec import TemplateSpec

MAX_VALUE = 4096  # characters of a rendered value, and characters or items of anything on the way there
MAX_NUMBER_BITS = 64
MAX_MESSAGE = 300


GUEST_ATTRS = frozenset(f.name for f in fields(GuestFacts))
ENV_ATTRS = frozenset(f.name for f in fields(EnvFacts))
OWNER_ATTRS = frozenset(f.name for f in fields(OwnerFacts))
# Text methods whose result is never longer than the text: enough to cut a host name at its first dot.
STR_METHODS = frozenset({"lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip", "split", "rsplit",
                         "partition", "rpartition", "startswith", "endswith", "removeprefix", "removesuffix"})
FILTERS = frozenset({"join", "map", "first", "last", "length", "count", "lower", "upper", "capitalize", "title",
                     "replace", "trim", "list", "sort", "unique", "reverse", "select", "reject", "selectattr",
                     "rejectattr", "string", "int", "default", "d", "min", "max", "sum", "urlencode"})
# Filters that pass a tier's guests on as they are (so an attribute named after them is a guest's).
_KEEPS_GUESTS = frozenset({"sort", "unique", "reverse", "list", "select", "reject", "selectattr", "rejectattr"})
_ATTRIBUTE_ARG_FILTERS = frozenset({"selectattr", "rejectattr"})  # their first argument names an attribute
# The AST nodes an expression may use: no loops, assignments, macros, includes or blocks.
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Output, nodes.TemplateData, nodes.If, nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem,
    nodes.Slice, nodes.Filter, nodes.Test, nodes.Call, nodes.Keyword, nodes.CondExpr, nodes.Concat,
    nodes.Compare, nodes.Operand, nodes.BinExpr, nodes.UnaryExpr, nodes.List, nodes.Tuple, nodes.Dict,
    nodes.Pair,
)


class VariableError(FogmachineError):
    """A variable could not be rendered from the facts the engine had (a later part fails the environment
    with this message, which names the tier and the variable)."""

    code = "variable_error"


class _Unbounded(Exception):
    """An operation would have made a value beyond the bounds; refused before or right after it ran."""


TOO_LONG = f"refused: a value on the way would be longer than {MAX_VALUE} characters or items"
NESTED = "refused: the expression is nested too deeply"
TOO_BIG = f"refused: a number on the way would need more than {MAX_NUMBER_BITS} bits"


class TierFacts(Sequence[GuestFacts]):
    """A tier's guests as variables see them: ``db.ip`` is the first guest's, ``db[1]`` the second guest,
    ``db | map(attribute='ip')`` every guest's."""

    __slots__ = ("_guests",)

    def __init__(self, guests: Sequence[GuestFacts]) -> None:
        self._guests = tuple(guests)

    @overload
    def __getitem__(self, index: int) -> GuestFacts: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[GuestFacts]: ...

    def __getitem__(self, index: int | slice) -> GuestFacts | Sequence[GuestFacts]:
        return self._guests[index]

    def __len__(self) -> int:
        return len(self._guests)

    def __repr__(self) -> str:
        return f"TierFacts({list(self._guests)!r})"

    @property
    def name(self) -> str:
        return self._guests[0].name

    @property
    def ip(self) -> str:
        return self._guests[0].ip

    @property
    def hostname(self) -> str:
        return self._guests[0].hostname

    @property
    def mac(self) -> str:
        return self._guests[0].mac


_FACT_ATTRS: dict[type, frozenset[str]] = {
    GuestFacts: GUEST_ATTRS, TierFacts: GUEST_ATTRS, EnvFacts: ENV_ATTRS, OwnerFacts: OWNER_ATTRS,
}
_ANY_ATTR = GUEST_ATTRS | ENV_ATTRS | OWNER_ATTRS | STR_METHODS


# -- bounds ----------------------------------------------------------------------------------------

def _bounded(value: Any) -> Any:
    """``value`` if it is within the bounds; an iterator is read into a list (at most MAX_VALUE + 1 items)."""
    if isinstance(value, Iterator):
        value = list(itertools.islice(value, MAX_VALUE + 1))
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_VALUE:
        raise _Unbounded(TOO_LONG)
    if isinstance(value, int) and value.bit_length() > MAX_NUMBER_BITS:
        raise _Unbounded(TOO_BIG)
    return value


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "%": operator.mod, "**": operator.pow,
}


def _binop(op: str, left: Any, right: Any) -> Any:
    """``left op right``, refused before it runs when its result could only be out of bounds."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_VALUE:
                raise _Unbounded(TOO_LONG)
    elif op == "**":
        numbers = (int, float)
        if (isinstance(left, numbers) and isinstance(right, numbers) and abs(left) > 1 and right > 0
                and right * math.log2(abs(left)) > MAX_NUMBER_BITS):
            raise _Unbounded(TOO_BIG)
    elif op == "%" and isinstance(left, str):
        # printf-style widths ('%999999999s') allocate at will, as str.format does; ~ joins text.
        raise _Unbounded("refused: '%' formatting of text (its widths allocate at will; join text with ~)")
    elif (op == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple))
            and len(left) + len(right) > MAX_VALUE):
        raise _Unbounded(TOO_LONG)
    return _bounded(_BINOPS[op](left, right))


def _replace(value: Any, old: Any, new: Any, count: Any = None) -> Any:
    """The replace filter's amplification (every occurrence of ``old`` becomes ``new``), refused beforehand."""
    if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
        occurrences = value.count(old) if old else len(value) + 1
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        if len(value) + occurrences * (len(new) - len(old)) > MAX_VALUE:
            raise _Unbounded(TOO_LONG)
    return None


def _join(value: Any, d: Any = "", attribute: Any = None) -> Any:
    """The join filter's total length, refused beforehand (4,096 items of 4,096 characters each)."""
    if isinstance(value, (list, tuple)) and attribute is None and isinstance(d, str):
        total = sum(len(item) if isinstance(item, str) else 24 for item in value) + len(d) * len(value)
        if total > MAX_VALUE:
            raise _Unbounded(TOO_LONG)
    return None


_PRECHECKS: dict[str, Callable[..., Any]] = {"replace": _replace, "join": _join}


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its result bounded; ``functools.wraps`` keeps Jinja's pass_context/pass_eval_context mark."""
    precheck = _PRECHECKS.get(name)
    takes_context = getattr(fn, "jinja_pass_arg", None) is not None

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if precheck is not None:
            precheck(*(args[1:] if takes_context else args), **kwargs)
        return _bounded(fn(*args, **kwargs))

    return bounded


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, narrowed to the facts and bounded in size (see the module's docstring)."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self) -> None:
        # optimized=False: Jinja's optimizer would evaluate constant expressions (9**9**9) while compiling.
        super().__init__(undefined=StrictUndefined, autoescape=False, optimized=False)
        self.globals.clear()
        self.filters = {name: _bounded_filter(name, JINJA_FILTERS[name]) for name in sorted(FILTERS)}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        allowed = _FACT_ATTRS.get(type(obj), STR_METHODS if isinstance(obj, str) else frozenset())
        return attr in allowed and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        # No str.format at all (the sandbox would wrap it, widths included); is_safe_attribute refuses it.
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return _binop(operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return _bounded(super().call(context, obj, *args, **kwargs))


_SANDBOX = _Sandbox()


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    """The compiled template (parse, then compile): a tier's variables are rendered for each environment."""
    return _SANDBOX.from_string(source)


# -- values ----------------------------------------------------------------------------------------

def value_problem(text: str) -> str | None:
    """Why ``text`` cannot be a variable's value (None: it can): printable, one line, bounded."""
    if len(text) > MAX_VALUE:
        return f"the value is longer than {MAX_VALUE} characters"
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        return (f"the value holds U+{ord(bad):04X}, a control character, line break or invisible character: "
                "values go into kernel command lines and Cobbler's metadata, so they must be one line of "
                "printable text")
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SecurityError):
        text = f"refused by the sandbox: {text}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


def _evaluate(source: str, context: Mapping[str, Any]) -> str:
    try:
        return _compiled(source).render(context)
    except RecursionError:
        raise _Unbounded(NESTED) from None


# -- check: when a template is saved ----------------------------------------------------------------

def _const_text(node: nodes.Node | None) -> list[str]:
    """The text of a constant node, as a list of one (so callers can extend with it); [] for anything else."""
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return [node.value]
    return []


def _const_int(node: nodes.Node) -> int | None:
    """The whole number a constant node is (``1``, or ``-1``, which Jinja parses as Neg(1)); None otherwise."""
    if isinstance(node, nodes.Neg):
        inner = _const_int(node.node)
        return -inner if inner is not None else None
    if isinstance(node, nodes.Const) and type(node.value) is int:
        return node.value
    return None


def _attribute_names(node: nodes.Node) -> list[str]:
    """The attribute names an AST node asks for by name: ``x.name``, ``x['name']``, ``attribute='name'``,
    ``selectattr('name')``."""
    if isinstance(node, nodes.Getattr):
        return [node.attr]
    if isinstance(node, nodes.Getitem):
        return _const_text(node.arg)
    if isinstance(node, nodes.Keyword) and node.key == "attribute":
        return _const_text(node.value)
    if isinstance(node, nodes.Filter) and node.name in _ATTRIBUTE_ARG_FILTERS and node.args:
        return _const_text(node.args[0])
    return []


def _escape(node: nodes.Node) -> str | None:
    """The attribute an AST node reaches for that starts with '_' (Python's internals), if any."""
    for name in _attribute_names(node):
        if any(part.startswith("_") for part in name.split(".")):
            return name
    return None


class _Scope:
    """What one tier's variables may name: the tiers before it (with their counts), env and owner."""

    def __init__(self, spec: TemplateSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.tier = spec.tiers[index]
        self.counts = {t.name: t.count for t in spec.tiers[:index]}

    def available(self) -> str:
        return ", ".join([*self.counts, "env", "owner"])

    def name_problem(self, name: str) -> str | None:
        if name in self.counts or name in ("env", "owner"):
            return None
        where = self.spec.tier_index(name)
        if where == self.index:
            return (f"it names its own tier {name}: nothing is known of a tier's guests before they start, so "
                    f"its variables may only use the tiers before it (a cycle)")
        if where is not None:
            return (f"it names tier {name}, which is not before {self.tier.name} (tier {where} comes after tier "
                    f"{self.index}): {name}'s guests start only once {self.tier.name}'s are ready, so this is "
                    f"a cycle; a variable may only use the tiers before its own")
        return f"unknown tier or name {name!r}: here a variable may use {self.available()}"

    def attrs_of(self, node: nodes.Node) -> tuple[str, frozenset[str]] | None:
        """(what, its attributes) when ``node`` is a tier, one of its guests, env or owner."""
        if isinstance(node, nodes.Name):
            if node.name in self.counts:
                return f"a guest of tier {node.name}", GUEST_ATTRS
            if node.name == "env":
                return "env", ENV_ATTRS
            if node.name == "owner":
                return "owner", OWNER_ATTRS
        if (isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name in self.counts
                and _const_int(node.arg) is not None):
            return f"a guest of tier {node.node.name}", GUEST_ATTRS
        return None

    def subscript_problem(self, node: nodes.Getitem) -> str | None:
        k = _const_int(node.arg)
        if k is None or not (isinstance(node.node, nodes.Name) and node.node.name in self.counts):
            return None
        tier, count = node.node.name, self.counts[node.node.name]
        if -count <= k < count:
            return None
        return (f"{tier}[{k}] is beyond tier {tier}'s {count} guest(s): "
                f"{tier}[0]{f' to {tier}[{count - 1}]' if count > 1 else ''}")

    def attribute_problem(self, owner: nodes.Node, attr: str) -> str | None:
        known = self.attrs_of(owner)
        if known is not None:
            what, attrs = known
            if attr not in attrs:
                return f"unknown attribute {attr!r} of {what}: it has {', '.join(sorted(attrs))}"
            return None
        if attr not in _ANY_ATTR:
            return f"unknown attribute {attr!r}"
        return None

    def guests_source(self, node: nodes.Node) -> bool:
        """True when ``node`` (a filter's input) is a tier's guests, possibly sorted or selected."""
        while isinstance(node, nodes.Filter) and node.name in _KEEPS_GUESTS and node.node is not None:
            node = node.node
        return isinstance(node, nodes.Name) and node.name in self.counts


def _static_problem(ast: nodes.Template, scope: _Scope) -> str | None:
    """The first thing the AST shows to be wrong, in words; None when it looks right."""
    found = list(ast.find_all(nodes.Node))
    for node in found:
        escape = _escape(node)
        if escape is not None:
            return (f"{escape!r} reaches into Python's internals: refused (the sandbox allows only the facts' "
                    "attributes)")
    for node in found:
        if not isinstance(node, _ALLOWED_NODES):
            return (f"{type(node).__name__} is not allowed: a variable is text with {{{{ expressions }}}} "
                    "and {% if %} at most")
    for node in found:
        problem: str | None = None
        if isinstance(node, nodes.Name):
            problem = scope.name_problem(node.name)
        elif isinstance(node, nodes.Getitem):
            problem = scope.subscript_problem(node)
            if (problem is None and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
                    and scope.attrs_of(node.node) is not None):
                problem = scope.attribute_problem(node.node, node.arg.value)
        elif isinstance(node, nodes.Getattr):
            problem = scope.attribute_problem(node.node, node.attr)
        elif isinstance(node, nodes.Filter):
            problem = _filter_problem(node, scope)
        if problem is not None:
            return problem
    return None


def _filter_problem(node: nodes.Filter, scope: _Scope) -> str | None:
    if node.name not in FILTERS:
        return f"unknown filter {node.name!r}: a variable may use {', '.join(sorted(FILTERS))}"
    if node.node is None or not scope.guests_source(node.node):
        return None
    named = [name for kw in node.kwargs for name in _attribute_names(kw)]
    if node.name in _ATTRIBUTE_ARG_FILTERS:
        named.extend(_attribute_names(node))
    for attr in named:
        if attr.split(".")[0] not in GUEST_ATTRS:
            return f"unknown attribute {attr!r} of the guests: they have {', '.join(sorted(GUEST_ATTRS))}"
    return None


def placeholder_context(spec: TemplateSpec, index: int) -> dict[str, Any]:
    """Facts shaped like the real ones (each earlier tier with its count of guests), for the dry render."""
    context: dict[str, Any] = {
        "env": EnvFacts("example", "a placeholder purpose", "example-template"),
        "owner": OwnerFacts("someone", "someone@example.org"),
    }
    for j, tier in enumerate(spec.tiers[:index]):
        guests = []
        for n in range(1, tier.count + 1):
            name = tier.guest_name("example", n)
            guests.append(GuestFacts(name, f"192.0.2.{(j * 20 + n) % 254 + 1}", f"{name}.example.org",
                                     f"52:54:00:00:{j:02x}:{n:02x}"))
        context[tier.name] = TierFacts(guests)
    return context


def _variable_problem(source: str, scope: _Scope, context: Mapping[str, Any]) -> str | None:
    """Why one variable cannot be saved, in words; None when it can."""
    try:
        ast = _SANDBOX.parse(source)
        problem = _static_problem(ast, scope)
    except TemplateSyntaxError as exc:
        return f"syntax error at line {exc.lineno}: {exc.message}"
    except RecursionError:  # Jinja's parser and the AST walk recurse once per level: (((((...)))))
        return NESTED
    if problem is not None:
        return problem
    try:
        text = _evaluate(source, context)
    except Exception as exc:  # the sandbox's own advice: a template may raise anything; each is a refusal
        return _describe(exc)
    return value_problem(text)


def check(spec: TemplateSpec) -> None:
    """Every variable of every tier, as a template is saved: ValidationError naming the tier and variable
    (field ``tiers[i].variables.NAME``) for a syntax error, a cycle, an unknown name, attribute or filter,
    a subscript beyond a tier's count, an escape from the sandbox, or a value that would be out of bounds."""
    for index, tier in enumerate(spec.tiers):
        if not tier.variables:
            continue
        scope = _Scope(spec, index)
        context = placeholder_context(spec, index)
        for name, source in tier.variables.items():
            problem = _variable_problem(source, scope, context)
            if problem is not None:
                raise ValidationError(f"tiers[{index}] ({tier.name}), variable {name}: {problem}",
                                      field=f"tiers[{index}].variables.{name}",
                                      details={"tier": tier.name, "variable": name})


# -- render: when a tier starts ---------------------------------------------------------------------

def render(spec: TemplateSpec, tier_index: int, tiers: Mapping[str, Sequence[GuestFacts]], env: EnvFacts,
           owner: OwnerFacts) -> dict[str, str]:
    """The values of tier ``tier_index``'s variables from the facts the earlier tiers' guests reported;
    VariableError naming the tier and the variable when one cannot be made into printable one-line text."""
    tier = spec.tiers[tier_index]
    context: dict[str, Any] = {"env": env, "owner": owner}
    for earlier in spec.tiers[:tier_index]:
        guests = tiers.get(earlier.name)
        if not guests:
            raise VariableError(f"tier {tier.name}: no facts from tier {earlier.name}'s guests",
                                details={"tier": tier.name, "missing": earlier.name})
        context[earlier.name] = TierFacts(guests)
    values: dict[str, str] = {}
    for name, source in tier.variables.items():
        try:
            text = _evaluate(source, context)
        except Exception as exc:  # as in check: whatever the sandboxed template raises
            raise VariableError(f"tier {tier.name}, variable {name}: {_describe(exc)}",
                                details={"tier": tier.name, "variable": name}) from None
        problem = value_problem(text)
        if problem is not None:
            raise VariableError(f"tier {tier.name}, variable {name}: {problem}",
                                details={"tier": tier.name, "variable": name})
        values[name] = text
    return values
