"""Per-image noise keys: the same seed gives the same noise, counts, certificates and scores for any batch size,
chunking, or company of other images.

Bit-equality is justified here: each image's noise is made by the same ``normal_`` calls on the same block shapes
(``NoiseStreams``), and the toy bases compute every sample's logits row by row with the same kernels whatever the
batch (a float64 matrix product over the flattened sample, an elementwise softmax), so only the batch composition
differs between the compared calls.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.smoothing import (
    NoiseKeys,
    NoiseStreams,
    SmoothedInference,
    SmoothedInferenceConfig,
    auto_noise_certify,
    certify,
    certify_sequential,
    predict,
    sample_counts,
    smoothed_scores,
)
from art_ext.smoothing.keys import block_samples

SHAPES = [(1, 2, 2), (1, 5, 5), (3, 7, 7), (1, 16, 16), (3, 32, 32)]
BATCH_SIZES = [1, 7, 37, 128, 10_000]


class Linear3(nn.Module):
    """Three-class linear base in float64 row by row: logits [m, 3] = flatten(x) @ W^T + b."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        d = shape[0] * shape[1] * shape[2]
        w = torch.randn(3, d, generator=torch.Generator().manual_seed(11), dtype=torch.float64) / d**0.5
        self.register_buffer("w", w)
        self.register_buffer("b", torch.tensor([0.0, 0.1, -0.1], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1).to(torch.float64) @ self.w.T + self.b).to(x.dtype)


def images(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("shape", SHAPES)
def test_stream_samples_do_not_depend_on_the_request_pattern(shape) -> None:
    streams = NoiseStreams(NoiseKeys.from_seed(7, range(3)), shape)
    count = 3 * streams.block + 5  # crosses block boundaries
    whole = streams.samples(2, 0, count)
    for step in (1, 2, streams.block - 1, streams.block + 3):
        parts = [streams.samples(2, j, min(step, count - j)) for j in range(0, count, step)]
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(torch.cat(parts), whole)  # same normal_ calls on the same block shapes
    fresh = NoiseStreams(NoiseKeys.from_seed(7, [5, 2]), shape)  # image 2 alone, in another company
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(fresh.samples(1, 4, 9), whole[4:13])
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert not torch.equal(streams.samples(1, 0, count), whole)  # another image, another stream
    assert abs(float(whole.mean())) < 0.2 and abs(float(whole.std()) - 1.0) < 0.2


def test_block_size_depends_on_the_shape_only() -> None:
    assert block_samples((1, 16, 16)) == 64
    assert block_samples((3, 32, 32)) == 5
    assert block_samples((3, 224, 224)) == 1


def test_keys_are_derived_from_seed_and_index() -> None:
    keys = NoiseKeys.from_seed(1, range(6))
    assert keys[2:4] == NoiseKeys.from_seed(1, [2, 3])
    assert keys[[5, 0]] == NoiseKeys.from_seed(1, [5, 0])
    assert len(set(keys.values)) == 6
    assert keys != NoiseKeys.from_seed(2, range(6))
    assert set(keys.derive("selection").values).isdisjoint(keys.derive("estimation").values)
    # one draw per call: the key of image i does not depend on how many images the call has
    few = NoiseKeys.draw(torch.Generator().manual_seed(0), 2)
    many = NoiseKeys.draw(torch.Generator().manual_seed(0), 9)
    assert many[:2] == few


def test_bad_keys_are_refused_before_any_work() -> None:
    base, x = Linear3((1, 2, 2)).eval(), images((1, 2, 2), 3)
    args = dict(n=10, sigma=0.25, num_classes=3, batch_size=10)
    with pytest.raises(ValueError, match="3 images"):
        sample_counts(base, x, keys=NoiseKeys.from_seed(0, range(2)), **args)
    with pytest.raises(ValueError, match="not both"):
        sample_counts(base, x, keys=NoiseKeys.from_seed(0, range(3)), generator=torch.Generator(), **args)
    with pytest.raises(TypeError, match="NoiseKeys"):
        sample_counts(base, x, keys=[1, 2, 3], **args)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.Generator"):
        sample_counts(base, x, generator=0, **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2\\^64"):
        NoiseKeys([-1])


@pytest.mark.parametrize("shape", SHAPES)
def test_counts_and_certificates_do_not_depend_on_batch_size_or_company(shape) -> None:
    base, x = Linear3(shape).eval(), images(shape)
    keys = NoiseKeys.from_seed(0, range(x.shape[0]))
    args = dict(n0=20, n=150, sigma=0.5, alpha=0.01, num_classes=3)
    results = [certify(base, x, batch_size=bs, keys=keys, **args) for bs in BATCH_SIZES]
    for got in results[1:]:  # same kernels on the same data: exact
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.counts_selection, results[0].counts_selection)
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.counts_estimation, results[0].counts_estimation)
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.radius, results[0].radius)
    alone = certify(base, x[3:4], batch_size=37, keys=keys[3:4], **args)
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(alone.counts_estimation, results[0].counts_estimation[3:4])
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(alone.radius, results[0].radius[3:4])
    # the same seed through a generator: one key draw per call, so the batch size still does not matter
    by_generator = [certify(base, x, batch_size=bs, generator=torch.Generator().manual_seed(4), **args)
                    for bs in (1, 37, 10_000)]
    for got in by_generator[1:]:
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.counts_estimation, by_generator[0].counts_estimation)


