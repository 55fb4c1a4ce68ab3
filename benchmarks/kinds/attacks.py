"""Suite kind ``attacks``: accuracy under PGD, BPDA-PGD, EPGD, SmoothAdv and NAttack for a standard model, a
defended (quantised) model, a noise-trained model under soft smoothed inference and a denoiser + classifier
pipeline under soft smoothing; every final adversarial example is scored over k draws of the deployed
randomized model (mean and worst-case accuracy, ``art_ext.attacks.score_randomized``).

Suite file keys: ``dataset`` (a dataset reference: "digits", "cifar10", "imagefolder:<path>"), ``split``,
``resolution`` (digits only), ``limit``, ``chunk`` (images attacked together; the unit of resume: an image's attack
randomness and scoring draws depend on the run seed, its config and its dataset index only, ``benchmarks.image_keys``,
except NAttack's queries of a randomized target, see ``attack_unit``), ``eps`` (one radius, or a list: an eps grid at
which every attack without its own ``eps`` runs; its config ids then end in ``@eps=<e>``), ``norm``, ``max_iter``,
``score_draws`` (k), and ``[[targets]]`` tables: ``name``, ``model`` (any model reference: a zoo name, ``zoo:``,
``robustbench:``, ``torchvision:``, ``file:``), ``deployment`` ("plain" | "quantised" | "smoothed" |
"denoised"), ``sigma``, ``smoothing_samples`` (M of the deployed soft smoothing), ``denoiser`` (zoo name, denoised
only) and ``attacks`` (list of attack tables with ``name`` and parameters, see ``SCHEMA``; any other key is an
error). ``--limit`` bounds the number of images every (target, attack) pair attacks and scores.

Work units (each with seeds derived from the run seed, the config id and its first image): per target, its clean
unit (config ``<target>/clean``: each image scored over k draws once; every attack row of the target reads its
clean accuracy from these rows, and the ``none`` attack *is* this unit, so its robust accuracy equals the clean
accuracy), then one unit per (attack, eps, chunk of images). A target's models are loaded (and trained on first
use) once, before any timed work: ``seconds`` is the attack's time per image (the clean unit's: the scoring's).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from art_ext import zoo
from art_ext.attacks import (
    EPGDConfig,
    NAttackConfig,
    PGDConfig,
    SmoothAdvConfig,
    epgd,
    nattack,
    pgd,
    smoothadv_pgd,
)
from art_ext.attacks.bpda_pgd import warn_if_unreachable
from art_ext.deployment import Deployment, declared_noise
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace
from art_ext.types import Norm
from benchmarks import common, references
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables
from benchmarks.image_keys import image_keys, noise_fields, score_deployment
from benchmarks.specs import AttackSpec, AttacksSpec, TargetSpec, attacks_spec

log = logging.getLogger("benchmarks")


_ATTACK_BASE = {  # every attack reads these through _pgd_config
    "name": Key(common.choice("none", "pgd", "bpda_pgd", "epgd", "smoothadv", "nattack"), required=True),
    "eps": Key(common.number(gt=0)), "eps_step": Key(common.number(gt=0)), "max_iter": Key(common.integer(1)),
    "norm": Key(common.choice("l2", "linf")), "num_random_init": Key(common.integer(0)),
}
SCHEMA = {
    "dataset": Key(references.dataset_check),  # digits, cifar10 (--data-root) or imagefolder:<path>
    "split": Key(common.choice("train", "val", "test")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "chunk": Key(common.integer(1)),
    "eps": Key(common.eps_budget(), required=True),
    "norm": Key(common.choice("l2", "linf"), required=True),
    "max_iter": Key(common.integer(1), required=True),
    "score_draws": Key(common.integer(1)),
    "targets": Tables({
        "name": Key(common.string, required=True),
        "model": Key(references.model_check, required=True),  # zoo name, zoo:/robustbench:/torchvision:/file:
        "deployment": Key(common.choice("plain", "quantised", "smoothed", "denoised"), required=True),
        "sigma": Key(common.number(gt=0)),
        "smoothing_samples": Key(common.integer(1)),
        "denoiser": Key(common.zoo_name("denoiser")),
        "attacks": Tables(_ATTACK_BASE, required=True, variant="name", variants={
            "none": {}, "pgd": {}, "bpda_pgd": {},
            "epgd": {"samples": Key(common.integer(1), required=True)},
            "smoothadv": {"samples": Key(common.integer(1), required=True),
                          "aggregate": Key(common.choice("softmax", "logits"))},
            "nattack": {"nes_iter": Key(common.integer(1)), "pop_size": Key(common.integer(1)),
                        "max_queries": Key(common.integer(1), required=True), "check_every": Key(common.integer(1))},
        }),
    }, required=True),
}


def check(suite: dict[str, Any]) -> None:
    """What a deployment needs beyond the schema (before any work)."""
    for i, spec in enumerate(suite["targets"]):
        needs = {"smoothed": ("sigma", "smoothing_samples"), "denoised": ("sigma", "smoothing_samples", "denoiser")}
        for key in needs.get(spec["deployment"], ()):
            if key not in spec:
                raise common.SuiteError(f"targets[{i}] ({spec['name']!r}): deployment {spec['deployment']!r} needs "
                                        f"{key!r}")
        for key in ("sigma", "smoothing_samples", "denoiser"):
            if key in spec and key not in needs.get(spec["deployment"], ()):
                raise common.SuiteError(f"targets[{i}].{key} is set but deployment {spec['deployment']!r} does not "
                                        f"read it: remove {key}")


# ---- deployed models -----------------------------------------------------------------------------------------------
def quantise(x: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """A non-differentiable input defence (bit-depth reduction to ``levels`` grey levels): zero gradient a.e."""
    return torch.round(x * (levels - 1)) / (levels - 1)


def load_module(name: str, kind: str, device: torch.device, roots: references.Roots | None = None) -> nn.Module:
    """A model's module: a classifier from any model reference (``benchmarks.references``: zoo, robustbench,
    torchvision, file), a denoiser from the zoo. One-off work (training on first use, loading), done before any
    timed work."""
    if kind == "classifier":
        return references.parse_model(name).load(roots or references.Roots(), device).module
    return zoo.load(name, kind=kind, device=device).module


def _cached_module(name: str, kind: str, device: torch.device, roots: references.Roots | None) -> nn.Module:
    """``load_module`` once per process and run (``benchmarks.backends.cached``); attacks leave the module unchanged."""
    return cached(("model", name, kind, str(device)), lambda: load_module(name, kind, device, roots))


def load_models(target: TargetSpec, device: torch.device,
                roots: references.Roots | None = None) -> dict[str, nn.Module]:
    """The modules a target needs: its classifier and, for a denoised deployment, its denoiser."""
    models = {"model": _cached_module(target.model, "classifier", device, roots)}
    if target.deployment == "denoised" and target.denoiser is not None:
        models["denoiser"] = _cached_module(target.denoiser, "denoiser", device, roots)
    return models


def deploy(target: TargetSpec, models: dict[str, nn.Module], num_classes: int,
           generator: torch.Generator | None) -> Deployment:
    """The target's ``Deployment`` from already loaded ``models`` (``load_models``), so building one per work unit
    costs nothing. A smoothed target's gradient attacks differentiate its base classifier (transfer to the smoothed
    one); a denoised target's the denoiser + classifier (``bpda`` passes straight through the denoiser); its noise
    is in the denoiser's declared noise space, ``sigma`` in that space's units."""
    kind, model = target.deployment, models["model"]
    if kind == "plain":
        return Deployment.plain(model)
    if kind == "quantised":
        return Deployment.preprocessed(model, quantise)
    samples, sigma = int(target.smoothing_samples or 0), float(target.sigma or 0.0)  # check: both set when randomized
    if kind == "smoothed":
        return Deployment.smoothed(model, sigma, num_classes=num_classes, num_samples=samples, generator=generator)
    if kind == "denoised":
        _, space = declared_noise(zoo.get_entry(str(target.denoiser), kind="denoiser"))
        return Deployment.denoised(models["denoiser"], model, sigma, num_classes=num_classes,
                                   num_samples=samples, noise_space=space, generator=generator)
    raise ValueError(f"unknown deployment {kind!r}; expected plain, quantised, smoothed or denoised")


# ---- attacks -------------------------------------------------------------------------------------------------------
def eps_grid(suite: dict[str, Any] | AttacksSpec) -> list[float]:
    """The suite's ``eps``: one number or a grid (a list)."""
    return list(attacks_spec(suite).eps)


