"""Suite kind ``smoothed_inference``: accuracy of smoothed inference vs M and sigma, clean and under PGD / EPGD
(Nemcovsky et al., arXiv:1911.07198v2, Figs. 1-2 and Table 4).

For each model, split ("val" for selection, "test" for the report), sigma and seed, a chunk of images is attacked
with PGD (one noisy pass per step: EOT with 1 sample, as SIAM's ``PGD_FGSMk``) and EPGD (``epgd_samples`` noisy
passes averaged per step), both ``art_ext.attacks.epgd`` on the base with pixel noise at the smoothing sigma. Clean,
PGD and EPGD inputs are then classified by the three smoothed-inference modes for every M in the grid. The M estimates
are prefixes of one stream of ``max(M)`` draws per image (each estimate is an unbiased M-sample estimate; they are
correlated across M). Ties abstain and count as wrong.

Selection: for each model and mode the (sigma, M) with the best mean *val* accuracy under PGD (ties: smaller M,
then smaller sigma) is chosen; the test split is only reported, never used to choose.

Suite file keys: ``dataset`` ("digits"), ``resolution``, ``models``, ``val_limit``, ``limit`` (test images),
``sigmas``, ``num_samples`` (the M grid), ``modes``, ``seeds`` (number of seeds per split: ``val_seeds``,
``test_seeds``), ``batch_size`` (noisy samples per forward), ``images_per_chunk`` (the unit of resume; the smoothing
noise and the attacks' random starts and EOT noise of an image depend on the run seed, its config and its dataset
index only, ``benchmarks.image_keys``) and an ``[attack]`` table with
``norm``, ``eps``, ``eps_step``, ``max_iter``, ``num_random_init``, ``epgd_samples`` (``SCHEMA``; any other key is
an error).

``--limit N`` bounds both parts: the test images (as the suite's ``limit``) and the val images used for selection
(``min(val_limit, N)``). Without ``--limit`` the val part uses ``val_limit`` images, as before. Seeds and the
(sigma, M) grid are not bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from art_ext import zoo
from art_ext.attacks.epgd import EPGDConfig, epgd
from art_ext.data import digits
from art_ext.smoothing.inference import (
    SmoothedInferenceConfig,
    all_noisy_logits,
    finish,
    labels_from_scores,
    votes,
)
from art_ext.smoothing.keys import NoiseKeys, resolve_keys
from art_ext.types import Norm
from benchmarks import common, specs
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Table
from benchmarks.image_keys import image_keys, noise_fields

log = logging.getLogger("benchmarks")

INPUTS = ("clean", "pgd", "epgd")


SCHEMA = {
    "dataset": Key(common.choice("digits")),  # this kind runs on the embedded digits only
    "resolution": Key(common.integer(8)),
    "models": Key(common.list_of(common.zoo_name("classifier")), required=True),
    "limit": Key(common.integer(1)),
    "val_limit": Key(common.integer(1), required=True),
    "seeds": Key(common.integer(1)),
    "val_seeds": Key(common.integer(1)),
    "test_seeds": Key(common.integer(1)),
    "sigmas": Key(common.list_of(common.number(ge=0)), required=True),
    "num_samples": Key(common.list_of(common.integer(1)), required=True),
    "modes": Key(common.list_of(common.choice("prediction", "weighted", "soft")), required=True),
    "batch_size": Key(common.integer(1), required=True),
    "images_per_chunk": Key(common.integer(1)),
    "attack": Table({
        "norm": Key(common.choice("l2", "linf"), required=True),
        "eps": Key(common.number(gt=0), required=True),
        "eps_step": Key(common.number(gt=0), required=True),
        "max_iter": Key(common.integer(1), required=True),
        "num_random_init": Key(common.integer(0)),
        "epgd_samples": Key(common.integer(1), required=True),
    }, required=True),
}


@dataclass(frozen=True)
class AttackTableSpec:
    """The ``[attack]`` table: PGD / EPGD's threat model and steps (``num_random_init`` 1 unless given)."""

    norm: Norm
    eps: float
    eps_step: float
    max_iter: int
    num_random_init: int
    epgd_samples: int


