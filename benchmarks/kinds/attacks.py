"""Suite kind ``attacks``: accuracy under PGD, BPDA-PGD, EPGD, SmoothAdv and NAttack for a standard model, a
defended (quantised) model, a noise-trained model under soft smoothed inference and a denoiser + classifier
pipeline under soft smoothing; every final adversarial example is scored over k draws of the deployed
randomized model (mean and worst-case accuracy, ``art_ext.attacks.score_randomized``).

Suite file keys: ``dataset`` ("digits"), ``split``, ``resolution``, ``limit``, ``chunk`` (images attacked together
under one derived seed; the unit of resume), ``eps``, ``norm``, ``max_iter``, ``score_draws`` (k), and
``[[targets]]`` tables: ``name``, ``model`` (zoo), ``deployment`` ("plain" | "quantised" | "smoothed" |
"denoised"), ``sigma``, ``smoothing_samples`` (M of the deployed soft smoothing), ``denoiser`` (zoo name, denoised
only) and ``attacks`` (list of attack tables with ``name`` and parameters, see ``SCHEMA``; any other key is an
error). ``--limit`` bounds the number of images every (target, attack) pair attacks and scores.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from art_ext.attacks import (
    EPGDConfig, NAttackConfig, PGDConfig, SmoothAdvConfig, bpda, epgd, nattack, pgd, score_randomized,
    smoothadv_pgd,
)
from art_ext.attacks.bpda_pgd import warn_if_unreachable
from art_ext.data import digits
from art_ext.defences.denoised_smoothing import DenoisedClassifier
from art_ext import zoo
from benchmarks import common
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables

log = logging.getLogger("benchmarks")


_ATTACK_BASE = {  # every attack reads these through _pgd_config
    "name": Key(common.choice("none", "pgd", "bpda_pgd", "epgd", "smoothadv", "nattack"), required=True),
    "eps": Key(common.number(ge=0)), "eps_step": Key(common.number(gt=0)), "max_iter": Key(common.integer(1)),
    "norm": Key(common.choice("l2", "linf")), "num_random_init": Key(common.integer(0)),
}
SCHEMA = {
    "dataset": Key(common.choice("digits")),  # this kind runs on the embedded digits only
    "split": Key(common.choice("train", "val", "test")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "chunk": Key(common.integer(1)),
    "eps": Key(common.number(ge=0), required=True),
    "norm": Key(common.choice("l2", "linf"), required=True),
    "max_iter": Key(common.integer(1), required=True),
    "score_draws": Key(common.integer(1)),
    "targets": Tables({
        "name": Key(common.string, required=True),
        "model": Key(common.zoo_name("classifier"), required=True),
        "deployment": Key(common.choice("plain", "quantised", "smoothed", "denoised"), required=True),
        "sigma": Key(common.number(ge=0)),
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


# ---- deployed models -----------------------------------------------------------------------------------------------
def soft_smoothing(base: nn.Module, sigma: float, num_classes: int, num_samples: int,
                   generator: torch.Generator) -> nn.Module:
    """The deployed soft smoothed classifier: mean softmax over M noisy passes (Nemcovsky et al. Eq. 13)."""
    from art_ext.smoothing import SmoothedInference

    return SmoothedInference(base, sigma, num_classes=num_classes, mode="soft", num_samples=num_samples,
                             generator=generator)


def quantise(x: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """A non-differentiable input defence (bit-depth reduction to ``levels`` grey levels): zero gradient a.e."""
    return torch.round(x * (levels - 1)) / (levels - 1)


class Target:
    """What is deployed (``decide``: scores of the deployed, possibly randomized model), what gradient attacks
    differentiate (``base``: the classifier EPGD/SmoothAdv add noise to; ``defended``: the full deployed map with a
    differentiable path where one exists) and what NAttack queries."""

    def __init__(self, spec: dict[str, Any], device: torch.device, num_classes: int, generator: torch.Generator):
        self.spec = spec
        self.kind = spec["deployment"]
        model = _load(spec["model"], "classifier", device)
        self.base = model
        self.sigma = float(spec.get("sigma", 0.0))
        if self.kind == "plain":
            self.decide = model
            self.defended = model
        elif self.kind == "quantised":
            self.decide = nn.Sequential(_Fn(quantise), model)
            self.defended = self.decide  # exact gradient: zero almost everywhere
            self.bpda = nn.Sequential(bpda(quantise), model)
        elif self.kind == "smoothed":
            self.decide = soft_smoothing(model, self.sigma, num_classes, int(spec["smoothing_samples"]), generator)
            self.defended = model  # PGD on the base classifier, transferred to the smoothed one
        elif self.kind == "denoised":
            denoiser = _load(spec["denoiser"], "denoiser", device)
            self.base = DenoisedClassifier(denoiser, model)
            self.decide = soft_smoothing(self.base, self.sigma, num_classes, int(spec["smoothing_samples"]), generator)
            self.defended = self.base
            self.bpda = nn.Sequential(bpda(denoiser), model)
        else:
            raise ValueError(f"unknown deployment {self.kind!r}; expected plain, quantised, smoothed or denoised")
        self.randomized = self.kind in ("smoothed", "denoised")

    def noisy_scores(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """NAttack's per-query score on a randomized target: one noisy pass (reference option (a))."""
        if not self.randomized:
            return self.decide
        return lambda z: self.base(z + self.sigma * torch.randn(z.shape, generator=generator, device=z.device))


