"""Noise keyed per image through art_ext's ART classifiers: with the same seed, ``batch_size`` (images per call of
the smoothed model, or noisy samples per forward pass) and the other images of a call never change an image's
predictions, scores, certificates or gradients (DESIGN.md convention 6), for 1x2x2 ... 3x32x32 inputs.

Bit-equality (``assert_array_equal``) is used where the same kernels run on the same data in the same order
(DESIGN.md convention 12): the toy base below computes each image's logits on its own (an elementwise product and a
per-row float64 sum, whose order does not depend on the batch), the noise of image i's j-th pass is the same values
(``NoiseStreams``), and the smoothed scores sum the M votes in float64 one draw at a time in draw order; certificates
are functions of integer counts. Gradients sum the M per-pass input gradients in float32 in chunks whose grouping
depends on the chunking, so they are compared with a stated tolerance (see ``GRAD_RTOL``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from art_ext.defences.bn_adaptation import adapt_batchnorm, batchnorm_layers
from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.smoothing import NoiseKeys, NoiseStreams
from art_ext.smoothing.inference import SmoothedInference
from art_ext.testing import art_classifier

SHAPES = [(1, 2, 2), (1, 5, 5), (3, 7, 7), (1, 16, 16), (3, 32, 32)]
BATCH_SIZES = [1, 7, 37, 128, 10_000]
K = 3
#: Gradients: the M per-pass input gradients of an image are float32 and are summed by autograd in groups that
#: follow the chunking (a broadcast-backward reduction inside a chunk, accumulation across chunks), so two chunkings
#: add the same terms in another order: float32 rounding, |error| <~ M * 2^-24 * sum |terms|. rtol 1e-5 (float32,
#: issue 19) with an absolute floor of 1e-5 of the largest entry for entries that cancel to ~0.
GRAD_RTOL = 1e-5


class PerImageLinear(nn.Module):
    """Logits [B, K] = W x + b per image, as an elementwise product and a float64 sum over each image's pixels: the
    sum of each row runs serially in a fixed order whatever the number of rows, so the logits of an image do not
    depend on the batch it is in (a BLAS matmul may change its blocking with the batch size). Optional eval-mode
    BatchNorm in front (per-channel affine, elementwise) for BN adaptation."""

    def __init__(self, shape: tuple[int, int, int], *, batchnorm: bool = False, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = shape[0] * shape[1] * shape[2]
        self.bn = nn.BatchNorm2d(shape[0]) if batchnorm else None
        self.weight = nn.Parameter(torch.randn(K, d, generator=g) * (2.0 / d**0.5))
        self.bias = nn.Parameter(-self.weight.detach().sum(dim=1) * 0.5)  # boundaries through the box's centre
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            x = self.bn(x)
        z = x.flatten(1).unsqueeze(1).to(torch.float64) * self.weight.to(torch.float64)  # [B, K, D]
        return (z.sum(dim=-1) + self.bias.to(torch.float64)).to(x.dtype)  # [B, K]


def _images(shape: tuple[int, int, int], n: int, seed: int = 1) -> np.ndarray:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)).numpy()


def _estimator(shape: tuple[int, int, int], *, batchnorm: bool = False):
    return art_classifier(PerImageLinear(shape, batchnorm=batchnorm), input_shape=shape, nb_classes=K)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=GRAD_RTOL, atol=GRAD_RTOL * scale)


SMOOTHED = {
    "rs": lambda est, bs: RandomizedSmoothingClassifier(est, 0.5, num_samples=6, batch_size=bs, seed=3),
    "si_soft": lambda est, bs: SmoothedInferenceClassifier(est, 0.5, num_samples=6, batch_size=bs, seed=3),
    "si_prediction": lambda est, bs: SmoothedInferenceClassifier(est, 0.5, mode="prediction", num_samples=6,
                                                                 batch_size=bs, seed=3),
    "si_weighted": lambda est, bs: SmoothedInferenceClassifier(est, 0.5, mode="weighted", num_samples=6,
                                                               batch_size=bs, seed=3),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", sorted(SMOOTHED))
def test_predict_does_not_depend_on_batch_sizes_or_other_images(kind: str, shape: tuple[int, int, int]) -> None:
    est, x = _estimator(shape), _images(shape, 12)
    make = SMOOTHED[kind]
    reference = make(est, 1000).predict(x, batch_size=128)  # [12, K]
    assert np.isfinite(reference).any() and not np.all(reference == reference[:1])  # not a degenerate output
    for bs in BATCH_SIZES:  # images per call of the smoothed model (ART's predict batch_size)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(make(est, 1000).predict(x, batch_size=bs), reference)
    for bs in BATCH_SIZES:  # noisy samples per forward pass of the base
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(make(est, bs).predict(x, batch_size=128), reference)
    # an image's key depends on the call's draw and its index only: a prefix of the call gets the same outputs
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    np.testing.assert_array_equal(make(est, 1000).predict(x[:5], batch_size=2), reference[:5])
    # and the second call of a classifier draws fresh keys (the generator moves once per call)
    clf = make(est, 1000)
    clf.predict(x, batch_size=3)
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    assert not np.array_equal(clf.predict(x, batch_size=3), reference) or kind != "rs"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_predict_equals_smoothed_scores_of_each_image_alone_under_its_key(shape: tuple[int, int, int]) -> None:
    est, x = _estimator(shape), _images(shape, 9)
    clf = SmoothedInferenceClassifier(est, 0.5, num_samples=6, output="probabilities", seed=3)
    scores = clf.predict(x, batch_size=4)
    keys = NoiseKeys.draw(torch.Generator().manual_seed(3), len(x))  # what the classifier's one draw gives
    smoothed = SmoothedInference(clf.smoothed.base, 0.5, num_classes=K, num_samples=6)
    for i in range(len(x)):
        with torch.no_grad():
            alone = smoothed.scores(torch.from_numpy(x[i : i + 1]), keys=keys[i : i + 1])  # [1, K]
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(scores[i : i + 1], alone.numpy())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["rs", "si_soft"])
def test_gradients_do_not_depend_on_the_samples_per_pass(kind: str, shape: tuple[int, int, int]) -> None:
    est, x = _estimator(shape), _images(shape, 6)
    y = np.arange(len(x)) % K
    make = SMOOTHED[kind]
    loss_ref = make(est, 1000).loss_gradient(x, y)
    class_ref = make(est, 1000).class_gradient(x)
    assert np.abs(loss_ref).max() > 0 and class_ref.shape == (len(x), K, *shape)
    for bs in BATCH_SIZES:
        _close(make(est, bs).loss_gradient(x, y), loss_ref)  # GRAD_RTOL: float32 sums in another grouping
        _close(make(est, bs).class_gradient(x), class_ref)


@pytest.mark.parametrize("shape", [(1, 5, 5), (3, 7, 7)], ids=lambda s: "x".join(map(str, s)))
def test_loss_gradient_of_an_image_is_its_gradient_alone_under_its_key(shape: tuple[int, int, int]) -> None:
    est, x = _estimator(shape), _images(shape, 5)
    y = np.array([0, 1, 2, 0, 1])
    clf = RandomizedSmoothingClassifier(est, 0.5, num_samples=6, seed=4)
    grad = clf.loss_gradient(x, y)  # mean over the 5 images of -log p_y
    keys = NoiseKeys.draw(torch.Generator().manual_seed(4), len(x))
    smoothed = SmoothedInference(clf.smoothed.base, 0.5, num_classes=K, num_samples=6)
    for i in range(len(x)):
        xi = torch.from_numpy(x[i : i + 1]).requires_grad_(True)
        loss = -smoothed.scores(xi, keys=keys[i : i + 1])[0, int(y[i])].log() / len(x)
        (alone,) = torch.autograd.grad(loss, xi)
        _close(grad[i : i + 1], alone.numpy())  # GRAD_RTOL: the call sums the passes in other chunks


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_certify_and_predict_labels_do_not_depend_on_batch_size_or_other_images(shape: tuple[int, int, int]) -> None:
    est, x = _estimator(shape), _images(shape, 5)
    rs = RandomizedSmoothingClassifier(est, 0.5, seed=0)
    labels, radii = rs.certify(x, 200, 128, n0=20, alpha=0.01, seed=5)
    predicted = rs.predict_labels(x, 100, 128, alpha=0.01, seed=6)
    assert (labels >= 0).any() and (radii > 0).any()
    for bs in BATCH_SIZES:
        got_labels, got_radii = rs.certify(x, 200, bs, n0=20, alpha=0.01, seed=5)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(got_labels, labels)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(got_radii, radii)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(rs.predict_labels(x, 100, bs, alpha=0.01, seed=6), predicted)
    alone_labels, alone_radii = rs.certify(x[:1], 200, 7, n0=20, alpha=0.01, seed=5)  # image 0 keeps its key
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    np.testing.assert_array_equal(alone_labels, labels[:1])
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    np.testing.assert_array_equal(alone_radii, radii[:1])


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_adaptation_certifier_does_not_depend_on_batch_size(shape: tuple[int, int, int]) -> None:
    est = _estimator(shape, batchnorm=True)
    clean, x = _images(shape, 24, seed=2), _images(shape, 4)
    cta = CertificationThroughAdaptationClassifier(est, clean, sigmas=(0.25, 0.5))
    labels, radii = cta.certify(x, 100, 128, sigma=0.25, n0=10, alpha=0.05, seed=1)
    auto = cta.certify_auto_noise(x, 40, 128, n_auto=20, n0=10, alpha=0.05, seed=2)
    assert (labels >= 0).any()
    for bs in BATCH_SIZES:
        got = cta.certify(x, 100, bs, sigma=0.25, n0=10, alpha=0.05, seed=1)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(got[0], labels)
        # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
        np.testing.assert_array_equal(got[1], radii)
        for a, b in zip(cta.certify_auto_noise(x, 40, bs, n_auto=20, n0=10, alpha=0.05, seed=2), auto, strict=True):
            # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
            np.testing.assert_array_equal(a, b)
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    np.testing.assert_array_equal(cta.predict(x, batch_size=1), cta.predict(x, batch_size=128))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bn_adaptation_noise_is_keyed_per_image_not_per_chunk(shape: tuple[int, int, int]) -> None:
    model = PerImageLinear(shape, batchnorm=True)
    clean = torch.from_numpy(_images(shape, 40, seed=2))
    keys = NoiseKeys.from_seed(9, range(len(clean)))

    def stats(bs: int) -> tuple[torch.Tensor, torch.Tensor]:
        layer = batchnorm_layers(adapt_batchnorm(model, clean, sigma=0.5, batch_size=bs, keys=keys))[0][1]
        assert layer.running_mean is not None and layer.running_var is not None
        return layer.running_mean, layer.running_var

    mean, var = stats(10_000)
    # the BatchNorm is the first layer, so its inputs are the noisy set itself: image i + 0.5 * its key's sample 0
    noisy = clean + 0.5 * NoiseStreams(keys, shape).draw(0, 1)[:, 0]  # [40, C, H, W]
    values = noisy.transpose(0, 1).reshape(shape[0], -1).double()  # [C, 40 * H * W]
    # float64 statistics in another summation order, stored in float32: rtol 1e-6 (~8 float32 ulps)
    torch.testing.assert_close(mean, values.mean(dim=1).float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(var, values.var(dim=1).float(), rtol=1e-6, atol=1e-7)
    for bs in BATCH_SIZES:
        got_mean, got_var = stats(bs)
        # The noisy set is identical for every bs; only the Chan et al. merge of per-chunk float64 moments changes
        # with the chunking (float64 rounding, ~1e-15 relative), then the result is stored in float32 running
        # statistics, where that can flip the last bit: rtol 1e-6 (~8 float32 ulps).
        torch.testing.assert_close(got_mean, mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got_var, var, rtol=1e-6, atol=1e-7)
    # different keys give a different noisy set (the keys, not the chunking, decide the noise)
    other = batchnorm_layers(adapt_batchnorm(model, clean, sigma=0.5, keys=NoiseKeys.from_seed(10, range(40))))
    # same-kernel: batch-invariant test model, same keyed noise, votes summed in float64
    assert not torch.equal(other[0][1].running_mean, mean)  # type: ignore[arg-type]