@dataclass(frozen=True)
class SmoothedInferenceSpec:
    """A ``smoothed_inference`` suite, typed (``from_suite``), every default resolved once: ``val_seeds`` and
    ``test_seeds`` fall back to ``seeds``, then 5."""

    name: str
    description: str
    resolution: int
    models: tuple[str, ...]
    limit: int | None
    val_limit: int
    val_seeds: int
    test_seeds: int
    sigmas: tuple[float, ...]
    num_samples: tuple[int, ...]
    modes: tuple[str, ...]
    batch_size: int
    images_per_chunk: int
    attack: AttackTableSpec

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> SmoothedInferenceSpec:
        """The spec of a suite that passed the schema."""
        a, seeds = suite["attack"], int(suite.get("seeds", 5))
        return cls(
            name=str(suite.get("name", "smoothed_inference")), description=str(suite.get("description", "")),
            resolution=int(suite.get("resolution", specs.DEFAULT_RESOLUTION)), models=tuple(suite["models"]),
            limit=suite.get("limit"), val_limit=int(suite["val_limit"]),
            val_seeds=int(suite.get("val_seeds", seeds)), test_seeds=int(suite.get("test_seeds", seeds)),
            sigmas=tuple(float(s) for s in suite["sigmas"]), num_samples=tuple(int(m) for m in suite["num_samples"]),
            modes=tuple(suite["modes"]), batch_size=int(suite["batch_size"]),
            images_per_chunk=int(suite.get("images_per_chunk", 100)),
            attack=AttackTableSpec(norm=a["norm"], eps=float(a["eps"]), eps_step=float(a["eps_step"]),
                                   max_iter=int(a["max_iter"]), num_random_init=int(a.get("num_random_init", 1)),
                                   epgd_samples=int(a["epgd_samples"])),
        )


def spec_of(suite: Mapping[str, Any] | SmoothedInferenceSpec) -> SmoothedInferenceSpec:
    """The ``SmoothedInferenceSpec`` of a suite (built once per process and suite)."""
    return specs.typed(SmoothedInferenceSpec, suite)


def check(suite: dict[str, Any]) -> None:
    """Rules across keys, before any work: the spec builds (``SmoothedInferenceSpec.from_suite``)."""
    spec_of(suite)


