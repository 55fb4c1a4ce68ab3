"""An image's rows do not depend on the work unit it is computed in: every kind's noise and every art_ext attack's
randomness (random starts, EOT noise, NAttack's mean and populations, Table V's deployed noise during the attack,
the rigor check's passes) is keyed by (run seed, config id, the image's dataset index) (``benchmarks.image_keys``),
so two runs that cut the images into other chunks and stop at another ``--limit`` give the same rows for the images
they share.

Compared exactly: labels, counts, radii, p_a_lower, booleans and rates (fractions of correct draws), since the same
kernels run on the same data in the same order per image for certification, smoothed inference and keyed scoring.
A model forward or backward on a batch of other images may block the CPU convolution differently (values change at
the 1e-7 level), which could only flip a vote, or the sign of an l_inf step, whose value ties to that precision; none
does here. Attack perturbation sizes (``l2_distance``, ``perturbation``) are floats of an attack whose gradients
are computed on the whole chunk, so a batched backward pass may sum in another order: they are compared with
rel_tol 1e-4 (float32 after a few steps). Left out, with their reasons: rows whose randomness is still of the unit,
namely external attacks (torchattacks' APGD, AutoAttack: torch's global RNG, seeded per unit) and NAttack against a
randomized deployment (its queries and success checks carry no image index, so their noise is drawn from a generator
of the unit).
"""

import math
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks import common, run

# each suite as a function of its images per work unit


def certify(chunk: int) -> dict[str, Any]:
    return {"kind": "certify", "limit": 6, "n0": 20, "n": 200, "alpha": 0.01, "batch_size": 64,
            "images_per_chunk": chunk, "radii": [0.0, 0.25, 0.5],
            "configs": [{"model": "digits_lenet", "sigma": 0.25},
                        {"model": "digits_mlp", "sigma": 0.5, "method": "sequential", "n_max": 300}]}


def certified_training(chunk: int) -> dict[str, Any]:
    # zoo models only (ART's trainers train once per run, not per unit); two configs at one sigma share the noise
    return {"kind": "certified_training", "limit": 6, "n0": 20, "n": 200, "alpha": 0.01, "batch_size": 64,
            "images_per_chunk": chunk, "radii": [0.0, 0.25],
            "configs": [{"name": "Gaussian", "method": "gaussian", "sigma": 0.25, "model": "digits_cnn_noise025"},
                        {"name": "MACER", "method": "macer", "sigma": 0.25, "model": "digits_cnn_macer025"}]}


