"""Suite kind ``compare``: models alone or under art_ext defences, on one fixed subset: clean accuracy, robust accuracy
per attack and eps, the per-example worst case over attacks, evaluation-rigor checks, optional certified accuracy,
and RobustBench's leaderboard numbers beside ours.

Suite file keys (``SCHEMA``; any other key is an error, every value is checked before any work):

* ``dataset`` (a dataset reference, ``benchmarks.references``), ``split`` (default "test"), ``resolution`` (digits
  only), ``limit``, ``chunk`` (images per work unit, the unit of resume; default 25).
* ``norm`` ("l2" | "linf") and ``eps`` (a number > 0, or a list of 3 or more increasing numbers > 0: robust
  accuracy against eps) in [0, 1] pixel units (a Linf eps <= 1); ``steps`` (gradient-attack iterations, default
  20), ``apgd_restarts`` (default 1), ``nattack_iter`` / ``nattack_pop`` / ``nattack_queries`` (NAttack
  budget), ``autoattack_version`` ("standard" | "rand"), or ``autoattack_attacks`` (a list among apgd-ce,
  apgd-dlr, apgd-t, fab, fab-t, square: pyautoattack's "custom" version with those attacks, a cheaper subset; the
  report names it).
* ``models``: model references (``zoo:<name>`` or a bare zoo name, ``robustbench:<Name>[:<threat>]``,
  ``torchvision:<arch>``, ``file:<path>``), or inline tables ``{ model = "...", norm = "linf", eps = 0.031 }``
  overriding the suite's threat model for that model (a RobustBench suite mixes L2 and Linf models).
* ``defences``: ``"none"``; ``"denoiser:<zoo denoiser>"`` (Salman et al.'s denoised smoothing deployed as soft
  smoothed inference of denoiser + classifier at the denoiser's training sigma); ``"bn_adapt"`` (the model with its
  BatchNorm statistics adapted to Gaussian noise at ``bn_sigma`` on ``bn_images`` training images, Nandy et al.
  Eq. 4: deterministic); ``"smoothed_inference:<mode>"`` (mode soft | prediction | weighted, Nemcovsky et al.) at
  ``sigma`` with ``smoothing_samples`` noisy passes.
* ``attacks``: any of ``none`` (= clean), ``pgd``, ``apgd-ce``, ``apgd-dlr`` (torchattacks' APGD, run with the global
  RNG state saved and restored: it reseeds it), ``autoattack`` (pyautoattack, standard version; an error naming the
  extra when it is missing) and ``nattack`` (gradient-free, art_ext.attacks.nattack).
* ``attacks_randomized``: optional, the attacks run against randomized defences instead (each gradient step of a
  smoothed defence costs ``smoothing_samples`` passes, so a suite may leave AutoAttack out there).
* ``score_draws``: k independent draws of a randomized deployed model used to score clean and adversarial inputs
  (mean accuracy and worst of k, ``art_ext.attacks.score_randomized``); deterministic models use 1.
* optional ``[certify]`` (``sigma``, ``n0``, ``n``, ``alpha``, ``batch_size``, ``radii``): Cohen et al. certified
  accuracy at the radii and ACR of every smoothed defence's base classifier (sigma default: the defence's); an
  ``n`` that can never certify at ``alpha`` (alpha**(1/n) <= 1/2) is an error.

A setting that nothing in the suite reads (``USED_BY``: e.g. ``nattack_iter`` without the ``nattack`` attack,
``bn_images`` without ``bn_adapt``) is an error, as is ``autoattack_version`` beside ``autoattack_attacks``.

Gradient attacks differentiate a deterministic surrogate of a randomized defence: soft smoothing with one fixed set
of ``smoothing_samples`` noise draws shared by every example (common random numbers), so APGD's one-forward success
test is consistent; every final point is then re-scored over k fresh draws of the deployed model. NAttack queries
the deployed model (one noisy pass per query when it is randomized). Clean accuracy is computed once per (model,
defence) and chunk and reused by every attack row. Rigor checks (``art_ext.attacks.rigor``) run on every chunk
before its attacks. ``--limit`` bounds the images of every (model, defence) and of the certify table;
``bn_images`` (adaptation images, from the train split) is not an evaluation subset and is not bounded by it.

The computation is split into work units (``units``: one (model, defence, chunk) each, described by a picklable
dict) computed by ``compute_unit(suite, unit, device, roots, seed)``; ``run`` loops over them. The scoring draws,
the certify table's noise, the rigor randomness check's passes and the randomness of the art_ext attacks (PGD's
random start, NAttack's search) of an image depend on the run seed, its config and its dataset index only
(``benchmarks.image_keys``), not on ``chunk``. Still of the unit: the external attacks (torchattacks' APGD and
AutoAttack draw from torch's global RNG, seeded per unit) and NAttack's queries and success checks of a randomized
defence (one noisy pass of the candidates of the images still searching, whose indices NAttack does not pass).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from art_ext.attacks import rigor
from benchmarks import common, references
from benchmarks.backends import Unit, WorkerEnv
from benchmarks.image_keys import image_keys, noise_fields, score_deployment
from benchmarks.kinds.compare.attacks import KeyedPasses, deploy, run_attack
from benchmarks.kinds.compare.schema import (
    ATTACKS,
    GRADIENT_ATTACKS,
    SCHEMA,
    SMOOTHING_MODES,
    attack_config,
    attacks_for,
    check,
    config_ids,
    is_randomized,
    model_specs,
    prepare,
    tag_of,
)
from benchmarks.kinds.compare.spec import CompareSpec, spec_of
from benchmarks.kinds.compare.summaries import certify_summary, leaderboard_rows, rigor_summary, summarize, worst_case

__all__ = [
    "ATTACKS", "GRADIENT_ATTACKS", "SCHEMA", "SMOOTHING_MODES", "attack_config", "attacks_for", "certify_summary",
    "check",
    "compute", "compute_unit", "config_ids", "deploy", "is_randomized", "leaderboard_rows", "model_specs", "pairs",
    "prepare",
    "report", "rigor_summary", "run", "run_attack", "summarize", "tag_of", "unit_configs", "units", "worst_case",
]

log = logging.getLogger("benchmarks")


def pairs(suite: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(model, denoiser, None) of every model with every ``denoiser:<name>`` defence, for the preflight."""
    spec = spec_of(suite)
    return [(m.model, d.removeprefix("denoiser:"), None) for m in spec.models for d in spec.defences
            if d.startswith("denoiser:")]

