"""Suite kind ``bn_adaptation``: certification through BN adaptation with Auto-Noise (Nandy et al.), three parts.

1. ``noise_accuracy`` (paper Table 3): top-1 accuracy under one Gaussian draw per test image at each sigma, with and
   without BN adaptation to that sigma, for standard and AT models; one row per (model, sigma, adapted, seed).
2. ``rho`` / ``adaptation_size`` (paper Tables 6-7): accuracy at one sigma vs the Eq. 4 weight rho and vs the number of
   clean adaptation images; one row per (setting, seed).
3. ``certify`` (paper Table 1): certified accuracy at radii and ACR for each ``[[certify.configs]]`` entry, with
   ``adapt`` (Algorithm 1: predictions from f, certificate from the adapted smoothed g only when it agrees with f)
   and ``auto`` (Algorithm 2 / Auto-Noise, else the fixed ``certify.sigma``); one row per test image.

Adaptation images are the first ``adaptation_images`` of the *train* split (disjoint from the test points); for
``adaptation_size`` each seed draws its own random subset of the train split. Every work unit gets its own derived
seed, so ``--resume`` reproduces an uninterrupted run; in part 3 an image's certification noise depends on the run
seed, its config and its dataset index only (``benchmarks.image_keys``), not on ``images_per_chunk`` or ``--limit``.

What ``limit`` bounds: the suite's ``limit`` key is the number of test images certified in part 3. ``--limit N``
bounds every part: part 3 certifies N images and parts 1-2 evaluate the first N test images (without ``--limit``
they use the whole test split, as before). Adaptation images (clean train images for the BN statistics, including
the ``adaptation_sizes`` ablation) and seeds are not bounded: they are part of the method, not the examples.
Suite keys: ``SCHEMA`` (any other key is an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from art_ext import zoo
from art_ext.data import digits
from art_ext.defences import CertificationThroughAdaptation, adapt_batchnorm
from art_ext.smoothing import auto_noise_certify, certify
from art_ext.smoothing.metrics import abstain_rate, average_certified_radius, certified_accuracy
from art_ext.training import accuracy
from benchmarks import common, specs
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Table, Tables
from benchmarks.image_keys import image_keys, noise_fields

log = logging.getLogger("benchmarks")


SCHEMA = {
    "dataset": Key(common.choice("digits")),  # this kind runs on the embedded digits only
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "seeds": Key(common.integer(1), required=True),
    "adaptation_images": Key(common.integer(1), required=True),
    "torch_threads": Key(common.integer(1)),
    "noise_accuracy": Table({
        "models": Key(common.list_of(common.zoo_name("classifier")), required=True),
        "sigmas": Key(common.list_of(common.number(ge=0)), required=True),
    }, required=True),
    "ablation": Table({
        "model": Key(common.zoo_name("classifier"), required=True),
        "sigma": Key(common.number(gt=0), required=True),
        "rhos": Key(common.list_of(common.number(ge=0, le=1)), required=True),
        "adaptation_sizes": Key(common.list_of(common.integer(1)), required=True),
    }, required=True),
    "certify": Table({
        "n0": Key(common.integer(1), required=True),
        "n_auto": Key(common.integer(1), required=True),
        "n": Key(common.integer(1), required=True),
        "alpha": Key(common.number(gt=0, lt=1), required=True),
        "batch_size": Key(common.integer(1), required=True),
        "sigma": Key(common.number(gt=0), required=True),
        "sigmas": Key(common.list_of(common.number(gt=0)), required=True),
        "rho": Key(common.number(ge=0, le=1)),
        "images_per_chunk": Key(common.integer(1)),
        "radii": Key(common.list_of(common.number(ge=0)), required=True),
        "configs": Tables({
            "name": Key(common.string, required=True),
            "model": Key(common.zoo_name("classifier"), required=True),
            "adapt": Key(common.boolean),
            "auto": Key(common.boolean),
        }, required=True),
    }, required=True),
}


# ---- the typed spec ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseAccuracySpec:
    """Part 1: the zoo classifiers and the sigmas of the accuracy table."""

    models: tuple[str, ...]
    sigmas: tuple[float, ...]


@dataclass(frozen=True)
class AblationSpec:
    """Part 2: one model at one sigma, the Eq. 4 weights ``rhos`` and the adaptation set sizes."""

    model: str
    sigma: float
    rhos: tuple[float, ...]
    adaptation_sizes: tuple[int, ...]


@dataclass(frozen=True)
class CertifyConfigSpec:
    """One ``[[certify.configs]]`` table: its config id, name, zoo classifier and Algorithms 1 (``adapt``) and 2
    (``auto``)."""

    id: str
    name: str
    model: str
    adapt: bool
    auto: bool


@dataclass(frozen=True)
class CertifyPartSpec:
    """Part 3: the ``[certify]`` table, its defaults resolved (``rho`` 1.0, ``images_per_chunk`` 10)."""

    n0: int
    n_auto: int
    n: int
    alpha: float
    batch_size: int
    sigma: float
    sigmas: tuple[float, ...]
    rho: float
    images_per_chunk: int
    radii: tuple[float, ...]
    configs: tuple[CertifyConfigSpec, ...]


@dataclass(frozen=True)
class BNAdaptationSpec:
    """A ``bn_adaptation`` suite, typed (``from_suite``), every default resolved once."""

    name: str
    description: str
    resolution: int
    limit: int | None
    seeds: int
    adaptation_images: int
    torch_threads: int | None
    noise_accuracy: NoiseAccuracySpec
    ablation: AblationSpec
    certify: CertifyPartSpec

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> BNAdaptationSpec:
        """The spec of a suite that passed the schema."""
        acc, abl, cert = suite["noise_accuracy"], suite["ablation"], suite["certify"]
        configs = tuple(CertifyConfigSpec(id=certify_config_id(c), name=c["name"], model=c["model"],
                                          adapt=bool(c.get("adapt", False)), auto=bool(c.get("auto", False)))
                        for c in cert["configs"])
        return cls(
            name=str(suite.get("name", "bn_adaptation")), description=str(suite.get("description", "")),
            resolution=int(suite.get("resolution", specs.DEFAULT_RESOLUTION)), limit=suite.get("limit"),
            seeds=int(suite["seeds"]), adaptation_images=int(suite["adaptation_images"]),
            torch_threads=int(suite["torch_threads"]) if suite.get("torch_threads") else None,
            noise_accuracy=NoiseAccuracySpec(tuple(acc["models"]), tuple(float(s) for s in acc["sigmas"])),
            ablation=AblationSpec(abl["model"], float(abl["sigma"]), tuple(float(r) for r in abl["rhos"]),
                                  tuple(int(m) for m in abl["adaptation_sizes"])),
            certify=CertifyPartSpec(
                n0=int(cert["n0"]), n_auto=int(cert["n_auto"]), n=int(cert["n"]), alpha=float(cert["alpha"]),
                batch_size=int(cert["batch_size"]), sigma=float(cert["sigma"]),
                sigmas=tuple(float(s) for s in cert["sigmas"]), rho=float(cert.get("rho", 1.0)),
                images_per_chunk=int(cert.get("images_per_chunk", 10)),
                radii=tuple(float(r) for r in cert["radii"]), configs=configs),
        )


def spec_of(suite: Mapping[str, Any] | BNAdaptationSpec) -> BNAdaptationSpec:
    """The ``BNAdaptationSpec`` of a suite (built once per process and suite)."""
    return specs.typed(BNAdaptationSpec, suite)


def check(suite: dict[str, Any]) -> None:
    """Rules across keys, before any work: the spec builds (``BNAdaptationSpec.from_suite``)."""
    spec_of(suite)


def _data(spec: BNAdaptationSpec, split: str):
    return digits.load_digits(split, resolution=spec.resolution)


def _generator(ctx: common.RunContext | WorkerEnv, *keys: object) -> torch.Generator:
    return torch.Generator(device=ctx.device).manual_seed(common.seed_for(ctx.seed, *keys))


def _model(name: str, env: WorkerEnv) -> torch.nn.Module:
    """A zoo classifier, loaded once per process and part of the run (adaptation works on copies)."""
    return cached(("zoo", name, str(env.device)),
                  lambda: zoo.load(name, device=env.device, verbose=env.verbose).module)


def _test_data(spec: BNAdaptationSpec, limit: int | None):
    return cached(("bn-test", spec.resolution, limit), lambda: _data(spec, "test").head(limit))


def _train_data(spec: BNAdaptationSpec):
    return cached(("bn-train", spec.resolution), lambda: _data(spec, "train"))


def run_noise_accuracy(spec: BNAdaptationSpec, suite, ctx) -> None:
    part = spec.noise_accuracy
    units = []
    for name in part.models:
        for sigma in part.sigmas:
            for adapted in (False, True):
                cid = f"acc/{name}/sigma={sigma:g}/bn={int(adapted)}"
                for seed in range(spec.seeds):
                    if ctx.is_done(cid, seed):
                        continue
                    units.append(Unit(cid, (seed,), common.seed_for(ctx.seed, "noise", name, sigma, seed),
                                      {"part": "noise_accuracy", "model": name, "sigma": sigma,
                                       "adapted": adapted}))
    ctx.run_units(units, compute, suite, desc="noise_accuracy")


def run_rho_and_size(spec: BNAdaptationSpec, suite, ctx) -> None:
    part = spec.ablation
    name, sigma = part.model, part.sigma
    units = []
    for seed in range(spec.seeds):
        noise_seed = common.seed_for(ctx.seed, "ablation-noise", seed)
        for rho in part.rhos:
            cid = f"rho/{name}/sigma={sigma:g}/rho={rho:g}"
            if not ctx.is_done(cid, seed):
                units.append(Unit(cid, (seed,), noise_seed, {"part": "rho", "rho": rho}))
        for size in part.adaptation_sizes:
            cid = f"size/{name}/sigma={sigma:g}/m={size}"
            if not ctx.is_done(cid, seed):
                units.append(Unit(cid, (seed,), noise_seed, {"part": "adaptation_size", "size": size}))
    ctx.run_units(units, compute, suite, desc="ablation")


def certify_config_id(config: Mapping[str, Any]) -> str:
    return f"cert/{config['name']}"


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, config id) of every certify config and noise-accuracy cell, for the uniqueness check."""
    spec = spec_of(suite)
    part = spec.noise_accuracy
    out = [(f"noise_accuracy ({name}, sigma {s!r}, {'adapted' if bn else 'plain'})",
            f"acc/{name}/sigma={s:g}/bn={bn}")
           for name in part.models for s in part.sigmas for bn in (0, 1)]
    return out + [(f"certify.configs[{i}]", c.id) for i, c in enumerate(spec.certify.configs)]


