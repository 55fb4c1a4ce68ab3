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
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from art_ext.attacks import NAttackConfig, PGDConfig, nattack, pgd, rigor
from art_ext.smoothing import SmoothedInference
from art_ext.smoothing.keys import NoiseKeys
from art_ext.types import Norm
from benchmarks import common, references
from benchmarks.backends import Unit, WorkerEnv
from benchmarks.common import Key, Table
from benchmarks.image_keys import image_keys, score_keyed

log = logging.getLogger("benchmarks")

ATTACKS = ("none", "pgd", "apgd-ce", "apgd-dlr", "autoattack", "nattack")
GRADIENT_ATTACKS = ("pgd", "apgd-ce", "apgd-dlr", "autoattack")
SMOOTHING_MODES = ("soft", "prediction", "weighted")
PROBE_FRACTIONS = (0.25, 0.5, 1.0)  # eps-monotonicity probe of a single-eps suite: PGD at these fractions of eps


# ---- schema --------------------------------------------------------------------------------------------------------
def _positive_budget(v: Any) -> bool:
    return common.number(gt=0)(v) is None and math.isfinite(v)


def _eps_check(v: Any) -> str | None:
    # eps > 0: a budget of 0 is the clean accuracy (the 'none' attack), and a single eps of 0 makes the PGD probe of
    # the monotonicity check [0, 0, 0]
    expected = "a number > 0 (finite) or a list of 3 or more strictly increasing numbers > 0"
    if isinstance(v, list):
        if len(v) < 3 or not all(_positive_budget(e) for e in v) or any(
                b <= a for a, b in zip(v, v[1:], strict=False)):
            return expected
        return None
    return None if _positive_budget(v) else expected


def _model_entry_check(v: Any) -> str | None:
    expected = ("a model reference (" + ", ".join(references.MODEL_FORMS) + ") or a table { model = ..., norm = "
                "'l2' | 'linf', eps = ... }")
    if isinstance(v, str):
        return None if references.model_check(v) is None else expected
    if isinstance(v, dict):
        if set(v) - {"model", "norm", "eps"} or "model" not in v or references.model_check(v["model"]) is not None:
            return expected
        if "norm" in v and v["norm"] not in ("l2", "linf"):
            return expected
        if "eps" in v and _eps_check(v["eps"]) is not None:
            return expected
        return None
    return expected


def _defence_check(v: Any) -> str | None:
    from art_ext import zoo

    expected = ("'none', 'bn_adapt', 'denoiser:<zoo denoiser>' (one of " + ", ".join(zoo.names(kind="denoiser")) +
                ") or 'smoothed_inference:<mode>' (mode " + " | ".join(SMOOTHING_MODES) + ")")
    if v in ("none", "bn_adapt"):
        return None
    if isinstance(v, str):
        scheme, _, rest = v.partition(":")
        if scheme == "denoiser" and rest in zoo.names(kind="denoiser"):
            return None
        if scheme == "smoothed_inference" and rest in SMOOTHING_MODES:
            return None
    return expected


def _unique_list(item: common.Check) -> common.Check:
    inner = common.list_of(item)

    def check(v: Any) -> str | None:
        problem = inner(v)
        if problem is not None:
            return problem
        keys = [json.dumps(x, sort_keys=True) for x in v]
        return None if len(set(keys)) == len(keys) else "a list without repeated values"

    return check


