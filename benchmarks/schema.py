"""Strict suite schemas: the value checks of suite keys (``Key``, ``Table``, ``Tables`` and the checks ``integer``,
``number``, ``eps_budget``, ...) and ``validate``, which reports the first unknown key, missing key or invalid value
as a ``SuiteError`` naming it and the expected form. ``benchmarks.common`` re-exports every name."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from art_ext.zoo import ZooModel


class SuiteError(ValueError):
    """A suite, option or reference that cannot run: the runner prints its message as one line and exits with 2."""


# ---- strict suite schemas ----------------------------------------------------------------------------------------
Check = Callable[[Any], "str | None"]  # None when the value is valid, else the expected form


@dataclass(frozen=True)
class Key:
    """One suite key: a value check and whether the key must be present."""

    check: Check
    required: bool = False


@dataclass(frozen=True)
class Table:
    """A TOML table (``[name]``) with its own keys."""

    keys: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Tables:
    """An array of tables (``[[name]]`` or a list of inline tables). With ``variant``, the value of that key picks
    extra keys from ``variants`` (e.g. an attack's ``name`` picks its parameters)."""

    keys: dict[str, Any]
    required: bool = False
    variant: str | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


#: keys every suite may hold, whatever its kind
COMMON_KEYS: dict[str, Any] = {
    "kind": Key(lambda v: None if isinstance(v, str) else "a kind name", required=True),
    "name": Key(lambda v: None if isinstance(v, str) and v else "a non-empty string"),
    "description": Key(lambda v: None if isinstance(v, str) else "a string"),
}


#: the largest integer a suite may hold: counts and sizes become torch int64 values
INT64_MAX = 2 ** 63 - 1


def integer(minimum: int = 1) -> Check:
    """An integer >= ``minimum`` that fits in int64."""
    return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= INT64_MAX else \
        f"an integer >= {minimum} and <= 2**63 - 1"


def number(*, gt: float | None = None, ge: float | None = None, le: float | None = None, lt: float | None = None
           ) -> Check:
    bounds = [f"> {gt:g}" if gt is not None else "", f">= {ge:g}" if ge is not None else "",
              f"< {lt:g}" if lt is not None else "", f"<= {le:g}" if le is not None else ""]
    expected = ("a number " + " and ".join(b for b in bounds if b) if any(bounds) else "a number") + " (finite)"

    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (gt is None or v > gt) and (ge is None or v >= ge) and (lt is None or v < lt) and \
            (le is None or v <= le)
        return None if ok else expected

    return check


def eps_budget(*, grid_min: int = 1) -> Check:
    """The one eps rule of every kind: a finite number > 0 (a budget of 0 is the clean accuracy, the ``none``
    attack), or an eps grid: a list of at least ``grid_min`` strictly increasing finite numbers > 0."""
    positive = number(gt=0)
    expected = (f"a number > 0 (finite) or a list of {grid_min} or more strictly increasing numbers > 0"
                if grid_min > 1 else "a number > 0 (finite) or a list of strictly increasing numbers > 0 (an eps grid)")

    def check(v: Any) -> str | None:
        if isinstance(v, list):
            ok = len(v) >= grid_min and all(positive(e) is None for e in v) and all(
                b > a for a, b in zip(v, v[1:], strict=False))
            return None if ok else expected
        return None if positive(v) is None else expected

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def string(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def choice(*options: str) -> Check:
    return lambda v: None if v in options else "one of " + ", ".join(repr(o) for o in options)


def list_of(item: Check, *, nonempty: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, list) or (nonempty and not v):
            probe = item(None) or "a value"
            return f"a {'non-empty ' if nonempty else ''}list of values, each {probe}"
        for value in v:
            problem = item(value)
            if problem is not None:
                return f"a list whose every value is {problem} (got {value!r} in it)"
        return None

    return check


def zoo_name(kind: str) -> Check:
    """A registered zoo entry of ``kind`` ("classifier" or "denoiser")."""

    def check(v: Any) -> str | None:
        from art_ext import zoo

        if not isinstance(v, str) or v not in zoo.names(kind=kind):
            return f"a zoo {kind} name, one of: {', '.join(zoo.names(kind=kind))}"
        return None

    return check


def denoiser_sigma(denoiser: ZooModel) -> float:
    """The noise level a zoo denoiser removes. ``ZooModel.entry`` is typed as an entry of any kind; what
    ``zoo.load(name, kind="denoiser")`` returns has one of the two denoiser entries."""
    from art_ext.zoo import DenoiserEntry, RescaledLossDenoiserEntry

    entry = denoiser.entry
    if not isinstance(entry, DenoiserEntry | RescaledLossDenoiserEntry):
        raise TypeError(f"zoo entry {entry.name!r} is a {entry.kind}, not a denoiser")
    return float(entry.sigma)


def validate(suite: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    """Check every key of ``suite`` against ``schema`` (plus ``COMMON_KEYS``): the first unknown key, missing key or
    invalid value, in file order, is a ``SuiteError`` naming it and what is expected."""
    _validate_table(suite, {**COMMON_KEYS, **schema}, where, "")


def _validate_table(table: dict[str, Any], schema: dict[str, Any], where: str, prefix: str) -> None:
    for key, value in table.items():
        spec = schema.get(key)
        name = f"{prefix}{key}"
        if spec is None:
            raise SuiteError(f"{where}: unknown key {name!r}; known keys{' of ' + prefix[:-1] if prefix else ''}: "
                             f"{', '.join(sorted(schema))}")
        if isinstance(spec, Key):
            problem = spec.check(value)
            if problem is not None:
                raise SuiteError(f"{where}: {name} = {value!r} is invalid; expected {problem}")
        elif isinstance(spec, Table):
            if not isinstance(value, dict):
                raise SuiteError(f"{where}: {name} must be a table ([{name}])")
            _validate_table(value, spec.keys, where, f"{name}.")
        else:
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise SuiteError(f"{where}: {name} must be a non-empty array of tables ([[{name}]])")
            for i, item in enumerate(value):
                keys = dict(spec.keys)
                if spec.variant is not None:
                    chosen = item.get(spec.variant)
                    if chosen not in spec.variants:
                        raise SuiteError(f"{where}: {name}[{i}].{spec.variant} = {chosen!r} is invalid; expected one "
                                         f"of {', '.join(map(repr, spec.variants))}")
                    keys.update(spec.variants[chosen])
                _validate_table(item, keys, where, f"{name}[{i}].")
    for key, spec in schema.items():
        if getattr(spec, "required", False) and key not in table:
            raise SuiteError(f"{where}: missing key {prefix + key!r}")