class _SharedPGDFields(TypedDict):
    """The fields EPGD and SmoothAdv take from the attack table's PGD config (and the target's noise)."""

    eps: float
    max_iter: int
    norm: Norm
    num_random_init: int
    sigma: float
    noise_space: NoiseSpace


def _pgd_config(spec: AttacksSpec, attack: AttackSpec, eps: float) -> PGDConfig:
    steps = attack.max_iter if attack.max_iter is not None else spec.max_iter
    return PGDConfig(eps=eps, eps_step=attack.eps_step if attack.eps_step is not None else 2.5 * eps / steps,
                     max_iter=steps, norm=attack.norm or spec.norm, num_random_init=attack.num_random_init)


def run_attack(spec: AttacksSpec, attack: AttackSpec, target: Deployment, x: torch.Tensor, y: torch.Tensor,
               keys: NoiseKeys, eps: float | None = None, *, query_generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adversarial examples (and NAttack's per-example queries) for one attack table at radius ``eps`` (default:
    the attack's own ``eps``, else the suite's first), after the one final projection onto the eps-ball and the
    bounds (``Deployment.finish``). The attack's randomness (random starts, EOT noise, NAttack's mean and
    populations) is keyed per image by ``keys.derive("attack/<name>")`` (``keys``: one per image of ``x``), apart
    from the deployed noise that NAttack's queries and success checks of a randomized target draw from
    ``query_generator`` (``Deployment.query``; required for them)."""
    name = attack.name
    cfg = _pgd_config(spec, attack, (attack.eps if attack.eps is not None else spec.eps[0]) if eps is None else eps)
    if name == "none":
        return x, None
    x_adv, queries = _attack(name, attack, cfg, target, x, y, keys.derive(f"attack/{name}"), query_generator)
    return target.finish(x, x_adv, cfg.eps, cfg.norm), queries


def _attack(name: str, attack: AttackSpec, cfg: PGDConfig, target: Deployment, x: torch.Tensor, y: torch.Tensor,
            mine: NoiseKeys, query_generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``run_attack`` before the final projection (``mine``: the attack's keys, not the scoring's)."""
    if name == "pgd":
        return pgd(target.differentiate, x, y, cfg, keys=mine), None
    if name == "bpda_pgd":
        if target.bpda is None:
            raise ValueError("bpda_pgd needs a deployment with a straight-through path (quantised or denoised)")
        warn_if_unreachable(cfg)
        return pgd(target.bpda, x, y, cfg, keys=mine), None
    if name in ("epgd", "smoothadv"):
        common_kw: _SharedPGDFields = {"eps": cfg.eps, "max_iter": cfg.max_iter, "norm": cfg.norm,
                                       "num_random_init": cfg.num_random_init, "sigma": target.sigma or 0.0,
                                       "noise_space": target.noise_space}
        if name == "epgd":
            epgd_cfg = EPGDConfig(eps_step=cfg.eps_step, eot_samples=int(attack.samples or 1), **common_kw)
            return epgd(target.base, x, y, epgd_cfg, keys=mine), None
        smoothadv_cfg = SmoothAdvConfig(num_noise=int(attack.samples or 1), aggregate=attack.aggregate,
                                        eps_step=attack.eps_step, **common_kw)
        return smoothadv_pgd(target.base, x, y, smoothadv_cfg, keys=mine), None
    if name == "nattack":
        nattack_cfg = NAttackConfig(eps=cfg.eps, norm=cfg.norm, max_iter=attack.nes_iter, pop_size=attack.pop_size,
                                    max_queries=int(attack.max_queries or 0), check_every=attack.check_every)
        if target.randomized and query_generator is None:
            raise ValueError("nattack on a randomized target needs query_generator (the noise of its queries)")
        result = nattack(target.query(query_generator), x, y, nattack_cfg,
                         predict=lambda z: target.decide(z).argmax(1), keys=mine)
        return result.x_adv, result.queries
    raise ValueError(f"unknown attack {name!r}; expected none, pgd, bpda_pgd, epgd, smoothadv or nattack")


