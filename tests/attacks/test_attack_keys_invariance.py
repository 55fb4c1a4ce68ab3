"""Per-image noise keys (DESIGN.md convention 6): with the same seed (or keys), every attack gives each image the
same adversarial example whatever the batch size, the chunking, the order of the images and whether the image is
attacked alone or among others, through the cores and through the ART adapters; and inputs of another float dtype
are cast once to the model's dtype (issue 19, items 1 and 6).

How examples are compared (``assert_same``): the toy model (``ElementwiseToy``) computes each image with exact
elementwise arithmetic and per-row sums only, so an image's logits and gradients do not depend on the batch it is in
(a convolution or a matmul may block a batch differently). On the machine these tests were written on, every
comparison below is bit-exact (checked with torch.equal). They still allow 1e-5: the attacks apply transcendental
functions (log, log1p, tanh) to whole batches, and on a CPU whose vectorised kernel of such a function differs from
its scalar one by an ulp, an element in the body of a tensor is computed differently from one in its tail, so an
image's value could move by rounding with its place in the batch (torch's atanh and pow do so here, which is why
NAttack computes arctanh with log1p and the l2 random start raises each image's radius to its power alone); NAttack's
NES iterations amplify such differences. Noise keyed by batch instead of by image moves examples by ~sigma >= 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext.attacks import (
    EPGD,
    PGD,
    EPGDConfig,
    NAttack,
    NAttackConfig,
    PGDConfig,
    SmoothAdvConfig,
    SmoothAdvPGD,
    epgd,
    nattack,
    pgd,
    smoothadv_pgd,
)
from art_ext.attacks._adapter import final_projection
from art_ext.attacks._common import model_dtype, to_model_dtype
from art_ext.ops import norms
from art_ext.smoothing.keys import NoiseKeys
from art_ext.types import Bounds

SHAPES = [(1, 2, 2), (1, 5, 5), (3, 7, 7), (1, 16, 16), (3, 32, 32)]
BATCH_SIZES = [1, 3, 7, 37]
NUM_IMAGES = 37


class ElementwiseToy(nn.Module):
    """logits[b, k] = sum_d w[k, d] h(x[b, d]) + c[k] with h(v) = v (1.5 - v): exact elementwise arithmetic and
    per-row sums only, so the computation of one image does not depend on the batch it is in."""

    def __init__(self, features: int, classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(3 * torch.randn(classes, features, generator=g) / features ** 0.5)  # [K, D]
        self.bias = nn.Parameter(torch.zeros(classes))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)  # [B, D]
        h = v * (1.5 - v)  # a non-linear feature without transcendental functions
        return (h[:, None, :] * self.weight).sum(-1) + self.bias  # [B, K]


def _data(shape: tuple[int, ...], seed: int = 0) -> tuple[ElementwiseToy, torch.Tensor, torch.Tensor]:
    model = ElementwiseToy(int(np.prod(shape)), seed=seed)
    x = torch.rand(NUM_IMAGES, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def assert_same(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, what: str = "") -> None:
    """Equal up to the rounding of position-dependent CPU kernels (see the module docstring)."""
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=1e-5, msg=lambda m: f"{what}: {m}")


def _eps(shape: tuple[int, ...]) -> float:
    return 0.5 * (int(np.prod(shape)) / 49) ** 0.5  # an l2 radius that grows with the image, so attacks move


# every core that draws randomness, as f(model, x, y, keys) -> x_adv, and its ART adapter at a given batch size
CORES = {
    "pgd": lambda m, x, y, eps, **kw: pgd(m, x, y, PGDConfig(eps, eps / 4, 4, "l2", num_random_init=2), **kw),
    "pgd-linf": lambda m, x, y, eps, **kw: pgd(m, x, y, PGDConfig(0.05, 0.02, 3, "linf", num_random_init=1), **kw),
    "epgd": lambda m, x, y, eps, **kw: epgd(m, x, y, EPGDConfig(eps, eps / 4, sigma=0.25, max_iter=3, eot_samples=2,
                                                                num_random_init=2), **kw),
    "smoothadv-fixed": lambda m, x, y, eps, **kw: smoothadv_pgd(
        m, x, y, SmoothAdvConfig(eps, sigma=0.25, max_iter=3, num_noise=3, num_random_init=1), **kw),
    "smoothadv-fresh": lambda m, x, y, eps, **kw: smoothadv_pgd(
        m, x, y, SmoothAdvConfig(eps, sigma=0.25, max_iter=3, num_noise=3, noise="fresh", num_random_init=2), **kw),
    "nattack": lambda m, x, y, eps, **kw: nattack(
        m, x, y, NAttackConfig(0.1, max_iter=6, pop_size=8, check_every=2), **kw).x_adv,
}

ADAPTERS = {
    "pgd": lambda c, eps, bs: PGD(c, norm=2, eps=eps, eps_step=eps / 4, max_iter=4, num_random_init=2,
                                  batch_size=bs, seed=11),
    "epgd": lambda c, eps, bs: EPGD(c, sigma=0.25, norm=2, eps=eps, eps_step=eps / 4, max_iter=3, eot_samples=2,
                                    num_random_init=2, batch_size=bs, seed=11),
    "smoothadv-fresh": lambda c, eps, bs: SmoothAdvPGD(c, sigma=0.25, eps=eps, max_iter=3, num_noise=3, noise="fresh",
                                                       num_random_init=2, batch_size=bs, seed=11),
    "nattack": lambda c, eps, bs: NAttack(c, eps=0.1, max_iter=6, pop_size=8, batch_size=bs, seed=11),
}


def _chunked(core, model, x, y, eps, keys, size):
    parts = [core(model, x[i:i + size], y[i:i + size], eps, keys=keys[i:i + size]) for i in range(0, len(x), size)]
    return torch.cat(parts)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(CORES))
def test_core_is_independent_of_batching_order_and_company(name, shape):
    model, x, y = _data(shape)
    core, eps = CORES[name], _eps(shape)
    keys = NoiseKeys.from_seed(5, range(NUM_IMAGES))
    whole = core(model, x, y, eps, keys=keys)
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert not torch.equal(whole, x)  # the attack moved the images
    for size in BATCH_SIZES[:-1]:  # chunks of 1 (each image alone), 3 and 7
        assert_same(_chunked(core, model, x, y, eps, keys, size), whole, f"chunks of {size}")
    perm = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(2))
    assert_same(core(model, x[perm], y[perm], eps, keys=keys[perm]), whole[perm], "permuted")  # any order
    # a seeded generator is one draw of keys for the whole call: the same as passing those keys
    drawn = NoiseKeys.draw(torch.Generator().manual_seed(9), NUM_IMAGES)
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert torch.equal(core(model, x, y, eps, generator=torch.Generator().manual_seed(9)),
                       core(model, x, y, eps, keys=drawn))  # the same call twice: same kernels, same data
    other = core(model, x, y, eps, keys=keys.derive("other"))
    assert float((other - whole).abs().max()) > 1e-2  # the keys matter, far beyond the tolerance


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_adapter_is_independent_of_batch_size_and_equals_the_core(name, shape):
    model, x, y = _data(shape)
    eps = _eps(shape)
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=4,
                            clip_values=(0.0, 1.0))
    outs = [ADAPTERS[name](clf, eps, bs).generate(x.numpy(), y.numpy()) for bs in BATCH_SIZES]
    for bs, out in zip(BATCH_SIZES[1:], outs[1:], strict=True):
        assert_same(out, outs[0], f"batch_size={bs} vs 1")
    # the core on all images at once with the adapter's seed, then the adapters' final projection
    attack = ADAPTERS[name](clf, eps, 37)
    core = {PGD: pgd, EPGD: epgd, SmoothAdvPGD: smoothadv_pgd, NAttack: lambda *a, **k: nattack(*a, **k).x_adv}
    expected = core[type(attack)](model, x, y, attack.config, generator=torch.Generator().manual_seed(11))
    expected = final_projection(x, expected, float(attack.config.eps), attack.config.norm, Bounds(0.0, 1.0))
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    np.testing.assert_array_equal(outs[-1], expected.numpy())  # one batch of 37: the same calls as the core


def test_nattack_adapter_queries_do_not_depend_on_batch_size():
    model, x, y = _data((1, 5, 5))
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(1, 5, 5), nb_classes=4,
                            clip_values=(0.0, 1.0))
    runs = []
    for bs in (2, 37):
        attack = ADAPTERS["nattack"](clf, 0.5, bs)
        attack.generate(x.numpy(), y.numpy())
        runs.append((attack.queries, attack.success))
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert 0 < runs[0][1].sum() < NUM_IMAGES  # some images stop early, others go on: the active set changes


def test_keys_and_generator_are_exclusive_and_counted():
    model, x, y = _data((1, 5, 5))
    keys = NoiseKeys.from_seed(0, range(NUM_IMAGES))
    with pytest.raises(ValueError, match="not both"):
        pgd(model, x, y, PGDConfig(0.5, 0.1, 2, num_random_init=1), keys=keys, generator=torch.Generator())
    with pytest.raises(ValueError, match="holds 3 keys but x has 37 images"):
        epgd(model, x, y, EPGDConfig(0.5, 0.1, sigma=0.25, max_iter=2), keys=keys[:3])
    with pytest.raises(ValueError, match="not both"):  # checked even when the call draws nothing
        pgd(model, x, y, PGDConfig(0.5, 0.1, 2), keys=keys, generator=torch.Generator())


def test_deterministic_pgd_leaves_the_generator_untouched():
    model, x, y = _data((1, 5, 5))
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    pgd(model, x, y, PGDConfig(0.5, 0.1, 2), generator=g)  # no random start: nothing drawn
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert torch.equal(g.get_state(), state)
    pgd(model, x, y, PGDConfig(0.5, 0.1, 2, num_random_init=1), generator=g)
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert not torch.equal(g.get_state(), state)


# ---- dtypes (issue 19, item 6) -------------------------------------------------------------------------------------
RUNS = {
    "pgd": lambda m, x, y: pgd(m, x, y, PGDConfig(0.5, 0.1, 3, "l2", num_random_init=1),
                               generator=torch.Generator().manual_seed(0)),
    "epgd": lambda m, x, y: epgd(m, x, y, EPGDConfig(0.5, 0.1, sigma=0.25, max_iter=3, eot_samples=2,
                                                     num_random_init=1), generator=torch.Generator().manual_seed(0)),
    "smoothadv": lambda m, x, y: smoothadv_pgd(m, x, y, SmoothAdvConfig(0.5, sigma=0.25, max_iter=3, num_noise=2),
                                               generator=torch.Generator().manual_seed(0)),
    "nattack": lambda m, x, y: nattack(m, x, y, NAttackConfig(0.1, max_iter=4, pop_size=6),
                                       generator=torch.Generator().manual_seed(0)).x_adv,
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(RUNS))
def test_other_input_dtypes_are_cast_once_to_the_models(name, dtype, tiny_model, batch):
    """A float32 model attacked with float64 / float16 / bfloat16 images: computed in float32 from the one cast,
    returned in the caller's dtype. The cast input x.to(dtype).float() runs the same kernels on the same values as
    the float32 call, hence bit-equality; a float64 result is the float32 one exactly (the widening is exact)."""
    x, y = batch
    x_other = x.to(dtype)
    out = RUNS[name](tiny_model, x_other, y)
    assert out.dtype == dtype and out.shape == x.shape
    reference = RUNS[name](tiny_model, x_other.float(), y)  # what the model sees after the cast
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert torch.equal(out, reference.to(dtype))
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    slack = 1e-6 if dtype == torch.float64 else 1e-2  # a narrower dtype rounds the returned point
    limit = 0.1 if name == "nattack" else 0.5
    assert (norms.lp_norm((out - x_other).double(), "linf" if name == "nattack" else "l2") <= limit + slack).all()


@pytest.mark.parametrize("name", list(RUNS))
def test_float64_model_computes_in_float64(name, tiny_model, batch):
    x, y = batch
    model64 = tiny_model.double()
    out = RUNS[name](model64, x, y)  # float32 images, float64 model: cast up once, result back in float32
    assert out.dtype == torch.float32
    # same-kernel: batch-invariant test model (exact arithmetic, per-row sums), same keyed noise
    assert torch.equal(out, RUNS[name](model64, x.double(), y).float())


def test_art_adapter_on_a_float64_model():
    model, x, y = _data((1, 5, 5))
    clf = PyTorchClassifier(model.double(), loss=nn.CrossEntropyLoss(), input_shape=(1, 5, 5), nb_classes=4,
                            clip_values=(0.0, 1.0))
    out = EPGD(clf, sigma=0.25, eps=0.5, eps_step=0.1, max_iter=2, eot_samples=2, seed=0).generate(x.numpy(), y.numpy())
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_model_dtype_and_refused_inputs():
    assert model_dtype(nn.Linear(2, 2).double()) == torch.float64
    assert model_dtype(nn.ReLU()) == torch.float32 and model_dtype(lambda z: z) == torch.float32
    with pytest.raises(ValueError, match=r"x has dtype torch.uint8; expected floating inputs"):
        to_model_dtype(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"torch.float64 .* overflow the model's dtype torch.float32"):
        to_model_dtype(torch.full((1, 1, 2, 2), 1e39, dtype=torch.float64), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="dtype torch.int64"):
        pgd(nn.Linear(4, 2), torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, dtype=torch.int64),
            PGDConfig(0.5, 0.1, 1))