SCHEMA = {
    "dataset": Key(references.dataset_check),
    "split": Key(common.choice("train", "val", "test")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "chunk": Key(common.integer(1)),
    "norm": Key(common.choice("l2", "linf"), required=True),
    "eps": Key(_eps_check, required=True),
    "steps": Key(common.integer(1)),
    "apgd_restarts": Key(common.integer(1)),
    "nattack_iter": Key(common.integer(1)),
    "nattack_pop": Key(common.integer(2)),
    "nattack_queries": Key(common.integer(1)),
    "autoattack_version": Key(common.choice("standard", "rand")),
    "autoattack_attacks": Key(_unique_list(common.choice("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"))),
    "score_draws": Key(common.integer(1)),
    "sigma": Key(common.number(gt=0)),
    "smoothing_samples": Key(common.integer(1)),
    "bn_sigma": Key(common.number(ge=0)),
    "bn_images": Key(common.integer(2)),
    "models": Key(_unique_list(_model_entry_check), required=True),
    "defences": Key(_unique_list(_defence_check), required=True),
    "attacks": Key(_unique_list(common.choice(*ATTACKS)), required=True),
    "attacks_randomized": Key(_unique_list(common.choice(*ATTACKS))),
    "certify": Table({
        "sigma": Key(common.number(gt=0)),
        "n0": Key(common.integer(1), required=True),
        "n": Key(common.integer(1), required=True),
        "alpha": Key(common.number(gt=0, lt=1), required=True),
        "batch_size": Key(common.integer(1)),
        "radii": Key(common.list_of(common.number(ge=0))),
    }),
}


def model_specs(suite: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model entry as ``{model, norm, eps: [floats]}`` (the suite's threat model unless overridden)."""
    out = []
    for entry in suite["models"]:
        entry = {"model": entry} if isinstance(entry, str) else dict(entry)
        eps = entry.get("eps", suite["eps"])
        out.append({"model": entry["model"], "norm": entry.get("norm", suite["norm"]),
                    "eps": [float(e) for e in (eps if isinstance(eps, list) else [eps])]})
    return out


def is_randomized(defence: str) -> bool:
    return defence.startswith(("denoiser:", "smoothed_inference:"))


def attacks_for(suite: dict[str, Any], defence: str) -> list[str]:
    """The attacks run against a defence: ``attacks_randomized`` for a randomized one when the suite sets it (every
    gradient step of a smoothed defence costs ``smoothing_samples`` passes), else ``attacks``."""
    if is_randomized(defence) and "attacks_randomized" in suite:
        return list(suite["attacks_randomized"])
    return list(suite["attacks"])


def _has_attack(*names: str) -> Any:
    return lambda suite, every: any(a in every for a in names)


def _has_defence(test: Any) -> Any:
    return lambda suite, every: any(test(d) for d in suite["defences"])


#: suite keys that only some attacks / defences read: (key, needs, what the suite lacks); a key set without them is
#: an error rather than silently ignored
USED_BY = (
    ("steps", _has_attack(*GRADIENT_ATTACKS), "attacks {attacks} has no gradient attack ('pgd', 'apgd-ce', "
                                              "'apgd-dlr', 'autoattack')"),
    ("apgd_restarts", _has_attack("apgd-ce", "apgd-dlr"), "attacks {attacks} has no 'apgd-ce' or 'apgd-dlr'"),
    *((key, _has_attack("nattack"), "attacks {attacks} has no 'nattack'")
      for key in ("nattack_iter", "nattack_pop", "nattack_queries")),
    *((key, _has_attack("autoattack"), "attacks {attacks} has no 'autoattack'")
      for key in ("autoattack_version", "autoattack_attacks")),
    ("bn_sigma", _has_defence(lambda d: d == "bn_adapt"), "defences {defences} has no 'bn_adapt'"),
    ("bn_images", _has_defence(lambda d: d == "bn_adapt"), "defences {defences} has no 'bn_adapt'"),
    ("smoothing_samples", _has_defence(is_randomized), "defences {defences} has no randomized defence "
                                                       "('denoiser:<name>' or 'smoothed_inference:<mode>')"),
    ("sigma", _has_defence(lambda d: d.startswith("smoothed_inference:") or d == "bn_adapt"),
     "defences {defences} has no 'smoothed_inference:<mode>' or 'bn_adapt' (a denoiser defence uses its training "
     "sigma)"),
)


def check(suite: dict[str, Any]) -> None:
    """What the schema cannot see (before any work): attacks that need an extra, settings a defence needs, settings
    nothing reads, Linf budgets above 1 and a [certify] table that can never certify."""
    every = {*suite["attacks"], *suite.get("attacks_randomized", [])}
    for key, needed, lacking in USED_BY:
        if key in suite and not needed(suite, every):
            raise common.SuiteError(f"{key} is set but " + lacking.format(attacks=sorted(every),
                                                                         defences=suite["defences"]) +
                                    f": nothing would read it; remove {key} or add what uses it")
    if "autoattack_version" in suite and "autoattack_attacks" in suite:
        raise common.SuiteError("autoattack_version and autoattack_attacks are both set; autoattack_attacks runs "
                                "pyautoattack's 'custom' version, so set only one of them")
    if "bn_sigma" in suite and "sigma" in suite and not any(d.startswith("smoothed_inference:")
                                                            for d in suite["defences"]):
        raise common.SuiteError("sigma and bn_sigma are both set but only bn_adapt reads a noise level, from bn_sigma; "
                                "remove sigma")
    for spec in model_specs(suite):
        top = max(spec["eps"])
        if spec["norm"] == "linf" and top > 1:
            raise common.SuiteError(f"norm 'linf' with eps {top:g} for model {spec['model']!r}: a Linf budget must be "
                                    "<= 1 ([0, 1] pixel units; 8/255 = 0.0314), larger budgets contain every image")
    if "certify" in suite:
        n, alpha = suite["certify"]["n"], suite["certify"]["alpha"]
        if alpha ** (1.0 / n) <= 0.5:
            raise common.SuiteError(
                f"[certify] n = {n} with alpha = {alpha} can never certify (even {n} agreeing votes give a "
                f"Clopper-Pearson lower bound alpha**(1/n) = {alpha ** (1.0 / n):.3f} <= 0.5, so every image "
                "abstains); "
                f"use n >= {math.ceil(math.log(alpha) / math.log(0.5)) + 1}")
    if "attacks_randomized" in suite and not any(is_randomized(d) for d in suite["defences"]):
        raise common.SuiteError("attacks_randomized is set but no defence is randomized ('denoiser:<name>' or "
                                "'smoothed_inference:<mode>')")
    if "autoattack" in every:
        try:
            import pyautoattack  # noqa: F401
        except ImportError:
            try:
                import autoattack  # noqa: F401
            except ImportError as err:
                raise common.SuiteError("attack 'autoattack' needs pyautoattack (or autoattack): pip install "
                                        "\"art_ext[bench]\" or pip install pyautoattack") from err
    if any(a in every for a in ("apgd-ce", "apgd-dlr")):
        try:
            import torchattacks  # noqa: F401
        except ImportError as err:
            raise common.SuiteError("attacks 'apgd-ce' / 'apgd-dlr' need torchattacks: pip install "
                                    "\"art_ext[bench]\"") from err
    if "certify" in suite and not any(is_randomized(d) for d in suite["defences"]):
        raise common.SuiteError("[certify] needs a smoothed defence ('denoiser:<name>' or "
                                "'smoothed_inference:<mode>') among defences")


def prepare(suite: dict[str, Any], roots: references.Roots) -> dict[str, Any]:
    """Check every reference (files present and well-formed, nothing loaded) and return what the manifest records."""
    dataset = references.parse_dataset(suite.get("dataset", "digits"))
    if "resolution" in suite and dataset.scheme != "digits":
        raise common.SuiteError(f"resolution applies to dataset 'digits' only, not {dataset.text!r}")
    models = {}
    for spec in model_specs(suite):
        models[spec["model"]] = references.parse_model(spec["model"]).check(roots)
    manifest = {"dataset": dataset.check(roots, suite.get("split", "test")), "models": models}
    if "bn_adapt" in suite["defences"]:
        manifest["bn_adaptation_images"] = dataset.check(roots, "train")
    return manifest


# ---- deployed models -----------------------------------------------------------------------------------------------
class FrozenNoiseSmoothing(nn.Module):
    """A deterministic differentiable surrogate of soft smoothing: log of the mean softmax of ``base`` over one fixed
    set of M noise draws [M, C, H, W] shared by every example (common random numbers; batch-independent)."""

    noise: torch.Tensor  # a buffer

    def __init__(self, base: nn.Module, sigma: float, noise: torch.Tensor) -> None:
        super().__init__()
        self.base, self.sigma = base, float(sigma)
        self.register_buffer("noise", noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b = self.noise.shape[0], x.shape[0]
        noisy = (x.unsqueeze(0) + self.sigma * self.noise.unsqueeze(1)).flatten(0, 1)  # [M * B, C, H, W]
        probs = F.softmax(self.base(noisy), dim=1).view(m, b, -1).mean(0)  # [B, K]
        return torch.log(probs.clamp_min(1e-12))


class _KeyedPasses(nn.Module):
    """A randomized defence's forward whose call p draws under ``keys.derive(p)`` (one key per image of the input):
    the passes of ``rigor.output_randomness`` keyed per image, without changing that check."""

    def __init__(self, decide: SmoothedInference, keys: NoiseKeys) -> None:
        super().__init__()
        self.decide, self.keys, self.calls = decide, keys, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys, self.calls = self.keys.derive(self.calls), self.calls + 1
        return self.decide.scores(x, keys=keys)


class Deployed:
    """A (model, defence) pair: ``decide`` (the deployed model, randomized or not), ``surrogate`` (what gradient
    attacks differentiate), ``query`` (what NAttack scores), ``base`` and ``sigma`` (a smoothed defence's base
    classifier and noise level)."""

    def __init__(self, module: nn.Module, defence: str, suite: dict[str, Any], num_classes: int,
                 device: torch.device, generator: torch.Generator, adaptation: torch.Tensor | None) -> None:
        from art_ext import zoo

        self.defence, self.randomized = defence, is_randomized(defence)
        self.base: nn.Module = module
        self.sigma: float | None = None
        self.generator = generator
        if defence == "bn_adapt":
            from art_ext.defences.bn_adaptation import adapt_batchnorm

            assert adaptation is not None
            sigma = float(suite.get("bn_sigma", suite.get("sigma", 0.25)))
            seed_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator,
                                                                                    device=device)))
            self.base = adapt_batchnorm(module, adaptation.to(device), sigma=sigma, generator=seed_gen)
        if not self.randomized:
            self.decide = self.surrogate = self.query = self.base
            return
        samples = int(suite.get("smoothing_samples", 16))
        mode = "soft"
        if defence.startswith("denoiser:"):
            from art_ext.defences.denoised_smoothing import DenoisedClassifier

            name = defence.partition(":")[2]
            denoiser = zoo.load(name, kind="denoiser", device=device)
            self.base = DenoisedClassifier(denoiser.module, module).eval()
            self.sigma = common.denoiser_sigma(denoiser)
        else:
            mode = defence.partition(":")[2]
            self.sigma = float(suite.get("sigma", 0.25))
        self.decide = SmoothedInference(self.base, self.sigma, num_classes=num_classes, mode=mode,
                                        num_samples=samples, generator=generator)
        self.samples = samples
        self.frozen_seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=device))
        self.device = device

    @property
    def smoothed(self) -> SmoothedInference:
        """``decide`` of a randomized defence: its smoothed classifier."""
        if not isinstance(self.decide, SmoothedInference):
            raise TypeError(f"defence {self.defence!r} is not randomized: it deploys no smoothed classifier")
        return self.decide

    def frozen_surrogate(self, shape: tuple[int, ...]) -> nn.Module:
        """The fixed-noise surrogate for inputs of shape [C, H, W] (randomized defences only)."""
        gen = torch.Generator(device=self.device).manual_seed(self.frozen_seed)
        noise = torch.randn((self.samples, *shape), generator=gen, device=self.device)
        return FrozenNoiseSmoothing(self.base, float(self.sigma or 0.0), noise).eval()

    def noisy_query(self, z: torch.Tensor) -> torch.Tensor:
        """One noisy pass of the base (NAttack's score query on a randomized defence), from ``self.generator``:
        NAttack calls it with candidates, not image indices, so this noise cannot be keyed per image."""
        return self.base(z + float(self.sigma or 0.0) * torch.randn(z.shape, generator=self.generator,
                                                                     device=z.device))