def attack_label(attack: AttackSpec) -> str:
    return attack.label


def config_id(target: TargetSpec, attack: AttackSpec, eps: float | None = None) -> str:
    """``<target>/<attack>``; with an eps grid in the suite (``eps`` a list), ``@eps=<e>`` is appended."""
    return f"{target.name}/{attack.label}" + ("" if eps is None else f"@eps={eps:g}")


def clean_id(target: TargetSpec) -> str:
    """The clean-accuracy rows of a target: scored once per image and reused by every attack of the target."""
    return f"{target.name}/clean"


def pairs(suite: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(model, denoiser, sigma) of every denoised target, for the preflight (``benchmarks.preflight``)."""
    return [(t.model, t.denoiser, t.sigma) for t in attacks_spec(suite).targets if t.denoiser]


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, config id) of every target's clean rows and every attack row, for the uniqueness check."""
    spec = attacks_spec(suite)
    out = []
    for i, target in enumerate(spec.targets):
        out.append((f"targets[{i}] (clean)", clean_id(target)))
        for j, attack in enumerate(target.attacks):
            ids = [config_id(target, attack)] if attack.name == "none" else \
                [cid for table, _, cid in attack_points(spec, target) if table is attack]
            out += [(f"targets[{i}].attacks[{j}]", cid) for cid in ids]
    return out


def attack_points(spec: AttacksSpec, target: TargetSpec) -> list[tuple[AttackSpec, float, str]]:
    """(attack, eps, config id) of every attack of a target to run, in suite order. The ``none`` attack is not run:
    its rows are the target's clean rows (robust accuracy = clean accuracy by construction). An attack with its own
    ``eps`` runs at that radius only; the others at each radius of the suite's ``eps`` grid."""
    out = []
    for attack in target.attacks:
        if attack.name == "none":
            continue
        radii = [attack.eps] if attack.eps is not None else list(spec.eps)
        out += [(attack, e, config_id(target, attack, e if spec.grid else None)) for e in radii]
    return out


# ---- run: work units to rows -----------------------------------------------------------------------------------------
#: the clock of timed work (a test replaces it to check what is inside the timed span)
clock: Callable[[], float] = time.perf_counter


def load_dataset(suite: dict[str, Any] | AttacksSpec, limit: int | None, roots: references.Roots | None = None):
    """The first ``limit`` examples of the suite's dataset reference and split."""
    spec = attacks_spec(suite)
    return references.parse_dataset(spec.dataset).load(roots or references.Roots(), spec.split,
                                                       resolution=spec.resolution, limit=limit)


def prepare(suite: dict[str, Any], roots: references.Roots) -> dict[str, Any]:
    """Check the dataset and model references before any work (files present and well-formed; nothing is loaded)
    and return what the manifest records about them."""
    spec = attacks_spec(suite)
    dataset = references.parse_dataset(spec.dataset)
    if "resolution" in suite and dataset.scheme != "digits":
        raise common.SuiteError(f"resolution applies to dataset 'digits' only, not {dataset.text!r}")
    models = {t.model: references.parse_model(t.model).check(roots) for t in spec.targets}
    return {"dataset": dataset.check(roots, spec.split), "models": models}


def noise_row(target: Deployment) -> dict[str, Any]:
    """The noise fields of a randomized target's rows (``noise_space``, ``sigma_pixel``); none for a deterministic
    one."""
    return {} if target.sigma is None else noise_fields(target.sigma, target.noise_space)


def clean_unit(spec: TargetSpec, models: dict[str, nn.Module], data: Any, indices: list[int], draws: int,
               seed: int, device: torch.device) -> list[dict[str, Any]]:
    """Clean accuracy of a target on ``indices`` over k draws of the deployed model (k = 1 if deterministic)."""
    cid = clean_id(spec)
    score_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, cid, indices[0], "score"))
    target = deploy(spec, models, data.num_classes, score_gen)
    x, y = data.x[indices].to(device), data.y[indices].to(device)
    k = draws if target.randomized else 1
    t0 = clock()
    score = score_deployment(target, x, y, image_keys(seed, cid, indices), k)
    seconds = (clock() - t0) / len(indices)
    return [{
        "kind": "attacks", "config": cid, "target": spec.name, "attack": "clean", "index": i,
        "label": int(data.y[i]), "clean_rate": float(score.per_example_rate[j]),
        "clean_all_draws": bool(score.correct[j].all()), "draws": k, "seconds": round(seconds, 4),
        **noise_row(target),
    } for j, i in enumerate(indices)]