PROBE_FRACTIONS = (0.25, 0.5, 1.0)  # eps-monotonicity probe of a single-eps suite: PGD at these fractions of eps


# ---- work units ----------------------------------------------------------------------------------------------------
def units(suite: dict[str, Any] | CompareSpec, num_examples: int) -> list[dict[str, Any]]:
    """Every work unit of the suite, in order: one per (model, defence, chunk of images); plain dicts."""
    spec = spec_of(suite)
    chunk = spec.chunk
    out = []
    for threat in spec.models:
        for defence in spec.defences:
            for start in range(0, num_examples, chunk):
                out.append({"model": threat.model, "norm": threat.norm, "eps": list(threat.eps), "defence": defence,
                            "start": start, "indices": list(range(start, min(start + chunk, num_examples)))})
    return out


def unit_configs(suite: dict[str, Any] | CompareSpec, unit: dict[str, Any]) -> list[str]:
    """The row configs a unit writes (so a runner can tell whether it is finished)."""
    spec = spec_of(suite)
    tag = tag_of(unit["model"], unit["defence"])
    configs = [f"{tag}/clean", f"{tag}/rigor"]
    configs += [attack_config(tag, a, e) for a in spec.attacks_for(unit["defence"]) if a != "none"
                for e in unit["eps"]]
    if spec.certify is not None and is_randomized(unit["defence"]):
        configs.append(f"{tag}/certify")
    return configs


@functools.lru_cache(maxsize=4)
def _dataset(dataset: str, split: str, resolution: int, limit: int | None, data_root: str | None):
    roots = references.Roots(Path(data_root) if data_root else None)
    return references.parse_dataset(dataset).load(roots, split, resolution=resolution, limit=limit)