# ---- attacks -------------------------------------------------------------------------------------------------------
def _fork_rng(device: torch.device):
    """Save and restore torch's global RNG state (CPU and, on CUDA, the device's) around an attack that reseeds it."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def run_attack(name: str, suite: dict[str, Any], norm: Norm, eps: float, target: Deployed, x: torch.Tensor,
               y: torch.Tensor, seed: int, *, keys: NoiseKeys | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adversarial examples [B, ...] of one attack at one eps (and NAttack's per-example queries).

    The art_ext attacks (PGD, NAttack) key their randomness per image by ``keys.derive(name)`` (``keys``: one per
    image of ``x``; ``None``: keys drawn from a generator seeded with ``seed``). The external attacks (APGD,
    AutoAttack) draw from torch's global RNG, seeded with ``seed`` inside a fork of it: they cannot be keyed per
    image, so their results depend on the images attacked together."""
    device = x.device
    steps = int(suite.get("steps", 20))
    surrogate = target.frozen_surrogate(tuple(x.shape[1:])) if target.randomized else target.surrogate
    if name == "none" or eps == 0:
        return x, None
    mine = NoiseKeys.draw(torch.Generator(device=device).manual_seed(seed), x.shape[0], device) if keys is None \
        else keys.derive(name)
    if name == "pgd":
        config = PGDConfig(eps=eps, eps_step=2.5 * eps / steps, max_iter=steps, norm=norm, num_random_init=1)
        return pgd(surrogate, x, y, config, keys=mine), None
    # external attacks: torch's global RNG, seeded per unit (``seed``), so their rows depend on the unit's images
    if name in ("apgd-ce", "apgd-dlr"):
        import torchattacks

        with _fork_rng(device):
            attack = torchattacks.APGD(surrogate, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=steps,
                                       n_restarts=int(suite.get("apgd_restarts", 1)), seed=seed % 2 ** 31,
                                       loss=name.partition("-")[2])
            return attack(x, y).detach(), None
    if name == "autoattack":
        try:
            from pyautoattack import AutoAttack
        except ImportError:
            from autoattack import AutoAttack
        with _fork_rng(device):
            chosen = suite.get("autoattack_attacks")  # a cheaper custom subset (the report says so)
            extra = {"attacks": list(chosen), "version": "custom"} if chosen else \
                {"version": suite.get("autoattack_version", "standard")}
            aa = AutoAttack(surrogate, norm="Linf" if norm == "linf" else "L2", eps=eps, device=device,
                            seed=seed % 2 ** 31, **extra)
            out = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
            x_adv = out[0] if isinstance(out, tuple) else out  # pyautoattack returns (x_adv, y_adv)
            return x_adv.detach(), None
    if name == "nattack":
        nattack_cfg = NAttackConfig(eps=eps, norm=norm, max_iter=int(suite.get("nattack_iter", 200)),
                                    pop_size=int(suite.get("nattack_pop", 50)),
                                    max_queries=int(suite.get("nattack_queries", 5000)), check_every=5)
        query = target.noisy_query if target.randomized else target.query
        result = nattack(query, x, y, nattack_cfg, predict=lambda z: target.decide(z).argmax(1), keys=mine)
        return result.x_adv, result.queries
    raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")