@pytest.mark.parametrize("shape", [(1, 2, 2), (3, 7, 7)])
def test_sample_counts_and_predict_do_not_depend_on_batch_size(shape) -> None:
    base, x = Linear3(shape).eval(), images(shape)
    keys = NoiseKeys.from_seed(5, range(x.shape[0]))
    counts = [sample_counts(base, x, n=90, sigma=0.5, num_classes=3, batch_size=bs, keys=keys) for bs in BATCH_SIZES]
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert all(torch.equal(c, counts[0]) for c in counts[1:])
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(sample_counts(base, x[4:], n=90, sigma=0.5, num_classes=3, batch_size=7, keys=keys[4:]),
                       counts[0][4:])
    labels = [predict(base, x, n=90, sigma=0.5, alpha=0.05, num_classes=3, batch_size=bs, keys=keys)
              for bs in (1, 128)]
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(labels[0], labels[1])


def test_sequential_certificate_does_not_depend_on_batch_size_or_company() -> None:
    shape = (1, 5, 5)
    base, x = Linear3(shape).eval(), images(shape, 6)
    keys = NoiseKeys.from_seed(2, range(6))
    args = dict(sigma=0.25, alpha=0.01, radii=[0.1, 0.25], n0=20, n_max=1000, num_classes=3)
    together = [certify_sequential(base, x, batch_size=bs, keys=keys, **args) for bs in (7, 128, 10_000)]
    for got in together[1:]:
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.num_samples, together[0].num_samples)
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got.counts_estimation, together[0].counts_estimation)
    for i in (0, 3, 5):
        alone = certify_sequential(base, x[i : i + 1], batch_size=37, keys=keys[i : i + 1], **args)
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(alone.num_samples, together[0].num_samples[i : i + 1])
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(alone.radius, together[0].radius[i : i + 1])
    # one look at n_max is fixed-n CERTIFY, draw for draw, under the same keys
    one_look = certify_sequential(base, x, batch_size=64, keys=keys, **{**args, "radii": [0.1]}, looks=(1000,))
    fixed = certify(base, x, n0=20, n=1000, sigma=0.25, alpha=0.01, num_classes=3, batch_size=500, keys=keys)
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(one_look.counts_estimation, fixed.counts_estimation)