def attack_unit(suite: AttacksSpec, spec: TargetSpec, attack: AttackSpec, eps: float, cid: str,
                models: dict[str, nn.Module], data: Any, indices: list[int], draws: int, seed: int,
                device: torch.device) -> list[dict[str, Any]]:
    """One attack on ``indices``, each final adversarial example scored over k draws of the deployed model.
    ``seconds`` times the attack only (models are loaded before, scoring after)."""
    start = indices[0]
    # NAttack on a randomized target: its queries and success checks run the deployed model on the candidates of
    # the images still searching, without their indices, so that noise comes from a generator of the unit and those
    # rows depend on the unit (every other attack's randomness and all scoring are keyed per image)
    unit_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, cid, start, "score"))
    target = deploy(spec, models, data.num_classes, unit_gen)
    x, y = data.x[indices].to(device), data.y[indices].to(device)
    keys = image_keys(seed, cid, indices)
    t0 = clock()
    x_adv, queries = run_attack(suite, attack, target, x, y, keys, eps, query_generator=unit_gen)
    seconds = (clock() - t0) / len(indices)
    k = draws if target.randomized else 1
    adv = score_deployment(target, x_adv, y, keys.derive("score"), k)
    distance = (x_adv - x).flatten(1).norm(dim=1).tolist()
    return [{
        "kind": "attacks", "config": cid, "target": spec.name, "attack": attack.label, "eps": eps,
        "index": i, "label": int(data.y[i]), "adv_rate": float(adv.per_example_rate[j]),
        "adv_all_draws": bool(adv.correct[j].all()), "draws": k, "l2_distance": distance[j],
        "seconds": round(seconds, 4), "queries": None if queries is None else int(queries[j]),
        **noise_row(target),
    } for j, i in enumerate(indices)]


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    spec = attacks_spec(suite)
    data = load_dataset(spec, ctx.limit, references.Roots(ctx.data_root, ctx.model_dir))
    chunks = [tuple(range(s, min(s + spec.chunk, len(data)))) for s in range(0, len(data), spec.chunk)]
    units = []
    for t, target in enumerate(spec.targets):
        points: list[tuple[str, int | None, float | None]] = [(clean_id(target), None, None)]
        points += [(cid, target.attacks.index(attack), eps) for attack, eps, cid in attack_points(spec, target)]
        for cid, a, eps in points:
            for indices in chunks:
                if all(ctx.is_done(cid, i) for i in indices):
                    continue
                # the unit names its target and attack by position in the suite (picklable for any backend)
                units.append(Unit(cid, indices, common.seed_for(ctx.seed, cid, indices[0]),
                                  {"target": t, "attack": a, "eps": eps}))
    ctx.run_units(units, compute, suite, desc=spec.name)


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one work unit (``run`` lists them): a target's clean unit or one (attack, eps) on a chunk."""
    spec = attacks_spec(suite)
    target = spec.targets[unit.spec["target"]]
    roots = references.Roots(env.data_root, env.model_dir)
    data = cached(("attacks-data", spec.dataset, spec.split, spec.resolution, env.limit),
                  lambda: load_dataset(spec, env.limit, roots))
    models = load_models(target, env.device, roots)  # one-off (cached per process), before any timed work
    if unit.spec["attack"] is None:
        return clean_unit(target, models, data, list(unit.indices), spec.score_draws, env.seed, env.device)
    return attack_unit(spec, target, target.attacks[unit.spec["attack"]], unit.spec["eps"], unit.config, models,
                       data, list(unit.indices), spec.score_draws, env.seed, env.device)