# ---- work units ----------------------------------------------------------------------------------------------------
def tag_of(model: str, defence: str) -> str:
    return f"{model}|{defence}"


def attack_config(tag: str, attack: str, eps: float) -> str:
    return f"{tag}/{attack}@eps={eps:g}"


def units(suite: dict[str, Any], num_examples: int) -> list[dict[str, Any]]:
    """Every work unit of the suite, in order: one per (model, defence, chunk of images); plain dicts."""
    chunk = int(suite.get("chunk", 25))
    out = []
    for spec in model_specs(suite):
        for defence in suite["defences"]:
            for start in range(0, num_examples, chunk):
                out.append({"model": spec["model"], "norm": spec["norm"], "eps": spec["eps"], "defence": defence,
                            "start": start, "indices": list(range(start, min(start + chunk, num_examples)))})
    return out


def unit_configs(suite: dict[str, Any], unit: dict[str, Any]) -> list[str]:
    """The row configs a unit writes (so a runner can tell whether it is finished)."""
    tag = tag_of(unit["model"], unit["defence"])
    configs = [f"{tag}/clean", f"{tag}/rigor"]
    configs += [attack_config(tag, a, e) for a in attacks_for(suite, unit["defence"]) if a != "none"
                for e in unit["eps"]]
    if "certify" in suite and is_randomized(unit["defence"]):
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


def load_data(suite: dict[str, Any], limit: int | None, roots: references.Roots, split: str | None = None):
    return _dataset(suite.get("dataset", "digits"), split or suite.get("split", "test"),
                    int(suite.get("resolution", 16)), limit, str(roots.data_root) if roots.data_root else None)


