"""A suite as a typed, frozen spec, validated once before any work (``build``).

``build(suite, kind, where)`` checks the suite against the kind's schema (``common.validate``: every key known, every
value of the expected form; sigma and eps finite, eps by the one rule ``common.eps_budget``, integers within int64),
then what needs more than one key: the kind's own ``check``, every (``n``, ``alpha``) pair able to certify (a top-level
pair or one in a ``[certify]`` table: ``alpha ** (1 / n) > 1/2``), and the config ids of the rows unique (a kind that
lists them with ``config_ids(suite)``); each error names the config and the field. The result is a ``SuiteSpec``: the
fields every kind shares, typed and with their defaults resolved once, and the suite itself as a read-only mapping.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, TypeVar

from art_ext.attacks.smoothadv import Aggregate
from art_ext.types import Norm
from benchmarks import common
from benchmarks.common import SuiteError

T = TypeVar("T")

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


# ---- the attacks kind ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackSpec:
    """One attack table of the ``attacks`` kind, typed: ``label`` (its name and every parameter as written, the
    config id's part) and the parameters, None where the suite's value or the attack's default applies."""

    name: str
    label: str
    eps: float | None = None
    eps_step: float | None = None
    max_iter: int | None = None
    norm: Norm | None = None
    num_random_init: int = 0
    samples: int | None = None
    aggregate: Aggregate = "softmax"
    nes_iter: int = 200
    pop_size: int = 100
    max_queries: int | None = None
    check_every: int = 5

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> AttackSpec:
        extras = [f"{k}={table[k]}" for k in sorted(table) if k != "name"]
        label = table["name"] + (f"({', '.join(extras)})" if extras else "")
        fields = {k: v for k, v in table.items() if k != "name"}
        for key in ("eps", "eps_step"):
            if key in fields:
                fields[key] = float(fields[key])
        return cls(name=table["name"], label=label, **fields)


@dataclass(frozen=True)
class TargetSpec:
    """One target of the ``attacks`` kind: a model reference, its deployment and the attacks run against it."""

    name: str
    model: str
    deployment: str
    attacks: tuple[AttackSpec, ...]
    sigma: float | None = None
    smoothing_samples: int | None = None
    denoiser: str | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> TargetSpec:
        return cls(name=table["name"], model=table["model"], deployment=table["deployment"],
                   attacks=tuple(AttackSpec.from_table(a) for a in table["attacks"]),
                   sigma=float(table["sigma"]) if "sigma" in table else None,
                   smoothing_samples=table.get("smoothing_samples"), denoiser=table.get("denoiser"))


@dataclass(frozen=True)
class AttacksSpec:
    """An ``attacks`` suite, typed: the dataset fields, the eps grid (``grid``: whether the suite gave a list), the
    threat model, the scoring draws and the targets."""

    name: str
    description: str
    dataset: str
    split: str
    resolution: int
    limit: int | None
    chunk: int
    eps: tuple[float, ...]
    grid: bool
    norm: Norm
    max_iter: int
    score_draws: int
    targets: tuple[TargetSpec, ...]

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> AttacksSpec:
        eps = suite["eps"]
        return cls(name=str(suite.get("name", "attacks")), description=str(suite.get("description", "")),
                   dataset=str(suite.get("dataset", DEFAULT_DATASET)), split=str(suite.get("split", DEFAULT_SPLIT)),
                   resolution=int(suite.get("resolution", DEFAULT_RESOLUTION)), limit=suite.get("limit"),
                   chunk=int(suite.get("chunk", 25)),
                   eps=tuple(float(e) for e in eps) if isinstance(eps, list) else (float(eps),),
                   grid=isinstance(eps, list), norm=suite["norm"], max_iter=int(suite["max_iter"]),
                   score_draws=int(suite.get("score_draws", 10)),
                   targets=tuple(TargetSpec.from_table(t) for t in suite["targets"]))


@functools.lru_cache(maxsize=8)
def _attacks_spec(text: str) -> AttacksSpec:
    return AttacksSpec.from_suite(json.loads(text))


def attacks_spec(suite: Mapping[str, Any] | AttacksSpec) -> AttacksSpec:
    """The ``AttacksSpec`` of a validated ``attacks`` suite (built once per process and suite)."""
    return suite if isinstance(suite, AttacksSpec) else _attacks_spec(json.dumps(suite, sort_keys=True))


# ---- a kind's own spec, built once per process and suite -------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _typed(cls: Any, text: str) -> Any:
    return cls.from_suite(json.loads(text))


def typed(cls: type[T], suite: Mapping[str, Any] | T) -> T:
    """``cls.from_suite(suite)`` of a kind's spec class, built once per process and suite (a spec of ``cls`` is
    returned as it is). The certify, bn_adaptation, smoothed_inference and normalized_noise kinds keep their spec
    class next to their code; ``check(suite)`` builds it, so its errors come before any work."""
    if isinstance(suite, cls):
        return suite
    key: Any = cls  # a class is hashable; mypy's type[T] is not declared so
    return _typed(key, json.dumps(suite, sort_keys=True))
