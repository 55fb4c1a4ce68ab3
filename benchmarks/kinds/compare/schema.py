"""The ``compare`` kind's suite schema and the checks that need more than one key (``check``), and the reference
checks before any work (``prepare``)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks import common, references
from benchmarks.common import Key, Table

ATTACKS = ("none", "pgd", "apgd-ce", "apgd-dlr", "autoattack", "nattack")
GRADIENT_ATTACKS = ("pgd", "apgd-ce", "apgd-dlr", "autoattack")
SMOOTHING_MODES = ("soft", "prediction", "weighted")


# ---- schema --------------------------------------------------------------------------------------------------------
def _eps_check(v: Any) -> str | None:
    # a single eps of 0 would make the PGD probe of the monotonicity check [0, 0, 0]; a grid needs 3 points
    return common.eps_budget(grid_min=3)(v)


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


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, row tag) of every (model, defence) pair, for the uniqueness check before any work (two model entries
    with the same reference and another threat model would share their rows)."""
    return [(f"models[{i}] with defences[{j}]", tag_of(spec["model"], defence))
            for i, spec in enumerate(model_specs(suite)) for j, defence in enumerate(suite["defences"])]


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


def tag_of(model: str, defence: str) -> str:
    return f"{model}|{defence}"


def attack_config(tag: str, attack: str, eps: float) -> str:
    return f"{tag}/{attack}@eps={eps:g}"
