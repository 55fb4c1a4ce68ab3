"""SmoothedInference (the smoothed forward) and SmoothedClassifier (PREDICT / CERTIFY), side by side."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.smoothing import DEFAULT_MODE, NormalizedNoise, SmoothedClassifier, SmoothedInference
from art_ext.smoothing.inference import SmoothedInferenceConfig, smoothed_scores
from art_ext.testing import tiny_cnn, tiny_images


def tiny_base() -> nn.Module:
    return tiny_cnn(size=4, num_classes=4)


def images() -> torch.Tensor:
    return tiny_images(6, size=4, seed=1)


@pytest.mark.parametrize("mode", ["prediction", "weighted", "soft"])
def test_forward_equals_the_core_at_the_same_generator_and_draws_fresh_noise(mode) -> None:
    base, x = tiny_base(), images()
    smoothed = SmoothedInference(base, 0.5, num_classes=4, mode=mode, num_samples=9, batch_size=20,
                                 generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        first, second = smoothed(x), smoothed(x)
    want = smoothed_scores(base, x, SmoothedInferenceConfig(0.5, 9, mode, batch_size=20), num_classes=4,
                           generator=torch.Generator().manual_seed(7))
    # same-kernel: the class calls smoothed_scores with the same draws and batches; one check asserts a difference
    assert first.shape == (6, 4) and torch.equal(first, want)
    # same-kernel: asserts a difference (a fresh draw)
    assert not torch.equal(first, second)  # a fresh draw per call
    assert torch.allclose(first.sum(1), torch.ones(6))
    labels = smoothed.labels(x, generator=torch.Generator().manual_seed(7))
    # same-kernel: integer labels of the same scores
    assert torch.equal(labels, torch.where(want.topk(2).values[:, 0] == want.topk(2).values[:, 1],
                                           torch.tensor(-1), want.argmax(1)))


def test_soft_forward_is_differentiable_end_to_end() -> None:
    smoothed = SmoothedInference(tiny_base(), 0.25, num_classes=4, mode="soft", num_samples=8)
    x = images().requires_grad_(True)
    (grad,) = torch.autograd.grad(smoothed(x)[:, 1].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    hard = SmoothedInference(tiny_base(), 0.25, num_classes=4, mode="prediction")
    with pytest.raises(ValueError, match="not differentiable"):
        hard(x)


def test_sigma_zero_is_the_base_for_inference_and_refused_by_cohen_methods() -> None:
    base, x = tiny_base(), images()
    smoothed = SmoothedInference(base, 0.0, num_classes=4, mode="soft")
    with torch.no_grad():
        # same-kernel: sigma 0 is one call of the base on the same batch, then the same softmax
        assert torch.equal(smoothed(x), base(x).softmax(1))
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        SmoothedClassifier(base, 0.0, num_classes=4)
    positive = SmoothedClassifier(base, 0.25, num_classes=4)
    counts = positive.sample_counts(x, n=50, generator=torch.Generator().manual_seed(0))
    assert bool((counts.sum(1) == 50).all())
    certs = positive.certify(x, n0=10, n=100, alpha=0.01, generator=torch.Generator().manual_seed(0))
    again = positive.certify(x, n0=10, n=100, alpha=0.01, generator=torch.Generator().manual_seed(0))
    # same-kernel: the same call twice, same seed
    assert torch.equal(certs.label, again.label) and torch.equal(certs.radius, again.radius)


def test_one_default_mode_for_the_module_and_its_art_adapter() -> None:
    import inspect

    from art_ext.estimators import SmoothedInferenceClassifier

    assert DEFAULT_MODE == "soft" and SmoothedInference(tiny_base(), 0.1, num_classes=4).mode == DEFAULT_MODE
    assert inspect.signature(SmoothedInferenceClassifier).parameters["mode"].default == DEFAULT_MODE


def test_smoothed_forward_refuses_a_train_mode_base_and_leaves_batchnorm_statistics_alone() -> None:
    base = tiny_cnn(size=4, num_classes=4, batchnorm=True)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    smoothed = SmoothedInference(base.train(), 0.25, num_classes=4, mode="soft")
    with pytest.raises(ValueError, match="training mode"):
        smoothed(images())
    # same-kernel: nothing ran: the same tensors
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # running stats untouched


def test_normalized_noise_certifies_with_pixel_radius_min_std_times_native() -> None:
    space = NormalizedNoise((0.5,), (0.25,))
    smoothed = SmoothedClassifier(tiny_base(), 0.25, num_classes=4, noise_space=space)
    certs = smoothed.certify(images(), n0=5, n=200, alpha=0.01, generator=torch.Generator().manual_seed(0))
    # same-kernel: radius * 0.25 is the conversion itself, elementwise
    assert torch.equal(certs.radius, certs.radius_noise_space * 0.25)
    assert certs.noise_space == space