def _load(name: str, kind: str, device: torch.device) -> nn.Module:
    """A zoo module, loaded once per process and run (``benchmarks.backends.cached``); attacks leave it unchanged."""
    return cached(("zoo", name, kind, str(device)), lambda: zoo.load(name, kind=kind, device=device).module)


class _Fn(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# ---- attacks -------------------------------------------------------------------------------------------------------
def _pgd_config(suite: dict[str, Any], attack: dict[str, Any]) -> PGDConfig:
    eps, steps = float(attack.get("eps", suite["eps"])), int(attack.get("max_iter", suite["max_iter"]))
    return PGDConfig(eps=eps, eps_step=float(attack.get("eps_step", 2.5 * eps / steps)), max_iter=steps,
                     norm=attack.get("norm", suite["norm"]), num_random_init=int(attack.get("num_random_init", 0)))


def run_attack(suite: dict[str, Any], attack: dict[str, Any], target: Target, x: torch.Tensor, y: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adversarial examples (and NAttack's per-example queries) for one attack table."""
    name = attack["name"]
    base_cfg = _pgd_config(suite, attack)
    if name == "none":
        return x, None
    if name == "pgd":
        return pgd(target.defended, x, y, base_cfg, generator=generator), None
    if name == "bpda_pgd":
        warn_if_unreachable(base_cfg)
        return pgd(target.bpda, x, y, base_cfg, generator=generator), None
    if name in ("epgd", "smoothadv"):
        common_kw = dict(eps=base_cfg.eps, max_iter=base_cfg.max_iter, norm=base_cfg.norm,
                         num_random_init=base_cfg.num_random_init, sigma=target.sigma)
        if name == "epgd":
            config = EPGDConfig(eps_step=base_cfg.eps_step, eot_samples=int(attack["samples"]), **common_kw)
            return epgd(target.base, x, y, config, generator=generator), None
        config = SmoothAdvConfig(num_noise=int(attack["samples"]), aggregate=attack.get("aggregate", "softmax"),
                                 eps_step=attack.get("eps_step"), **common_kw)
        return smoothadv_pgd(target.base, x, y, config, generator=generator), None
    if name == "nattack":
        config = NAttackConfig(eps=base_cfg.eps, norm=base_cfg.norm, max_iter=int(attack.get("nes_iter", 200)),
                               pop_size=int(attack.get("pop_size", 100)), max_queries=int(attack["max_queries"]),
                               check_every=int(attack.get("check_every", 5)))
        result = nattack(target.noisy_scores(generator), x, y, config, predict=lambda z: target.decide(z).argmax(1),
                         generator=generator)
        return result.x_adv, result.queries
    raise ValueError(f"unknown attack {name!r}; expected none, pgd, bpda_pgd, epgd, smoothadv or nattack")


def attack_label(attack: dict[str, Any]) -> str:
    extras = [f"{k}={attack[k]}" for k in sorted(attack) if k != "name"]
    return attack["name"] + (f"({', '.join(extras)})" if extras else "")


def config_id(target: dict[str, Any], attack: dict[str, Any]) -> str:
    return f"{target['name']}/{attack_label(attack)}"


# ---- run / report --------------------------------------------------------------------------------------------------
def load_dataset(suite: dict[str, Any], limit: int | None):
    if suite.get("dataset", "digits") != "digits":
        raise ValueError(f"the attacks kind supports dataset 'digits', got {suite.get('dataset')!r}")
    return digits.load_digits(suite.get("split", "test"), resolution=int(suite.get("resolution", 16))).head(limit)


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    data = load_dataset(suite, ctx.limit)
    chunk = int(suite.get("chunk", 25))
    units = []
    for spec in suite["targets"]:
        for attack in spec["attacks"]:
            cid = config_id(spec, attack)
            for start in range(0, len(data), chunk):
                indices = tuple(range(start, min(start + chunk, len(data))))
                if all(ctx.is_done(cid, i) for i in indices):
                    continue
                units.append(Unit(cid, indices, common.seed_for(ctx.seed, cid, start),
                                  {"target": spec, "attack": attack, "start": start}))
    ctx.run_units(units, compute, suite, desc=suite.get("name", "attacks"))


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one chunk of images for one (target, attack) pair (``run`` lists the units)."""
    spec, attack, start = unit.spec["target"], unit.spec["attack"], unit.spec["start"]
    cid, indices = unit.config, list(unit.indices)
    data = cached(("attacks-data", suite.get("split", "test"), suite.get("resolution", 16), env.limit),
                  lambda: load_dataset(suite, env.limit))
    draws = int(suite.get("score_draws", 10))
    attack_gen = torch.Generator(device=env.device).manual_seed(unit.seed)
    score_gen = torch.Generator(device=env.device).manual_seed(
        common.seed_for(env.seed, cid, start, "score"))
    target = Target(spec, env.device, data.num_classes, score_gen)
    x, y = data.x[indices].to(env.device), data.y[indices].to(env.device)
    t0 = time.perf_counter()
    x_adv, queries = run_attack(suite, attack, target, x, y, attack_gen)
    seconds = (time.perf_counter() - t0) / len(indices)
    k = draws if target.randomized else 1
    clean = score_randomized(target.decide, x, y, draws=k).per_example_rate.tolist()
    adv = score_randomized(target.decide, x_adv, y, draws=k)
    distance = (x_adv - x).flatten(1).norm(dim=1).tolist()
    return [{
        "kind": "attacks", "config": cid, "target": spec["name"], "attack": attack_label(attack),
        "index": i, "label": int(data.y[i]), "clean_rate": clean[j],
        "adv_rate": float(adv.per_example_rate[j]), "adv_all_draws": bool(adv.correct[j].all()),
        "draws": k, "l2_distance": distance[j], "seconds": round(seconds, 4),
        "queries": None if queries is None else int(queries[j]),
    } for j, i in enumerate(indices)]


def summarize(suite: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for spec in suite["targets"]:
        for attack in spec["attacks"]:
            cid = config_id(spec, attack)
            mine = [r for r in rows if r["config"] == cid]
            if not mine:
                continue
            queries = [r["queries"] for r in mine if r["queries"] is not None]
            out.append({
                "config": cid, "target": spec["name"], "attack": attack_label(attack), "examples": len(mine),
                "draws": mine[0]["draws"], "clean": float(np.mean([r["clean_rate"] for r in mine])),
                "robust_mean": float(np.mean([r["adv_rate"] for r in mine])),
                "robust_worst": float(np.mean([r["adv_all_draws"] for r in mine])),
                "mean_l2": float(np.mean([r["l2_distance"] for r in mine])),
                "mean_queries": float(np.mean(queries)) if queries else None,
                "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
            })
    return out


def markdown_table(summary: list[dict[str, Any]]) -> str:
    lines = ["| target | attack | images | k draws | clean acc | robust acc (mean) | robust acc (worst of k) | "
             "mean L2 | queries | s/img |", "|" + "---|" * 10]
    for s in summary:
        queries = f"{s['mean_queries']:.0f}" if s["mean_queries"] is not None else "–"
        lines.append(f"| {s['target']} | {s['attack']} | {s['examples']} | {s['draws']} | {s['clean']:.3f} | "
                     f"{s['robust_mean']:.3f} | {s['robust_worst']:.3f} | {s['mean_l2']:.3f} | {queries} | "
                     f"{s['seconds_per_example']:.3f} |")
    return "\n".join(lines)


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    summary = summarize(suite, rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    header = (
        f"# Suite `{suite['name']}`: {suite.get('description', '')}\n\n"
        f"Threat model {suite['norm']} eps={suite['eps']} in [0,1] pixel units on {suite.get('dataset', 'digits')} "
        f"{suite.get('split', 'test')} {suite.get('resolution', 16)}x{suite.get('resolution', 16)}. Randomized "
        f"targets are scored after the attack over k={suite.get('score_draws', 10)} independent draws of the deployed "
        f"model: 'mean' is the expected accuracy of one deployment, 'worst of k' counts an image robust only if all k "
        f"draws are correct. Seed {manifest['seed']}, git {manifest.get('git_sha')}, torch "
        f"{manifest['versions'].get('torch')}, device {manifest['device']}.\n\n"
    )
    return header + (markdown_table(summary) if summary else "(no rows yet)") + "\n"