def run_certify(suite: dict[str, Any], ctx: common.RunContext, clean: torch.Tensor, test: Any) -> None:
    """Part 3's units: each config on chunks of the first ``ctx.limit`` images of ``test``."""
    part = spec_of(suite).certify
    data = test.head(ctx.limit)
    chunk = part.images_per_chunk
    units = []
    for index, config in enumerate(part.configs):
        for start in range(0, len(data), chunk):
            indices = tuple(range(start, min(start + chunk, len(data))))
            if all(ctx.is_done(config.id, i) for i in indices):
                continue
            # the unit names its config by position in the suite (picklable for any backend)
            units.append(Unit(config.id, indices, common.seed_for(ctx.seed, config.id),
                              {"part": "certify", "config": index}))
    ctx.run_units(units, compute, suite, desc="certify")


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one unit of any part (``unit.spec["part"]``); the run functions above list the units."""
    spec = spec_of(suite)
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    part_name = unit.spec["part"]
    if part_name == "noise_accuracy":
        return _compute_noise_accuracy(spec, unit, env)
    if part_name in ("rho", "adaptation_size"):
        return _compute_ablation(spec, unit, env)
    return _compute_certify(spec, unit, env)


def _compute_noise_accuracy(spec: BNAdaptationSpec, unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    name, sigma, adapted, seed = unit.spec["model"], unit.spec["sigma"], unit.spec["adapted"], unit.indices[0]
    model = _model(name, env)
    test = _test_data(spec, env.limit_option)  # parts 1-2: the whole split unless --limit is given
    clean = _train_data(spec).x[: spec.adaptation_images]
    # the test noise depends on (model, sigma, seed) only, so with/without BN see the same draws
    gen = torch.Generator(device=env.device).manual_seed(unit.seed)
    if adapted:
        adapted_model = adapt_batchnorm(model, clean, sigma=sigma,
                                        generator=_generator(env, "adapt", name, sigma, seed))
        acc = accuracy(adapted_model, test, sigma=sigma, generator=gen)
    else:
        acc = accuracy(model, test, sigma=sigma, generator=gen)
    return [{"kind": "noise_accuracy", "config": unit.config, "index": seed, "model": name, "sigma": sigma,
             "adapted": adapted, "accuracy": acc, **noise_fields(sigma)}]


def _compute_ablation(spec: BNAdaptationSpec, unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    part = spec.ablation
    name, sigma, m, seed = part.model, part.sigma, spec.adaptation_images, unit.indices[0]
    model = _model(name, env)
    train, test = _train_data(spec), _test_data(spec, env.limit_option)
    noise = torch.Generator(device=env.device).manual_seed(unit.seed)  # every setting sees this seed's test noise
    if unit.spec["part"] == "rho":
        rho = unit.spec["rho"]
        adapted = adapt_batchnorm(model, train.x[:m], sigma=sigma, rho=rho,
                                  generator=_generator(env, "ablation-adapt", seed))
        return [{"kind": "rho", "config": unit.config, "index": seed, "model": name, "sigma": sigma,
                 "rho": rho, "accuracy": accuracy(adapted, test, sigma=sigma, generator=noise),
                 **noise_fields(sigma)}]
    size = unit.spec["size"]
    order = torch.randperm(len(train), generator=_generator(env, "ablation-subset", seed))
    subset = train.x[order[:size]]
    adapted = adapt_batchnorm(model, subset, sigma=sigma, generator=_generator(env, "ablation-adapt", seed))
    return [{"kind": "adaptation_size", "config": unit.config, "index": seed, "model": name,
             "sigma": sigma, "images": size, "accuracy": accuracy(adapted, test, sigma=sigma, generator=noise),
             **noise_fields(sigma)}]


class _CertifyBudget(TypedDict):
    """The sample sizes, confidence and batch size that every certification of the suite shares."""

    n0: int
    n: int
    alpha: float
    batch_size: int


def _compute_certify(spec: BNAdaptationSpec, unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    part, cid, indices = spec.certify, unit.config, list(unit.indices)
    config = part.configs[unit.spec["config"]]
    data = _test_data(spec, env.limit)
    clean = _train_data(spec).x[: spec.adaptation_images]
    common_kw: _CertifyBudget = {"n0": part.n0, "n": part.n, "alpha": part.alpha, "batch_size": part.batch_size}
    model = _model(config.model, env)
    adapt, auto = config.adapt, config.auto
    cta = None
    if adapt:  # adapts lazily per sigma from a seed of its own, so one per process and config gives the same models
        cta = cached(("bn-cta", cid, str(env.device)), lambda: CertificationThroughAdaptation(
            model, clean.to(env.device), num_classes=data.num_classes, sigmas=part.sigmas,
            rho=part.rho, adaptation_seed=common.seed_for(env.seed, cid, "adapt")))
    x = data.x[indices].to(env.device)
    keys = image_keys(env.seed, cid, indices)
    t0 = time.perf_counter()
    if cta is not None:
        certs = cta.certify_auto_noise(x, n_auto=part.n_auto, keys=keys, **common_kw) if auto else \
            cta.certify(x, sigma=part.sigma, keys=keys, **common_kw)
    elif auto:
        certs = auto_noise_certify(lambda s: model, x, sigmas=part.sigmas, n_auto=part.n_auto,
                                   num_classes=data.num_classes, keys=keys, **common_kw)
    else:
        # fixed-sigma smoothing: the output is the certified label itself
        certs = certify(model, x, sigma=part.sigma, num_classes=data.num_classes, keys=keys, **common_kw)
    seconds = (time.perf_counter() - t0) / len(indices)
    label = certs.label.tolist()
    radius = certs.radius.tolist()
    prediction = getattr(certs, "prediction", certs.label).tolist()
    sigma_used = getattr(certs, "sigma", None)
    sigma_used = [part.sigma] * len(indices) if not torch.is_tensor(sigma_used) else sigma_used.tolist()
    return [
        {"kind": "certify", "config": cid, "index": i, "model": config.model, "adapt": adapt,
         "auto": auto, "label": int(data.y[i]), "certified_label": label[j], "radius": radius[j],
         "prediction": prediction[j], "sigma": sigma_used[j], **noise_fields(sigma_used[j]),
         "seconds": round(seconds, 4)}
        for j, i in enumerate(indices)
    ]


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    spec = spec_of(suite)
    run_noise_accuracy(spec, suite, ctx)  # parts 1-2: the whole test split unless --limit is given
    run_rho_and_size(spec, suite, ctx)
    run_certify(suite, ctx, _train_data(spec).x[: spec.adaptation_images], _data(spec, "test"))


# ---- summary (rows only) --------------------------------------------------------------------------------------
def test_images(suite: Mapping[str, Any] | BNAdaptationSpec) -> Any:
    """The suite's whole test split (the report counts the images of parts 1-2 from it)."""
    return _data(spec_of(suite), "test")