def normalized_noise(chunk: int) -> dict[str, Any]:
    return {"kind": "normalized_noise", "limit": 6, "images_per_chunk": chunk, "n0": 10, "n": 60, "alpha": 0.01,
            "batch_size": 50, "radii": [0.0, 0.1], "transfer_models": ["digits_mlp"], "attack_draws": 2,
            "configs": [{"table": "I", "row": "unet", "denoiser": "digits_unet_nn_100"},
                        {"table": "II", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"},
                        {"table": "II", "row": "cohen", "model": "digits_cnn_noise025", "sigma": 0.25},
                        {"table": "V", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"}]}


def bn_adaptation(chunk: int) -> dict[str, Any]:
    return {"kind": "bn_adaptation", "limit": 6, "seeds": 1, "adaptation_images": 50,
            "noise_accuracy": {"models": ["digits_cnn"], "sigmas": [0.5]},
            "ablation": {"model": "digits_cnn", "sigma": 0.5, "rhos": [1.0], "adaptation_sizes": [8]},
            "certify": {"n0": 10, "n_auto": 30, "n": 100, "alpha": 0.01, "batch_size": 64, "sigma": 0.5,
                        "sigmas": [0.25, 0.5], "images_per_chunk": chunk, "radii": [0.0, 0.25, 0.5],
                        "configs": [{"name": "fixed", "model": "digits_cnn"},
                                    {"name": "auto", "model": "digits_cnn", "auto": True},
                                    {"name": "adapt + auto", "model": "digits_cnn", "adapt": True, "auto": True}]}}


def smoothed_inference(chunk: int) -> dict[str, Any]:
    return {"kind": "smoothed_inference", "models": ["digits_cnn"], "limit": 6, "val_limit": 2, "val_seeds": 1,
            "test_seeds": 1, "sigmas": [0.25], "num_samples": [1, 4, 16], "modes": ["prediction", "weighted", "soft"],
            "batch_size": 24, "images_per_chunk": chunk,
            "attack": {"norm": "linf", "eps": 0.1, "eps_step": 0.05, "max_iter": 1, "num_random_init": 0,
                       "epgd_samples": 2}}


NATTACK = {"name": "nattack", "nes_iter": 4, "pop_size": 6, "max_queries": 40, "check_every": 2}


def attacks(chunk: int) -> dict[str, Any]:
    return {"kind": "attacks", "limit": 6, "chunk": chunk, "eps": 0.5, "norm": "l2", "max_iter": 2, "score_draws": 3,
            "targets": [
                {"name": "standard", "model": "digits_cnn", "deployment": "plain",
                 "attacks": [{"name": "pgd", "num_random_init": 1}, NATTACK]},
                {"name": "quantised", "model": "digits_cnn", "deployment": "quantised",
                 "attacks": [{"name": "bpda_pgd", "num_random_init": 1}]},
                {"name": "smoothed", "model": "digits_cnn_noise050", "deployment": "smoothed", "sigma": 0.5,
                 "smoothing_samples": 4,
                 "attacks": [{"name": "pgd", "num_random_init": 1},
                             {"name": "epgd", "samples": 2, "num_random_init": 1},
                             {"name": "smoothadv", "samples": 2}, NATTACK]}]}


def compare(chunk: int) -> dict[str, Any]:
    return {"kind": "compare", "dataset": "digits", "limit": 6, "chunk": chunk, "norm": "l2", "eps": 0.5, "steps": 2,
            "score_draws": 3, "sigma": 0.25, "smoothing_samples": 4, "models": ["digits_cnn"],
            "defences": ["none", "smoothed_inference:soft"], "attacks": ["none", "pgd", "apgd-ce", "nattack"],
            "apgd_restarts": 1, "nattack_iter": 4, "nattack_pop": 6, "nattack_queries": 40,
            "certify": {"n0": 10, "n": 100, "alpha": 0.01, "batch_size": 64, "radii": [0.0, 0.25]}}


#: a row's fields that noise keys fix exactly, or None for a row left out (see the module docstring)
Exact = Callable[[dict[str, Any]], dict[str, Any] | None]
#: a row's fields compared with a tolerance (attack outputs computed on the whole chunk)
Close = Callable[[dict[str, Any]], dict[str, float]]

UNTIMED = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731


def _bn(row):
    return UNTIMED(row) if row["config"].startswith("cert/") else None  # parts 1-2: one row per seed, not per image


def _smoothed(row):
    # clean, PGD and EPGD inputs: the attacks' random starts and EOT noise are keyed per image
    return {"label": row["label"], "correct": row["correct"], "abstain": row["abstain"]}


def _attacks(row):
    if row["target"] == "smoothed" and row["attack"].startswith("nattack"):
        return None  # its queries' deployed noise comes from a generator of the unit (no image index to key it)
    return {k: v for k, v in UNTIMED(row).items() if k != "l2_distance"}


def _compare(row):
    if row["config"].endswith(("/clean", "/certify", "/rigor")):
        return UNTIMED(row)  # keyed scoring, certify, rigor passes and PGD probes
    if "/apgd-ce@" in row["config"]:
        return None  # torchattacks' APGD draws from torch's global RNG, seeded per unit: cannot be keyed per image
    if "/nattack@" in row["config"] and row["defence"] != "none":
        return None  # NAttack's queries of a randomized defence: noise from a generator of the unit
    return {k: v for k, v in UNTIMED(row).items() if k != "perturbation"}


#: per kind, config ids (substrings) whose rows must be among those compared: the keyed attacks are covered
COVERED: dict[str, tuple[str, ...]] = {
    "certify": (), "bn_adaptation": ("cert/",), "smoothed_inference": (), "certified_training": ("MACER",),
    "normalized_noise": ("V/",),
    "attacks": ("standard/pgd", "standard/nattack", "quantised/bpda_pgd", "smoothed/pgd", "smoothed/epgd",
                "smoothed/smoothadv"),
    "compare": ("|none/pgd@", "|none/nattack@", "soft/pgd@", "soft/rigor"),
}

Suite = Callable[[int], dict[str, Any]]

CASES: dict[str, tuple[Suite, Exact, Close]] = {
    "certify": (certify, UNTIMED, lambda row: {}),
    "certified_training": (certified_training, UNTIMED, lambda row: {}),
    "normalized_noise": (normalized_noise, UNTIMED, lambda row: {}),
    "bn_adaptation": (bn_adaptation, _bn, lambda row: {}),
    "smoothed_inference": (smoothed_inference, _smoothed, lambda row: {}),
    "attacks": (attacks, _attacks, lambda row: {"l2_distance": row.get("l2_distance") or 0.0}),
    "compare": (compare, _compare, lambda row: {"perturbation": row.get("perturbation") or 0.0}),
}


def _rows(tmp_path, write_suite, suite_of: Suite, chunk: int, limit: int) -> dict[tuple[str, int], dict[str, Any]]:
    suite = write_suite(**suite_of(chunk), file=f"chunk{chunk}.toml")
    out = tmp_path / f"out{chunk}"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--device", "cpu",
                     "--limit", str(limit)]) == 0
    return {(r["config"], int(r["index"])): r for r in common.read_rows(out)}


SLOW = {"normalized_noise", "attacks", "compare"}  # over 10 s each on a loaded 2-core box


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in CASES])
def test_an_images_rows_do_not_depend_on_its_chunk_or_the_limit(tmp_path, write_suite, kind):
    suite_of, exact, close = CASES[kind]
    one = _rows(tmp_path, write_suite, suite_of, 1, 3)  # one image per unit, 3 images
    three = _rows(tmp_path, write_suite, suite_of, 3, 4)  # 3 images per unit (a chunk of 3, then one of 1), 4 images
    compared = set()
    for key, row in one.items():
        if exact(row) is None or key[1] >= 3:
            continue
        other = three[key]
        assert exact(row) == exact(other), key
        for name, value in close(row).items():
            assert math.isclose(value, close(other)[name], rel_tol=1e-4, abs_tol=1e-6), (key, name)
        compared.add(key)
    assert len(compared) >= 5  # at least two configs and their images
    missing = [c for c in COVERED[kind] if not any(c in config for config, _ in compared)]
    assert not missing, f"no compared rows of {missing}; compared configs: {sorted({c for c, _ in compared})}"