@functools.lru_cache(maxsize=8)
def _model(ref: str, device: str, model_dir: str | None, data_root: str | None) -> nn.Module:
    roots = references.Roots(Path(data_root) if data_root else None, Path(model_dir) if model_dir else None)
    return references.parse_model(ref).load(roots, torch.device(device)).module


def load_data(suite: dict[str, Any] | CompareSpec, limit: int | None, roots: references.Roots,
              split: str | None = None):
    spec = spec_of(suite)
    return _dataset(spec.dataset, split or spec.split, spec.resolution, limit,
                    str(roots.data_root) if roots.data_root else None)


def compute_unit(suite: dict[str, Any], unit: dict[str, Any], device: str | torch.device, roots: references.Roots,
                 seed: int, limit: int | None = None) -> list[dict[str, Any]]:
    """All rows of one work unit (picklable arguments only): clean, rigor, attack and certify rows of its images.

    Model loading (and BN adaptation) happen before any timed section; ``seconds`` is attack time per image only.
    """
    device = torch.device(device)
    spec = spec_of(suite)
    data = load_data(spec, limit, roots)
    model = _model(unit["model"], str(device), str(roots.model_dir) if roots.model_dir else None,
                   str(roots.data_root) if roots.data_root else None)
    tag = tag_of(unit["model"], unit["defence"])
    indices = unit["indices"]
    x, y = data.x[indices].to(device), data.y[indices].to(device)
    adaptation = None
    if unit["defence"] == "bn_adapt":
        adaptation = load_data(spec, None, roots, split="train").x[: spec.bn_images]
    # the deployed noise of NAttack's queries and success checks only (scoring, rigor passes and certify are keyed)
    query_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, tag, unit["start"], "score"))
    # the adaptation noise depends on (seed, model), not on the chunk: every chunk sees the same adapted model
    defence_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, tag, "defence"))
    target = deploy(model, unit["defence"], spec, data.num_classes, device, defence_gen, query_gen, adaptation)
    k = spec.score_draws if target.randomized else 1
    base_row: dict[str, Any] = {"kind": "compare", "model": unit["model"], "defence": unit["defence"],
                                "norm": unit["norm"]}
    if target.sigma is not None:  # every row of a randomized deployment says which noise it was drawn with
        base_row |= noise_fields(target.sigma, target.noise_space)
    rows: list[dict[str, Any]] = []

    def score(images: torch.Tensor, config: str) -> Any:
        """Each image scored over k draws of the deployed model, draw d of image i under the keys of (config, its
        dataset index) derived by d: the same whatever the unit (a deterministic model: once, no keys)."""
        return score_deployment(target, images, y, image_keys(seed, config, indices).derive("score"), k)

    # clean, once per (model, defence) and chunk: every attack row of these images refers to it
    clean = score(x, f"{tag}/clean")
    for j, i in enumerate(indices):
        rows.append({**base_row, "config": f"{tag}/clean", "index": i, "label": int(data.y[i]), "draws": k,
                     "rate": float(clean.per_example_rate[j]), "all_draws": bool(clean.correct[j].all())})

    # rigor checks, before any attack; a randomized defence's passes p = 0, 1 run under the keys of (rigor config,
    # dataset index) derived by p, so an image's passes do not depend on the unit
    decide = KeyedPasses(target.smoothed_classifier, image_keys(seed, f"{tag}/rigor", indices)) if target.randomized \
        else target.decide
    randomness = rigor.output_randomness(decide, x)
    grads = rigor.gradient_health(target.differentiate, x, y)
    probe: list[list[float]] = [[] for _ in indices]
    attacks = spec.attacks_for(unit["defence"])
    if len(unit["eps"]) < 3 and any(a in GRADIENT_ATTACKS for a in attacks):
        top = max(unit["eps"])
        for f in PROBE_FRACTIONS:
            pid = f"{tag}/probe/{f:g}"
            x_probe, _ = run_attack("pgd", spec, unit["norm"], top * f, target, x, y,
                                    common.seed_for(seed, tag, unit["start"], "probe", f),
                                    keys=image_keys(seed, pid, indices).derive("attack"))
            rates = score(x_probe, pid).per_example_rate.tolist()
            for j in range(len(indices)):
                probe[j].append(rates[j])
    for j, i in enumerate(indices):
        rows.append({**base_row, "config": f"{tag}/rigor", "index": i, "output_differs": bool(randomness.differing[j]),
                     "grad_zero": bool(grads.zero[j]), "grad_nonfinite": bool(grads.nonfinite[j]),
                     "probe_eps": [max(unit["eps"]) * f for f in PROBE_FRACTIONS] if probe[j] else None,
                     "probe_rates": probe[j] or None})

    for attack in attacks:
        if attack == "none":
            continue
        for eps in unit["eps"]:
            cid = attack_config(tag, attack, eps)
            attack_seed = common.seed_for(seed, cid, unit["start"])
            t0 = time.perf_counter()
            x_adv, queries = run_attack(attack, spec, unit["norm"], eps, target, x, y, attack_seed,
                                        keys=image_keys(seed, cid, indices).derive("attack"))
            seconds = (time.perf_counter() - t0) / len(indices)
            adv = score(x_adv, cid)
            delta = (x_adv - x).flatten(1)
            size = delta.norm(dim=1) if unit["norm"] == "l2" else delta.abs().amax(1)
            for j, i in enumerate(indices):
                rows.append({**base_row, "config": cid, "attack": attack, "eps": eps, "index": i,
                             "label": int(data.y[i]), "draws": k, "rate": float(adv.per_example_rate[j]),
                             "all_draws": bool(adv.correct[j].all()), "perturbation": float(size[j]),
                             "seconds": round(seconds, 5),
                             "queries": None if queries is None else int(queries[j])})

    if spec.certify is not None and target.randomized:
        from art_ext.smoothing import certify

        cfg = spec.certify
        # sigma in the deployment's declared noise space; the radius certified there is reported in pixel units
        sigma = float(cfg.sigma if cfg.sigma is not None else target.sigma or 0.0)
        certs = certify(target.base, x, n0=cfg.n0, n=cfg.n, sigma=sigma, alpha=cfg.alpha,
                        num_classes=data.num_classes, batch_size=cfg.batch_size,
                        keys=image_keys(seed, f"{tag}/certify", indices), noise_space=target.noise_space)
        for j, i in enumerate(indices):
            prediction = int(certs.label[j])
            rows.append({**base_row, "config": f"{tag}/certify", "index": i, "label": int(data.y[i]), "sigma": sigma,
                         "sigma_pixel": target.noise_space.pixel_sigma(sigma), "prediction": prediction,
                         "radius": float(certs.radius[j]), "correct": prediction == int(data.y[i])})
    return rows


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    """List the unfinished units and run them on the context's backend (local, or Ray actors)."""
    data = load_data(suite, ctx.limit, references.Roots(ctx.data_root, ctx.model_dir))
    todo = []
    for spec in units(suite, len(data)):
        configs = unit_configs(suite, spec)
        if all(ctx.is_done(c, i) for c in configs for i in spec["indices"]):
            continue
        # a unit's rows are written together, its last config last: that config marks the unit finished
        todo.append(Unit(configs[-1], tuple(spec["indices"]), common.seed_for(ctx.seed, configs[-1], spec["start"]),
                         spec))
    ctx.run_units(todo, compute, suite, desc=spec_of(suite).name)


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one unit (``compute_unit``), those of the unit's marking config last."""
    rows = compute_unit(suite, unit.spec, env.device, references.Roots(env.data_root, env.model_dir), env.seed,
                        env.limit)
    return [r for r in rows if r["config"] != unit.config] + [r for r in rows if r["config"] == unit.config]


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json`` and ``summary.md`` (and the robust-accuracy plot) from the rows (``benchmarks.report``)."""
    from benchmarks.report import compare as compare_report

    spec = spec_of(suite)
    summary = summarize(spec, rows)
    summary["leaderboard"] = leaderboard_rows(summary)
    return compare_report.write(spec, summary, out, manifest)