def compute_unit(suite: dict[str, Any], unit: dict[str, Any], device: str | torch.device, roots: references.Roots,
                 seed: int, limit: int | None = None) -> list[dict[str, Any]]:
    """All rows of one work unit (picklable arguments only): clean, rigor, attack and certify rows of its images.

    Model loading (and BN adaptation) happen before any timed section; ``seconds`` is attack time per image only.
    """
    device = torch.device(device)
    data = load_data(suite, limit, roots)
    model = _model(unit["model"], str(device), str(roots.model_dir) if roots.model_dir else None,
                   str(roots.data_root) if roots.data_root else None)
    tag = tag_of(unit["model"], unit["defence"])
    indices = unit["indices"]
    x, y = data.x[indices].to(device), data.y[indices].to(device)
    adaptation = None
    if unit["defence"] == "bn_adapt":
        adaptation = load_data(suite, None, roots, split="train").x[: int(suite.get("bn_images", 200))]
    # the deployed noise of NAttack's queries and success checks only (scoring, rigor passes and certify are keyed)
    query_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, tag, unit["start"], "score"))
    # the adaptation noise depends on (seed, model), not on the chunk: every chunk sees the same adapted model
    defence_gen = torch.Generator(device=device).manual_seed(common.seed_for(seed, tag, "defence"))
    target = Deployed(model, unit["defence"], suite, data.num_classes, device, defence_gen, adaptation)
    if target.randomized:
        target.smoothed.generator = query_gen
        target.generator = query_gen
    k = int(suite.get("score_draws", 10)) if target.randomized else 1
    base_row = {"kind": "compare", "model": unit["model"], "defence": unit["defence"], "norm": unit["norm"]}
    rows: list[dict[str, Any]] = []

    def score(images: torch.Tensor, config: str) -> Any:
        """Each image scored over k draws of the deployed model, draw d of image i under the keys of (config, its
        dataset index) derived by d: the same whatever the unit (a deterministic model: once, no keys)."""
        if not target.randomized:
            return score_keyed(target.decide, images, y, None, 1)
        return score_keyed(lambda z, keys: target.smoothed.scores(z, keys=keys),
                           images, y, image_keys(seed, config, indices).derive("score"), k)

    # clean, once per (model, defence) and chunk: every attack row of these images refers to it
    clean = score(x, f"{tag}/clean")
    for j, i in enumerate(indices):
        rows.append({**base_row, "config": f"{tag}/clean", "index": i, "label": int(data.y[i]), "draws": k,
                     "rate": float(clean.per_example_rate[j]), "all_draws": bool(clean.correct[j].all())})

    # rigor checks, before any attack; a randomized defence's passes p = 0, 1 run under the keys of (rigor config,
    # dataset index) derived by p, so an image's passes do not depend on the unit
    decide = _KeyedPasses(target.smoothed, image_keys(seed, f"{tag}/rigor", indices)) if target.randomized \
        else target.decide
    randomness = rigor.output_randomness(decide, x)
    surrogate = target.frozen_surrogate(tuple(x.shape[1:])) if target.randomized else target.surrogate
    grads = rigor.gradient_health(surrogate, x, y)
    probe: list[list[float]] = [[] for _ in indices]
    attacks = attacks_for(suite, unit["defence"])
    if len(unit["eps"]) < 3 and any(a in GRADIENT_ATTACKS for a in attacks):
        top = max(unit["eps"])
        for f in PROBE_FRACTIONS:
            pid = f"{tag}/probe/{f:g}"
            x_probe, _ = run_attack("pgd", suite, unit["norm"], top * f, target, x, y,
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
            x_adv, queries = run_attack(attack, suite, unit["norm"], eps, target, x, y, attack_seed,
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

    if "certify" in suite and target.randomized:
        from art_ext.smoothing import certify

        cfg = suite["certify"]
        sigma = float(cfg.get("sigma", target.sigma))
        certs = certify(target.base, x, n0=int(cfg["n0"]), n=int(cfg["n"]), sigma=sigma, alpha=float(cfg["alpha"]),
                        num_classes=data.num_classes, batch_size=int(cfg.get("batch_size", 1000)),
                        keys=image_keys(seed, f"{tag}/certify", indices))
        for j, i in enumerate(indices):
            prediction = int(certs.label[j])
            rows.append({**base_row, "config": f"{tag}/certify", "index": i, "label": int(data.y[i]), "sigma": sigma,
                         "prediction": prediction, "radius": float(certs.radius[j]),
                         "correct": prediction == int(data.y[i])})
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
    ctx.run_units(todo, compute, suite, desc=suite.get("name", "compare"))


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one unit (``compute_unit``), those of the unit's marking config last."""
    rows = compute_unit(suite, unit.spec, env.device, references.Roots(env.data_root, env.model_dir), env.seed,
                        env.limit)
    return [r for r in rows if r["config"] != unit.config] + [r for r in rows if r["config"] == unit.config]


# ---- summaries -----------------------------------------------------------------------------------------------------
def se(p: float, n: int) -> float:
    """Binomial standard error sqrt(p (1 - p) / N) of an accuracy over N images."""
    return rigor.binomial_se(p, n)


def worst_case(rows_by_attack: dict[str, dict[int, dict[str, Any]]], clean: dict[int, dict[str, Any]]
               ) -> dict[int, tuple[float, bool]]:
    """Per example: (min over clean and every attack of the correct-draw rate, correct under every draw of every
    attack and of clean). Only examples present in every input count."""
    common_idx = set(clean)
    for by_index in rows_by_attack.values():
        common_idx &= set(by_index)
    out = {}
    for i in sorted(common_idx):
        rates = [clean[i]["rate"], *(by_index[i]["rate"] for by_index in rows_by_attack.values())]
        alls = [clean[i]["all_draws"], *(by_index[i]["all_draws"] for by_index in rows_by_attack.values())]
        out[i] = (min(rates), all(alls))
    return out


def summarize(suite: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (model, defence): clean, per attack and eps, worst case over attacks per eps, rigor flags, certify."""
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], {})[int(r["index"])] = r
    pairs = []
    for spec in model_specs(suite):
        for defence in suite["defences"]:
            tag = tag_of(spec["model"], defence)
            clean = by_config.get(f"{tag}/clean", {})
            if not clean:
                continue
            n = len(clean)
            clean_mean = float(np.mean([r["rate"] for r in clean.values()]))
            clean_worst = float(np.mean([r["all_draws"] for r in clean.values()]))
            draws = next(iter(clean.values()))["draws"]
            attacks, worst = [], []
            per_eps_attacks: dict[float, dict[str, dict[int, dict[str, Any]]]] = {}
            for attack in attacks_for(suite, defence):
                for eps in spec["eps"]:
                    mine = clean if attack == "none" else by_config.get(attack_config(tag, attack, eps), {})
                    if not mine:
                        continue
                    if attack != "none":
                        per_eps_attacks.setdefault(eps, {})[attack] = mine
                    seconds = [r["seconds"] for r in mine.values() if "seconds" in r]
                    queries = [r["queries"] for r in mine.values() if r.get("queries") is not None]
                    attacks.append({"attack": attack, "eps": eps, "examples": len(mine),
                                    "robust_mean": float(np.mean([r["rate"] for r in mine.values()])),
                                    "robust_worst": float(np.mean([r["all_draws"] for r in mine.values()])),
                                    "seconds_per_example": float(np.mean(seconds)) if seconds else None,
                                    "mean_queries": float(np.mean(queries)) if queries else None})
            for eps in spec["eps"]:
                wc = worst_case(per_eps_attacks.get(eps, {}), clean)
                if wc:
                    worst.append({"eps": eps, "examples": len(wc),
                                  "robust_mean": float(np.mean([v[0] for v in wc.values()])),
                                  "robust_worst": float(np.mean([v[1] for v in wc.values()]))})
            pairs.append({"model": spec["model"], "defence": defence, "norm": spec["norm"], "eps": spec["eps"],
                          "examples": n, "draws": draws, "clean_mean": clean_mean, "clean_worst": clean_worst,
                          "attacks": attacks, "worst_case": worst,
                          "rigor": rigor_summary(attacks_for(suite, defence), spec, by_config.get(f"{tag}/rigor", {}),
                                                 per_eps_attacks, draws),
                          "certify": certify_summary(suite, by_config.get(f"{tag}/certify", {}))})
    return {"pairs": pairs}


def rigor_summary(attacks_run: list[str], spec: dict[str, Any], rigor_rows: dict[int, dict[str, Any]],
                  per_eps: dict[float, dict[str, dict[int, dict[str, Any]]]], draws: int) -> dict[str, Any]:
    """The four rigor checks of one (model, defence), from its rows (pure functions of ``art_ext.attacks.rigor``)."""
    if not rigor_rows:
        return {}
    n = len(rigor_rows)
    out: dict[str, Any] = {
        "randomized_fraction": float(np.mean([r["output_differs"] for r in rigor_rows.values()])),
        "grad_zero_fraction": float(np.mean([r["grad_zero"] for r in rigor_rows.values()])),
        "grad_nonfinite_fraction": float(np.mean([r["grad_nonfinite"] for r in rigor_rows.values()])),
        "monotonicity": [], "gradient_free": None,
    }
    # eps monotonicity: every gradient attack's curve when the suite sweeps >= 3 eps, else the PGD probe
    curves: list[tuple[str, list[float], list[float]]] = []
    if len(spec["eps"]) >= 3:
        for attack in attacks_run:
            if attack in GRADIENT_ATTACKS and all(attack in per_eps.get(e, {}) for e in spec["eps"]):
                accs = [float(np.mean([r["rate"] for r in per_eps[e][attack].values()])) for e in spec["eps"]]
                curves.append((attack, spec["eps"], accs))
    else:
        probes = [r["probe_rates"] for r in rigor_rows.values() if r.get("probe_rates")]
        if probes:
            eps_list = next(r["probe_eps"] for r in rigor_rows.values() if r.get("probe_eps"))
            curves.append(("pgd probe", eps_list, [float(v) for v in np.mean(probes, axis=0)]))
    for name, eps_list, accs in curves:
        tolerance = max(se(a, n) for a in accs) if draws > 1 else 0.0
        check_ = rigor.eps_monotonicity(eps_list, accs, tolerance=tolerance)
        out["monotonicity"].append({"curve": name, "eps": eps_list, "accuracy": accs, "flagged": check_.flagged,
                                    "message": check_.message})
    # gradient-free gap at every eps where NAttack and a gradient attack both ran
    for eps, attacks in per_eps.items():
        grads = [a for a in attacks if a in GRADIENT_ATTACKS]
        if "nattack" not in attacks or not grads:
            continue
        idx = sorted(set.intersection(*(set(attacks[a]) for a in [*grads, "nattack"])))
        key = "all_draws" if draws == 1 else "rate"
        grad_robust = torch.tensor([[attacks[a][i][key] >= 0.5 if key == "rate" else attacks[a][i][key]
                                     for i in idx] for a in grads], dtype=torch.bool)
        free = torch.tensor([attacks["nattack"][i][key] >= 0.5 if key == "rate" else attacks["nattack"][i][key]
                             for i in idx], dtype=torch.bool)
        # a randomized model disagrees with itself by chance: tolerate one SE worth of examples there
        min_examples = 1 if draws == 1 else max(1, math.ceil(math.sqrt(len(idx)) / 2))
        gap = rigor.gradient_free_gap(grad_robust, free, min_examples=min_examples)
        previous = out["gradient_free"]
        if previous is None or gap.count > previous["count"]:
            out["gradient_free"] = {"eps": eps, "count": gap.count, "flagged": gap.flagged, "message": gap.message}
    out["flags"] = rigor_flags(out)
    return out


def rigor_flags(r: dict[str, Any]) -> list[str]:
    flags = []
    if r["randomized_fraction"] > 0:
        flags.append(f"randomized outputs on {r['randomized_fraction']:.0%} of images (scored over k draws)")
    if r["grad_zero_fraction"] > 0 or r["grad_nonfinite_fraction"] > 0:
        flags.append(f"zero input gradient on {r['grad_zero_fraction']:.0%}, NaN/inf on "
                     f"{r['grad_nonfinite_fraction']:.0%} of images")
    for m in r["monotonicity"]:
        if m["flagged"]:
            flags.append(f"{m['curve']}: {m['message']}")
    if r["gradient_free"] and r["gradient_free"]["flagged"]:
        flags.append(f"eps={r['gradient_free']['eps']:g}: {r['gradient_free']['message']}")
    return flags


def certify_summary(suite: dict[str, Any], rows: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    radii = [float(r) for r in suite["certify"].get("radii", [0.0, 0.25, 0.5, 0.75, 1.0])]
    correct = np.array([r["correct"] for r in rows.values()])
    radius = np.array([r["radius"] for r in rows.values()])
    return {"examples": len(rows), "sigma": next(iter(rows.values()))["sigma"],
            "certified": {f"{r:g}": float(np.mean(correct & (radius >= r))) for r in radii},
            "acr": float(np.mean(np.where(correct, radius, 0.0)))}


# ---- report (small local helpers; the shared report module takes them over at merge) -------------------------------
def _pm(p: float, n: int) -> str:
    return f"{p:.3f} ± {se(p, n):.3f}"


def _leaderboard_entry(model: str, norm: str):
    ref = references.parse_model(model)
    if ref.scheme != "robustbench":
        return None
    from art_ext.models.robustbench import leaderboard

    threat = "L2" if norm == "l2" else "Linf"
    if ref.threat != threat:
        return None
    return leaderboard().get(ref.name, dataset=ref.dataset, threat_model=threat)


def leaderboard_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model without a defence: our clean / AutoAttack / adaptive (worst over attacks) beside the leaderboard's
    clean and AutoAttack accuracy (same model, threat and eps), differences larger than one SE flagged."""
    out = []
    for pair in summary["pairs"]:
        if pair["defence"] != "none":
            continue
        entry = _leaderboard_entry(pair["model"], pair["norm"])
        for eps in pair["eps"]:
            n = pair["examples"]
            aa = next((a for a in pair["attacks"] if a["attack"] == "autoattack" and a["eps"] == eps), None)
            wc = next((w for w in pair["worst_case"] if w["eps"] == eps), None)
            row: dict[str, Any] = {"model": pair["model"], "eps": eps, "examples": n, "clean": pair["clean_mean"],
                                   "autoattack": aa["robust_mean"] if aa else None,
                                   "adaptive": wc["robust_mean"] if wc else None, "leaderboard": None, "flags": []}
            if entry is not None and math.isclose(entry.eps_value, eps, rel_tol=1e-3):
                row["leaderboard"] = {"clean": entry.clean_acc / 100, "autoattack": entry.autoattack_acc / 100,
                                      "external": None if entry.external is None else entry.external / 100,
                                      "unreliable": entry.unreliable, "additional_data": entry.additional_data,
                                      "commit": entry.commit}
                for key in ("clean", "autoattack"):
                    ours = row[key]
                    if ours is not None and abs(ours - row["leaderboard"][key]) > se(ours, n):
                        row["flags"].append(f"{key} differs by {ours - row['leaderboard'][key]:+.3f} (> 1 SE)")
            out.append(row)
    return out


def _fmt(v: float | None, n: int) -> str:
    return "–" if v is None else _pm(v, n)


def markdown(suite: dict[str, Any], summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    lines = [f"# Suite `{suite['name']}`: {suite.get('description', '')}", "",
             f"Dataset {suite.get('dataset', 'digits')} {suite.get('split', 'test')}; seed {manifest['seed']}, git "
             f"{manifest.get('git_sha')}, torch {manifest['versions'].get('torch')}, device {manifest['device']}. "
             f"Randomized defences are scored over k = {suite.get('score_draws', 10)} draws ('mean' = expected "
             f"accuracy of one deployment, 'worst of k' = correct under all k draws); gradient attacks differentiate "
             f"a fixed-noise soft-smoothing surrogate of them. Every value is ± one standard error, binomial "
             f"sqrt(p(1-p)/N) over the N images. 'worst over attacks' counts an image robust only under clean and "
             f"every attack (per example). s/img is attack time only: model loading, training and BN adaptation "
             f"are excluded." + (f" 'autoattack' here is the custom subset {suite['autoattack_attacks']}, not the "
                                  f"standard version." if suite.get("autoattack_attacks") else ""), ""]
    # rigor
    lines += ["## Evaluation-rigor checks (before attacks)", "",
              "| model | defence | randomized outputs | zero grad | NaN grad | eps monotone | gradient-free gap | "
              "flags |",
              "|" + "---|" * 8]
    for p in summary["pairs"]:
        r = p["rigor"]
        if not r:
            continue
        mono = "; ".join(f"{m['curve']}: {'⚠ rises' if m['flagged'] else 'ok'}" for m in r["monotonicity"]) or "–"
        gap = r["gradient_free"]
        gap_s = "–" if gap is None else f"{'⚠ ' if gap['flagged'] else ''}{gap['count']} img (eps={gap['eps']:g})"
        lines.append(f"| {p['model']} | {p['defence']} | {r['randomized_fraction']:.0%} | "
                     f"{r['grad_zero_fraction']:.0%} | {r['grad_nonfinite_fraction']:.0%} | {mono} | {gap_s} | "
                     f"{'⚠ ' + len(r['flags']).__str__() if r['flags'] else 'none'} |")
    flagged = [(p, f) for p in summary["pairs"] for f in (p["rigor"] or {}).get("flags", [])]
    if flagged:
        lines += [""] + [f"- ⚠ {p['model']} / {p['defence']}: {f}" for p, f in flagged]
    # main table
    lines += ["", "## Clean and robust accuracy", "",
              "| model | defence | norm | eps | attack | images | k | robust acc (mean) | robust acc (worst of k) | "
              "s/img | queries |", "|" + "---|" * 11]
    for p in summary["pairs"]:
        n = p["examples"]
        lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | – | clean | {n} | {p['draws']} | "
                     f"{_pm(p['clean_mean'], n)} | {_pm(p['clean_worst'], n)} | – | – |")
        for eps in p["eps"]:
            for a in p["attacks"]:
                if a["eps"] != eps or a["attack"] == "none":
                    continue
                s = "–" if a["seconds_per_example"] is None else f"{a['seconds_per_example']:.3f}"
                q = "–" if a["mean_queries"] is None else f"{a['mean_queries']:.0f}"
                lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | {eps:g} | {a['attack']} | "
                             f"{a['examples']} | {p['draws']} | {_pm(a['robust_mean'], a['examples'])} | "
                             f"{_pm(a['robust_worst'], a['examples'])} | {s} | {q} |")
            w = next((w for w in p["worst_case"] if w["eps"] == eps), None)
            if w is not None:
                lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | {eps:g} | **worst over attacks** | "
                             f"{w['examples']} | {p['draws']} | {_pm(w['robust_mean'], w['examples'])} | "
                             f"{_pm(w['robust_worst'], w['examples'])} | – | – |")
    # leaderboard comparison
    board = leaderboard_rows(summary)
    if board:
        from art_ext.models.robustbench import leaderboard

        snap = leaderboard()
        lines += ["", "## Leaderboard layout: ours beside RobustBench's", "",
                  f"Our numbers on the N-image subset (± one SE); the leaderboard's on the full 10,000-image test set "
                  f"(snapshot {snap.date}, {snap.source}; per-entry commit in summary.json). 'adaptive' = worst over "
                  f"our attacks per example. A difference larger than our SE is flagged.", "",
                  "| model | eps | images | our clean | our AutoAttack | our adaptive | RobustBench clean | "
                  "RobustBench AutoAttack | flags |", "|" + "---|" * 9]
        for b in board:
            lb = b["leaderboard"]
            lb_clean = "–" if lb is None else f"{lb['clean']:.4f}"
            lb_aa = "–" if lb is None else f"{lb['autoattack']:.4f}" + (" (unreliable)" if lb["unreliable"] else "")
            n = b["examples"]
            lines.append(f"| {b['model']} | {b['eps']:g} | {n} | {_pm(b['clean'], n)} | {_fmt(b['autoattack'], n)} | "
                         f"{_fmt(b['adaptive'], n)} | {lb_clean} | {lb_aa} | "
                         f"{'⚠ ' + '; '.join(b['flags']) if b['flags'] else '–'} |")
    # certify
    certs = [p for p in summary["pairs"] if p["certify"]]
    if certs:
        cfg = suite["certify"]
        radii = list(certs[0]["certify"]["certified"])
        lines += ["", "## Certified accuracy (Cohen et al. CERTIFY)", "",
                  f"n0 = {cfg['n0']}, n = {cfg['n']}, alpha = {cfg['alpha']}; ± one binomial SE over the images.", "",
                  "| model | defence | sigma | images | " + " | ".join(f"r={r}" for r in radii) + " | ACR |",
                  "|" + "---|" * (len(radii) + 5)]
        for p in certs:
            c = p["certify"]
            lines.append(f"| {p['model']} | {p['defence']} | {c['sigma']:g} | {c['examples']} | " +
                         " | ".join(_pm(v, c["examples"]) for v in c["certified"].values()) + f" | {c['acr']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(suite: dict[str, Any], summary: dict[str, Any], out: Path, manifest: dict[str, Any]) -> str | None:
    """Robust accuracy against eps per attack (mean and worst of k), one panel per (model, defence)."""
    pairs = [p for p in summary["pairs"] if len(p["eps"]) > 1]
    if not pairs:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, p in zip(axes[0], pairs, strict=True):
        names = [a for a in attacks_for(suite, p["defence"]) if a != "none"]
        for name in names:
            pts = sorted((a["eps"], a["robust_mean"], a["robust_worst"]) for a in p["attacks"] if a["attack"] == name)
            if pts:
                e, m, w = zip(*pts, strict=True)
                line, = ax.plot(e, m, marker="o", label=f"{name} (mean)")
                if p["draws"] > 1:
                    ax.plot(e, w, marker="x", linestyle="--", color=line.get_color(), label=f"{name} (worst of k)")
        wc = sorted((w["eps"], w["robust_mean"]) for w in p["worst_case"])
        if wc:
            e, m = zip(*wc, strict=True)
            ax.plot(e, m, marker="s", color="black", label="worst over attacks")
        ax.set_ylim(-0.04, 1.02)
        ax.set_xlabel(f"eps ({p['norm']})")
        ax.set_ylabel("robust accuracy")
        ax.set_title(f"{p['model']} / {p['defence']}\n{p['examples']} images, k={p['draws']}, seed {manifest['seed']}",
                     fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "robust_vs_eps.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    summary = summarize(suite, rows)
    summary["leaderboard"] = leaderboard_rows(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    text = markdown(suite, summary, manifest) if summary["pairs"] else "(no rows yet)\n"
    figure = plot(suite, summary, out, manifest)
    if figure:
        text += (f"\n![robust accuracy against eps]({figure}) (robust accuracy per attack against eps; "
                 f"{summary['pairs'][0]['examples']} images, seed {manifest['seed']})\n")
    return text