def summarize_certify(suite: Mapping[str, Any] | BNAdaptationSpec, rows) -> list[dict[str, Any]]:
    part = spec_of(suite).certify
    radii = list(part.radii)
    out = []
    for config in part.configs:
        cid = config.id
        mine = sorted((r for r in rows if r["config"] == cid), key=lambda r: r["index"])
        if not mine:
            continue
        pair = (np.array([r["certified_label"] for r in mine]), np.array([r["radius"] for r in mine]))
        labels = np.array([r["label"] for r in mine])
        chosen = [r["sigma"] for r in mine]
        accuracy = certified_accuracy(pair, labels, radii)
        output_accuracy = float(np.mean([r["prediction"] == r["label"] for r in mine]))
        out.append({
            "config": cid, "name": config.name, "model": config.model, "adapt": config.adapt,
            "auto": config.auto, "examples": len(mine),
            "certified_accuracy": accuracy,
            "certified_accuracy_se": {r: rep.binomial_se(a, len(mine)) for r, a in accuracy.items()},
            "acr": average_certified_radius(pair, labels),
            "acr_se": rep.se_of_mean(np.where(pair[0] == labels, pair[1], 0.0)),
            "abstain": abstain_rate(pair),
            "prediction_accuracy": output_accuracy,
            "prediction_accuracy_se": rep.binomial_se(output_accuracy, len(mine)),
            "sigma_histogram": {f"{s:g}": chosen.count(s) for s in sorted(set(chosen))},
            "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
        })
    return out


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json``, ``summary.md`` and the plots from the rows (``report.bn_adaptation``)."""
    from benchmarks.report import bn_adaptation as bn_report

    spec = spec_of(suite)
    return bn_report.write(spec, summarize_certify(spec, rows), rows, out, manifest)