def config_id(model: str, split: str, sigma: float, seed: int) -> str:
    return f"{model}|{split}|sigma={sigma:g}|seed={seed}"


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, config id prefix) of every (model, sigma), for the uniqueness check (a model or sigma listed twice
    would write the same rows twice)."""
    spec = spec_of(suite)
    return [(f"models[{i}] at sigmas[{j}]", config_id(m, "*", s, 0))
            for i, m in enumerate(spec.models) for j, s in enumerate(spec.sigmas)]


def _splits(suite: Mapping[str, Any] | SmoothedInferenceSpec, limit: int | None, limit_option: int | None = None
            ) -> list[tuple[str, int | None, int]]:
    """(split, number of images, number of seeds): val for selection, then test. ``limit`` (``--limit`` or the
    suite's) sets test's size; ``limit_option`` (``--limit`` only) also caps val's."""
    spec = spec_of(suite)
    val_images = spec.val_limit if limit_option is None else min(spec.val_limit, limit_option)
    return [("val", val_images, spec.val_seeds), ("test", limit, spec.test_seeds)]


def _attack_configs(suite: Mapping[str, Any] | SmoothedInferenceSpec, sigma: float) -> tuple[EPGDConfig, EPGDConfig]:
    """PGD (EPGD with one noisy pass per step) and EPGD (``epgd_samples`` passes) at the smoothing sigma."""
    a = spec_of(suite).attack

    def config(eot_samples: int) -> EPGDConfig:
        return EPGDConfig(eps=a.eps, eps_step=a.eps_step, sigma=sigma, max_iter=a.max_iter, norm=a.norm,
                          num_random_init=a.num_random_init, eot_samples=eot_samples)

    return config(1), config(a.epgd_samples)


def evaluate_chunk(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, suite: Mapping[str, Any] | SmoothedInferenceSpec,
    generator: torch.Generator | None = None, *, num_classes: int = 10, keys: NoiseKeys | None = None,
) -> dict[str, Any]:
    """Correct / abstain flags [input][mode] -> bool tensor [B, len(M grid)] for one chunk of images. Image i's
    randomness is keyed by ``keys[i]`` (one per image; ``None``: keys drawn once from ``generator``, not both): the
    PGD / EPGD attacks by ``keys.derive("attack/pgd")`` / ``keys.derive("attack/epgd")``, the smoothing noise of
    input ``name`` by ``keys.derive(name)``."""
    keys = resolve_keys(keys, generator, x.shape[0], x.device)
    spec = spec_of(suite)
    grid = list(spec.num_samples)
    max_m, batch_size, modes = max(grid), spec.batch_size, list(spec.modes)
    pgd_cfg, epgd_cfg = _attack_configs(spec, sigma)
    inputs = {"clean": x, "pgd": epgd(model, x, y, pgd_cfg, keys=keys.derive("attack/pgd"))}
    # sigma = 0: the base is deterministic, EPGD's average of identical gradients is PGD
    inputs["epgd"] = epgd(model, x, y, epgd_cfg, keys=keys.derive("attack/epgd")) if sigma > 0 else inputs["pgd"]
    index = torch.tensor([m - 1 for m in grid], device=x.device)
    counts = torch.tensor(grid, device=x.device, dtype=x.dtype).view(-1, 1, 1)  # [G, 1, 1]
    correct: dict[str, dict[str, torch.Tensor]] = {}
    abstain: dict[str, dict[str, torch.Tensor]] = {}
    with torch.no_grad():
        for name, xi in inputs.items():
            draw_cfg = SmoothedInferenceConfig(sigma, max_m, "prediction", batch_size=batch_size)
            if sigma > 0:
                logits = all_noisy_logits(model, xi, draw_cfg, num_classes=num_classes,
                                          keys=keys.derive(name)).transpose(0, 1)  # [max M, B, K]
            else:
                logits = model(xi).unsqueeze(0).expand(max_m, -1, -1)  # every pass is the base itself
            correct[name], abstain[name] = {}, {}
            for mode in modes:
                cfg = SmoothedInferenceConfig(sigma, max_m, mode, batch_size=batch_size)
                running = votes(logits, cfg).cumsum(dim=0)[index] / counts  # [G, B, K], prefix means
                labels = torch.stack([labels_from_scores(finish(s, cfg)) for s in running], dim=1)  # [B, G]
                correct[name][mode] = labels == y.view(-1, 1)
                abstain[name][mode] = labels < 0
    return {"correct": correct, "abstain": abstain}


def _split_data(spec: SmoothedInferenceSpec, split: str, limit: int | None):
    return digits.load_digits(split, resolution=spec.resolution).head(limit)


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    spec = spec_of(suite)
    chunk = spec.images_per_chunk
    units = []
    for model_name in spec.models:
        for split, limit, num_seeds in _splits(spec, ctx.limit, ctx.limit_option):
            size = len(_split_data(spec, split, limit))
            for sigma, seed in [(s, k) for s in spec.sigmas for k in range(num_seeds)]:
                cid = config_id(model_name, split, sigma, seed)
                for start in range(0, size, chunk):
                    indices = tuple(range(start, min(start + chunk, size)))
                    if all(ctx.is_done(cid, i) for i in indices):
                        continue
                    units.append(Unit(cid, indices, common.seed_for(ctx.seed, cid, start),
                                      {"model": model_name, "split": split, "limit": limit, "sigma": sigma,
                                       "seed": seed}))
    ctx.run_units(units, compute, suite, desc=spec.name)


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one chunk of images of one (model, split, sigma, seed) (``run`` lists the units)."""
    spec = spec_of(suite)
    model_name, split, sigma, seed = unit.spec["model"], unit.spec["split"], unit.spec["sigma"], unit.spec["seed"]
    cid, indices = unit.config, list(unit.indices)
    data = cached(("si-data", split, spec.resolution, unit.spec["limit"]),
                  lambda: _split_data(spec, split, unit.spec["limit"]))
    model = cached(("zoo", model_name, str(env.device)),
                   lambda: zoo.load(model_name, device=env.device, verbose=env.verbose).module)
    x, y = data.x[indices].to(env.device), data.y[indices].to(env.device)
    t0 = time.perf_counter()
    flags = evaluate_chunk(model, x, y, sigma, spec, num_classes=data.num_classes,
                           keys=image_keys(env.seed, cid, indices))
    seconds = (time.perf_counter() - t0) / len(indices)
    as_lists = {key: {name: {mode: t.int().tolist() for mode, t in per_mode.items()}
                      for name, per_mode in per_input.items()} for key, per_input in flags.items()}
    return [
        {
            "kind": "smoothed_inference", "config": cid, "model": model_name, "split": split,
            "sigma": sigma, **noise_fields(sigma), "seed": seed, "index": i, "label": int(data.y[i]),
            "correct": {n: {m: v[j] for m, v in pm.items()} for n, pm in as_lists["correct"].items()},
            "abstain": {n: {m: v[j] for m, v in pm.items()} for n, pm in as_lists["abstain"].items()},
            "seconds": round(seconds, 4),
        }
        for j, i in enumerate(indices)
    ]


# ----------------------------------------------------------------------------------------------------- report


def accuracy_grid(suite: Any, rows: list[dict[str, Any]]) -> dict[tuple, np.ndarray]:
    """(model, split, input, mode, sigma) -> accuracy [seeds, len(M grid)] (abstains count as wrong)."""
    groups: dict[tuple, dict[int, list[list[int]]]] = {}
    for r in rows:
        for name in INPUTS:
            for mode, flags in r["correct"][name].items():
                key = (r["model"], r["split"], name, mode, float(r["sigma"]))
                groups.setdefault(key, {}).setdefault(int(r["seed"]), []).append(flags)
    out = {}
    for key, per_seed in groups.items():
        sizes = {len(v) for v in per_seed.values()}
        if len(sizes) != 1:  # an unfinished seed: report only complete ones
            n = max(sizes)
            per_seed = {s: v for s, v in per_seed.items() if len(v) == n}
        out[key] = np.array([np.mean(np.array(v), axis=0) for _, v in sorted(per_seed.items())])
    return out


def abstain_rates(rows: list[dict[str, Any]]) -> dict[tuple, np.ndarray]:
    """(model, split, input, mode, sigma) -> abstain rate per M (all seeds pooled)."""
    groups: dict[tuple, list[list[int]]] = {}
    for r in rows:
        for name in INPUTS:
            for mode, flags in r["abstain"][name].items():
                groups.setdefault((r["model"], r["split"], name, mode, float(r["sigma"])), []).append(flags)
    return {k: np.mean(np.array(v), axis=0) for k, v in groups.items()}


def select(suite: Mapping[str, Any] | SmoothedInferenceSpec, grid: dict[tuple, np.ndarray], model: str,
           mode: str) -> tuple[float, int] | None:
    """(sigma, M) with the best mean val accuracy under PGD; ties -> smaller M, then smaller sigma."""
    spec = spec_of(suite)
    ms = list(spec.num_samples)
    best, best_key = None, None
    for sigma in sorted(spec.sigmas):
        acc = grid.get((model, "val", "pgd", mode, sigma))
        if acc is None:
            continue
        for j, m in enumerate(ms):
            key = (round(float(acc[:, j].mean()), 10), -m, -sigma)
            if best_key is None or key > best_key:
                best, best_key = (sigma, m), key
    return best


#: what ± means in this kind's tables
CAPTION = rep.uncertainty_caption(rep.SEED_MEAN + ", each seed's accuracy over the same test images")


def seed_cell(acc: np.ndarray | None, j: int) -> str:
    """Mean over seeds ± its standard error, in percent."""
    if acc is None:
        return "–"
    return rep.mean_cell(acc[:, j].tolist(), digits=1, percent=True)


def seed_se(acc: np.ndarray) -> np.ndarray:
    """Standard error of the mean over seeds (axis 0) per M; 0 for one seed (plotted without a bar)."""
    if acc.shape[0] < 2:
        return np.zeros(acc.shape[1])
    return np.array([rep.se_of_mean(acc[:, j].tolist()) for j in range(acc.shape[1])])


def summarize(suite: Mapping[str, Any] | SmoothedInferenceSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    spec = spec_of(suite)
    grid = accuracy_grid(spec, rows)
    ms = list(spec.num_samples)
    selected, table = {}, []
    for model in spec.models:
        base = [grid.get((model, "test", name, "prediction", 0.0)) for name in INPUTS]
        if base[0] is not None:
            table.append({"model": model, "method": "base model (σ = 0, no noise)", "sigma": 0.0, "M": 1,
                          **{name: seed_cell(a, 0) for name, a in zip(INPUTS, base, strict=True)},
                          "seeds": int(base[0].shape[0])})
        for mode in spec.modes:
            choice = select(spec, grid, model, mode)
            if choice is None:
                continue
            sigma, m = choice
            selected[f"{model}/{mode}"] = {"sigma": sigma, "M": m}
            for label, mm in ((f"noise only, M = 1 ({mode})", 1), (f"smoothed {mode}", m)):
                accs = [grid.get((model, "test", name, mode, sigma)) for name in INPUTS]
                if accs[0] is None:
                    continue
                table.append({"model": model, "method": label, "sigma": sigma, "M": mm,
                              **{name: seed_cell(a, ms.index(mm)) for name, a in zip(INPUTS, accs, strict=True)},
                              "seeds": int(accs[0].shape[0])})
    full = {"|".join(map(str, k)): {"mean": a.mean(axis=0).tolist(), "std": a.std(axis=0, ddof=1).tolist()
                                    if a.shape[0] > 1 else [0.0] * a.shape[1], "se": seed_se(a).tolist(),
                                    "seeds": int(a.shape[0])}
            for k, a in sorted(grid.items())}
    return {"selected_on_val": selected, "table": table, "grid": full, "M": ms}


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json``, ``summary.md`` and the plots from the rows (``report.smoothed_inference``)."""
    from benchmarks.report import smoothed_inference as si_report

    spec = spec_of(suite)
    return si_report.write(spec, summarize(spec, rows), rows, out, manifest)
