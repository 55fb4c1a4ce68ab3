"""The ``compare`` kind's typed spec: a validated suite (``schema.SCHEMA`` and ``schema.check``) as one frozen
dataclass with every default resolved once, which the deployments, attacks, units and summaries read."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from art_ext.types import Norm
from benchmarks.kinds.compare.schema import attacks_for, model_specs

#: the radii of the certify table when the suite names none
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class ModelThreat:
    """A model reference with its threat model: norm and the eps budgets (pixel units, increasing)."""

    model: str
    norm: Norm
    eps: tuple[float, ...]


@dataclass(frozen=True)
class CertifySpec:
    """The ``[certify]`` table: sigma (None: each defence's own, in its noise space), n0, n, alpha, batch size and
    the pixel radii of the table."""

    sigma: float | None
    n0: int
    n: int
    alpha: float
    batch_size: int
    radii: tuple[float, ...]


@dataclass(frozen=True)
class CompareSpec:
    """A ``compare`` suite, typed (``from_suite``)."""

    name: str
    description: str
    dataset: str
    split: str
    resolution: int
    limit: int | None
    chunk: int
    steps: int
    apgd_restarts: int
    nattack_iter: int
    nattack_pop: int
    nattack_queries: int
    autoattack_version: str
    autoattack_attacks: tuple[str, ...] | None
    score_draws: int
    sigma: float
    smoothing_samples: int
    bn_sigma: float
    bn_images: int
    models: tuple[ModelThreat, ...]
    defences: tuple[str, ...]
    attacks: tuple[str, ...]
    attacks_randomized: tuple[str, ...] | None
    certify: CertifySpec | None

    @classmethod
    def from_suite(cls, suite: dict[str, Any]) -> CompareSpec:
        """The spec of a suite that passed ``validate`` and ``check`` (the runner's plan does both)."""
        cert = suite.get("certify")
        sigma = float(suite.get("sigma", 0.25))
        chosen = suite.get("autoattack_attacks")
        return cls(
            name=str(suite.get("name", "compare")), description=str(suite.get("description", "")),
            dataset=str(suite.get("dataset", "digits")), split=str(suite.get("split", "test")),
            resolution=int(suite.get("resolution", 16)), limit=suite.get("limit"), chunk=int(suite.get("chunk", 25)),
            steps=int(suite.get("steps", 20)), apgd_restarts=int(suite.get("apgd_restarts", 1)),
            nattack_iter=int(suite.get("nattack_iter", 200)), nattack_pop=int(suite.get("nattack_pop", 50)),
            nattack_queries=int(suite.get("nattack_queries", 5000)),
            autoattack_version=str(suite.get("autoattack_version", "standard")),
            autoattack_attacks=None if chosen is None else tuple(chosen),
            score_draws=int(suite.get("score_draws", 10)), sigma=sigma,
            smoothing_samples=int(suite.get("smoothing_samples", 16)),
            bn_sigma=float(suite.get("bn_sigma", sigma)), bn_images=int(suite.get("bn_images", 200)),
            models=tuple(ModelThreat(m["model"], m["norm"], tuple(m["eps"])) for m in model_specs(suite)),
            defences=tuple(suite["defences"]), attacks=tuple(suite["attacks"]),
            attacks_randomized=tuple(suite["attacks_randomized"]) if "attacks_randomized" in suite else None,
            certify=None if cert is None else CertifySpec(
                sigma=float(cert["sigma"]) if "sigma" in cert else None, n0=int(cert["n0"]), n=int(cert["n"]),
                alpha=float(cert["alpha"]), batch_size=int(cert.get("batch_size", 1000)),
                radii=tuple(float(r) for r in cert.get("radii", DEFAULT_RADII))),
        )

    def attacks_for(self, defence: str) -> tuple[str, ...]:
        """The attacks run against ``defence`` (``schema.attacks_for``)."""
        return tuple(attacks_for({"attacks": list(self.attacks), **({} if self.attacks_randomized is None else {
            "attacks_randomized": list(self.attacks_randomized)})}, defence))


@functools.lru_cache(maxsize=8)
def _cached(text: str) -> CompareSpec:
    return CompareSpec.from_suite(json.loads(text))


def spec_of(suite: dict[str, Any] | CompareSpec) -> CompareSpec:
    """The spec of ``suite`` (built once per process and suite; a spec is returned as it is)."""
    if isinstance(suite, CompareSpec):
        return suite
    return _cached(json.dumps(suite, sort_keys=True))
