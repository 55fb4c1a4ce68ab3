"""An image's rows do not depend on the work unit it is computed in: every kind's noise is keyed by (run seed, config
id, the image's dataset index) (``benchmarks.image_keys``), so two runs that cut the images into other chunks and
stop at another ``--limit`` give the same rows for the images they share.

Compared exactly: the fields that come from certification, smoothed inference and keyed scoring (labels, counts,
radii, p_a_lower, rates), since the same kernels run on the same data in the same order per image. A model forward
on a batch of other images may block the CPU convolution differently (values change at the 1e-7 level), which could
only flip a vote whose logits tie to that precision; none does here. Attack outputs (PGD distances) are compared with
a tolerance: the attack's gradients are computed on the whole chunk, and a batched backward pass may sum in another
order (float32, rtol 1e-4 after a few steps). Rows that still depend on the unit because their attack draws from a
generator of the unit (EPGD, the PGD / EPGD inputs of smoothed_inference, Table V, the compare kind's attacks, all
with a random start, and its rigor randomness check) are left out until the attacks take per-image keys.
"""

import math
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks import common, run

CERTIFY = """
kind = "certify"
limit = 6
n0 = 20
n = 200
alpha = 0.01
batch_size = 64
images_per_chunk = {chunk}
radii = [0.0, 0.25, 0.5]

[[configs]]
model = "digits_lenet"
sigma = 0.25

[[configs]]
model = "digits_mlp"
sigma = 0.5
method = "sequential"
n_max = 300
"""

NORMALIZED_NOISE = """
kind = "normalized_noise"
limit = 6
images_per_chunk = {chunk}
n0 = 10
n = 60
alpha = 0.01
batch_size = 50
radii = [0.0, 0.1]
transfer_models = ["digits_mlp"]
attack_draws = 2
configs = [
  {{ table = "I", row = "unet", denoiser = "digits_unet_nn_100" }},
  {{ table = "II", row = "unet", model = "digits_cnn", denoiser = "digits_unet_nn_100" }},
  {{ table = "II", row = "cohen", model = "digits_cnn_noise025", sigma = 0.25 }},
]
"""

BN_ADAPTATION = """
kind = "bn_adaptation"
limit = 6
seeds = 1
adaptation_images = 50

[noise_accuracy]
models = ["digits_cnn"]
sigmas = [0.5]

[ablation]
model = "digits_cnn"
sigma = 0.5
rhos = [1.0]
adaptation_sizes = [8]

[certify]
n0 = 10
n_auto = 30
n = 100
alpha = 0.01
batch_size = 64
sigma = 0.5
sigmas = [0.25, 0.5]
images_per_chunk = {chunk}
radii = [0.0, 0.25, 0.5]

[[certify.configs]]
name = "fixed"
model = "digits_cnn"

[[certify.configs]]
name = "auto"
model = "digits_cnn"
auto = true

[[certify.configs]]
name = "adapt + auto"
model = "digits_cnn"
adapt = true
auto = true
"""

SMOOTHED_INFERENCE = """
kind = "smoothed_inference"
models = ["digits_cnn"]
limit = 6
val_limit = 2
val_seeds = 1
test_seeds = 1
sigmas = [0.25]
num_samples = [1, 4, 16]
modes = ["prediction", "weighted", "soft"]
batch_size = 24
images_per_chunk = {chunk}

[attack]
norm = "linf"
eps = 0.1
eps_step = 0.05
max_iter = 1
num_random_init = 0
epgd_samples = 2
"""

ATTACKS = """
kind = "attacks"
limit = 6
chunk = {chunk}
eps = 0.5
norm = "l2"
max_iter = 2
score_draws = 3

[[targets]]
name = "standard"
model = "digits_cnn"
deployment = "plain"
attacks = [{{ name = "pgd" }}]

[[targets]]
name = "smoothed"
model = "digits_cnn_noise050"
deployment = "smoothed"
sigma = 0.5
smoothing_samples = 4
attacks = [{{ name = "pgd" }}]
"""

COMPARE = """
kind = "compare"
dataset = "digits"
limit = 6
chunk = {chunk}
norm = "l2"
eps = 0.5
steps = 2
score_draws = 3
sigma = 0.25
smoothing_samples = 4
models = ["digits_cnn"]
defences = ["none", "smoothed_inference:soft"]
attacks = ["none", "pgd"]

[certify]
n0 = 10
n = 100
alpha = 0.01
batch_size = 64
radii = [0.0, 0.25]
"""

#: a row's fields that noise keys fix exactly, or None for a row left out (see the module docstring)
Exact = Callable[[dict[str, Any]], dict[str, Any] | None]
#: a row's fields compared with a tolerance (attack outputs computed on the whole chunk)
Close = Callable[[dict[str, Any]], dict[str, float]]

UNTIMED = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731


def _bn(row):
    return UNTIMED(row) if row["config"].startswith("cert/") else None  # parts 1-2: one row per seed, not per image


def _smoothed(row):
    return {"label": row["label"], "correct": row["correct"]["clean"], "abstain": row["abstain"]["clean"]}


def _attacks(row):
    return {k: v for k, v in UNTIMED(row).items() if k != "l2_distance"}


def _compare(row):
    # clean scoring and certify rows; the attack and probe rows start PGD from a random point drawn from a generator
    # of the unit, and the rigor check's two passes draw from one
    return UNTIMED(row) if row["config"].endswith(("/clean", "/certify")) else None


CASES: dict[str, tuple[str, Exact, Close]] = {
    "certify": (CERTIFY, UNTIMED, lambda row: {}),
    "normalized_noise": (NORMALIZED_NOISE, UNTIMED, lambda row: {}),
    "bn_adaptation": (BN_ADAPTATION, _bn, lambda row: {}),
    "smoothed_inference": (SMOOTHED_INFERENCE, _smoothed, lambda row: {}),
    "attacks": (ATTACKS, _attacks, lambda row: {"l2_distance": row.get("l2_distance") or 0.0}),
    "compare": (COMPARE, _compare, lambda row: {}),
}


def _rows(tmp_path, text: str, chunk: int, limit: int) -> dict[tuple[str, int], dict[str, Any]]:
    suite = tmp_path / f"chunk{chunk}.toml"
    suite.write_text(text.format(chunk=chunk))
    out = tmp_path / f"out{chunk}"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--device", "cpu",
                     "--limit", str(limit)]) == 0
    return {(r["config"], int(r["index"])): r for r in common.read_rows(out)}


@pytest.mark.parametrize("kind", list(CASES))
def test_an_images_rows_do_not_depend_on_its_chunk_or_the_limit(tmp_path, kind):
    text, exact, close = CASES[kind]
    one = _rows(tmp_path, text, 1, 3)  # one image per unit, 3 images
    three = _rows(tmp_path, text, 3, 4)  # 3 images per unit (a chunk of 3, then one of 1), 4 images
    compared = 0
    for key, row in one.items():
        if exact(row) is None or key[1] >= 3:
            continue
        other = three[key]
        assert exact(row) == exact(other), key
        for name, value in close(row).items():
            assert math.isclose(value, close(other)[name], rel_tol=1e-4, abs_tol=1e-6), (key, name)
        compared += 1
    assert compared >= 5  # at least two configs and their images
