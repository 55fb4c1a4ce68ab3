"""A suite as a typed, frozen spec, validated once before any work (``build``).

``build(suite, kind, where)`` checks the suite against the kind's schema (``common.validate``: every key known, every
value of the expected form; sigma and eps finite, eps by the one rule ``common.eps_budget``, integers within int64),
then what needs more than one key: the kind's own ``check``, every (``n``, ``alpha``) pair able to certify (a top-level
pair or one in a ``[certify]`` table: ``alpha ** (1 / n) > 1/2``), and the config ids of the rows unique (a kind that
lists them with ``config_ids(suite)``); each error names the config and the field. The result is a ``SuiteSpec``: the
fields every kind shares, typed and with their defaults resolved once, and the suite itself as a read-only mapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

from benchmarks import common
from benchmarks.common import SuiteError

#: defaults of the fields every kind shares
DEFAULT_DATASET, DEFAULT_SPLIT, DEFAULT_RESOLUTION = "digits", "test", 16


def frozen(value: Any) -> Any:
    """A read-only deep copy of a TOML value: tables as ``MappingProxyType``, arrays as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


@dataclass(frozen=True)
class SuiteSpec:
    """A validated suite: its name, kind and description, the dataset fields (defaults resolved), its config ids
    in order, and the whole suite read-only (``suite``)."""

    name: str
    kind: str
    description: str
    dataset: str
    split: str
    resolution: int
    limit: int | None
    config_ids: tuple[str, ...]
    suite: Mapping[str, Any]


def can_certify(n: int, alpha: float) -> bool:
    """Whether ``n`` samples can ever certify at ``alpha``: ``n`` agreeing votes give the Clopper-Pearson lower bound
    ``alpha ** (1 / n)``, which must exceed 1/2."""
    return alpha ** (1.0 / n) > 0.5


def check_certifiable(table: Mapping[str, Any], where: str) -> None:
    """A ``SuiteError`` when ``table`` holds an ``n`` that can never certify at its ``alpha``."""
    if "n" not in table or "alpha" not in table:
        return
    n, alpha = table["n"], table["alpha"]
    if not can_certify(n, alpha):
        raise SuiteError(f"{where}n = {n} with alpha = {alpha} can never certify (even {n} agreeing votes give a "
                         f"Clopper-Pearson lower bound alpha**(1/n) = {alpha ** (1.0 / n):.3f} <= 0.5, so every image "
                         f"abstains); use n >= {math.ceil(math.log(alpha) / math.log(0.5)) + 1}")


def check_unique_ids(ids: list[tuple[str, str]]) -> None:
    """A ``SuiteError`` naming the two configs (``where``) whose rows would share a config id."""
    seen: dict[str, str] = {}
    for where, cid in ids:
        if cid in seen:
            raise SuiteError(f"{seen[cid]} and {where} have the same config id {cid!r}: their rows would collide; make "
                             "them differ in a setting that changes the computation, or remove one")
        seen[cid] = where


def build(suite: dict[str, Any], kind: ModuleType, where: str) -> SuiteSpec:
    """Validate ``suite`` for ``kind`` (module docstring) and return its ``SuiteSpec``; raises ``SuiteError``."""
    common.validate(suite, kind.SCHEMA, where)
    try:
        if hasattr(kind, "check"):
            kind.check(suite)
        check_certifiable(suite, "")
        if isinstance(suite.get("certify"), Mapping):
            check_certifiable(suite["certify"], "[certify] ")
        ids = kind.config_ids(suite) if hasattr(kind, "config_ids") else []
        check_unique_ids(ids)
    except SuiteError as err:
        raise SuiteError(f"{where}: {err}") from err
    return SuiteSpec(name=suite["name"], kind=suite["kind"], description=suite.get("description", ""),
                     dataset=str(suite.get("dataset", DEFAULT_DATASET)), split=suite.get("split", DEFAULT_SPLIT),
                     resolution=int(suite.get("resolution", DEFAULT_RESOLUTION)), limit=suite.get("limit"),
                     config_ids=tuple(cid for _, cid in ids), suite=frozen(suite))