def test_auto_noise_certificate_does_not_depend_on_company() -> None:
    shape = (1, 2, 2)
    base, x = Linear3(shape).eval(), images(shape, 4)
    keys = NoiseKeys.from_seed(9, range(4))
    args = dict(sigmas=(0.25, 0.5), n_auto=60, n0=20, n=300, num_classes=3)
    together = auto_noise_certify(lambda s: base, x, batch_size=7, keys=keys, **args)
    for i in range(4):
        alone = auto_noise_certify(lambda s: base, x[i : i + 1], batch_size=128, keys=keys[i : i + 1], **args)
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(alone.sigma, together.sigma[i : i + 1])
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(alone.counts_estimation, together.counts_estimation[i : i + 1])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", ["soft", "prediction", "weighted"])
def test_smoothed_scores_do_not_depend_on_batch_size_or_company(shape, mode) -> None:
    base, x = Linear3(shape).eval(), images(shape)
    keys = NoiseKeys.from_seed(1, range(x.shape[0]))
    scores = [smoothed_scores(base, x, SmoothedInferenceConfig(0.5, 40, mode, batch_size=bs), num_classes=3,
                              keys=keys) for bs in BATCH_SIZES]
    for got in scores[1:]:  # votes summed one draw at a time in float64: the same floats for any chunking
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(got, scores[0])
    alone = smoothed_scores(base, x[2:3], SmoothedInferenceConfig(0.5, 40, mode, batch_size=7), num_classes=3,
                            keys=keys[2:3])
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(alone, scores[0][2:3])
    module = SmoothedInference(base, 0.5, num_classes=3, mode=mode, num_samples=40, batch_size=7)
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(module.scores(x, keys=keys), scores[0])


def test_float64_images_are_computed_in_the_base_dtype() -> None:
    x = images((1, 5, 5))
    keys = NoiseKeys.from_seed(0, range(x.shape[0]))
    args = dict(n0=20, n=200, sigma=0.5, alpha=0.01, num_classes=3, batch_size=64, keys=keys)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 3)).eval()  # float32 parameters
    wide = certify(cnn, x.double(), **args)
    narrow = certify(cnn, x, **args)
    # same-kernel: per-image keyed noise, row-wise base (module docstring)
    assert torch.equal(wide.counts_estimation, narrow.counts_estimation)  # one exact cast: the same float32 inputs
    cfg = SmoothedInferenceConfig(0.5, 10, "soft")
    with torch.no_grad():
        scores = smoothed_scores(cnn, x.double(), cfg, num_classes=3, keys=keys)
        assert scores.dtype == torch.float64
        # same-kernel: per-image keyed noise, row-wise base (module docstring)
        assert torch.equal(scores.float(), smoothed_scores(cnn, x, cfg, num_classes=3, keys=keys))
    half = certify(cnn, x.half(), **args)  # float16 images: computed in float32 (the base's dtype)
    assert half.counts_estimation.sum() == 5 * 200


def test_smoothed_inference_without_gradients_streams_and_with_gradients_has_a_budget() -> None:
    shape = (1, 5, 5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)).eval()
    x = images(shape, 2)
    smoothed = SmoothedInference(cnn, 0.5, num_classes=3, num_samples=2_000, batch_size=100,
                                 grad_memory_budget=2**18)
    # the parameters require grad and grad mode is on: autograd would keep all 4,000 passes (~ 1 MB): refused
    with pytest.raises(ValueError, match="grad_memory_budget"):
        smoothed(x)
    with torch.no_grad():  # streamed in chunks of 100 passes: nothing kept, any M
        scores = smoothed(x)
    assert scores.shape == (2, 3) and not scores.requires_grad
    cnn.requires_grad_(False)  # nothing requires grad: streamed as well, even in grad mode
    assert not smoothed(x).requires_grad
    small = SmoothedInference(cnn, 0.5, num_classes=3, num_samples=4, batch_size=100)
    xg = x.clone().requires_grad_(True)
    small(xg)[:, 0].sum().backward()  # a small graph is allowed and differentiable in x (rows sum to 1: take one)
    assert xg.grad is not None and xg.grad.abs().sum() > 0