# ---- report (from rows only) -----------------------------------------------------------------------------------------
def summarize(suite: dict[str, Any] | AttacksSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (target, attack, eps) in suite order. Clean accuracy comes from the target's clean rows on the
    same images as the attack's rows; the ``none`` attack is the clean rows themselves."""
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], {})[int(r["index"])] = r
    spec = attacks_spec(suite)
    out = []
    for target in spec.targets:
        clean = by_config.get(clean_id(target), {})
        points = attack_points(spec, target)
        for attack in target.attacks:
            if attack.name == "none":
                entries = [(attack, 0.0, config_id(target, attack))]
            else:
                entries = [p for p in points if p[0] is attack]
            for attack_table, eps, cid in entries:
                if attack_table.name == "none":
                    mine = [dict(r, adv_rate=r["clean_rate"], adv_all_draws=r["clean_all_draws"], l2_distance=0.0,
                                 queries=None, seconds=0.0) for _, r in sorted(clean.items())]
                else:
                    mine = [r for i, r in sorted(by_config.get(cid, {}).items()) if i in clean]
                if not mine:
                    continue
                n = len(mine)
                clean_rate = float(np.mean([clean[int(r["index"])]["clean_rate"] for r in mine]))
                robust_mean = float(np.mean([r["adv_rate"] for r in mine]))
                robust_worst = float(np.mean([r["adv_all_draws"] for r in mine]))
                queries = [r["queries"] for r in mine if r["queries"] is not None]
                out.append({
                    "config": cid, "target": target.name, "attack": attack_table.label, "eps": eps,
                    "norm": attack_table.norm or spec.norm, "examples": n, "draws": mine[0]["draws"],
                    "clean": clean_rate, "clean_se": rep.binomial_se(clean_rate, n),
                    "robust_mean": robust_mean, "robust_mean_se": rep.binomial_se(robust_mean, n),
                    "robust_worst": robust_worst, "robust_worst_se": rep.binomial_se(robust_worst, n),
                    "mean_l2": float(np.mean([r["l2_distance"] for r in mine])),
                    "mean_queries": float(np.mean(queries)) if queries else None,
                    "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
                })
    return out


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json``, ``summary.md`` and the robust-accuracy plot from the rows (``report.attacks``)."""
    from benchmarks.report import attacks as attacks_report

    spec = attacks_spec(suite)
    return attacks_report.write(spec, summarize(spec, rows), out, manifest)
