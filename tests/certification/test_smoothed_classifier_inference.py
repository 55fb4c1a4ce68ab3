"""SmoothedClassifier's inference forward (smoothed inference) next to its PREDICT / CERTIFY."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.certification import SmoothedClassifier
from art_ext.defences.smoothed_inference import SmoothedInferenceConfig, smoothed_scores


def tiny_base() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()


def images() -> torch.Tensor:
    return torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["prediction", "weighted", "soft"])
def test_forward_equals_the_core_at_the_same_generator_and_draws_fresh_noise(mode) -> None:
    base, x = tiny_base(), images()
    smoothed = SmoothedClassifier(base, 0.5, num_classes=4, mode=mode, num_samples=9, batch_size=20,
                                  generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        first, second = smoothed(x), smoothed(x)
    want = smoothed_scores(base, x, SmoothedInferenceConfig(0.5, 9, mode, batch_size=20), num_classes=4,
                           generator=torch.Generator().manual_seed(7))
    assert first.shape == (6, 4) and torch.equal(first, want)
    assert not torch.equal(first, second)  # a fresh draw per call
    assert torch.allclose(first.sum(1), torch.ones(6))
    labels = smoothed.labels(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(labels, torch.where(want.topk(2).values[:, 0] == want.topk(2).values[:, 1],
                                           torch.tensor(-1), want.argmax(1)))


def test_soft_forward_is_differentiable_end_to_end() -> None:
    smoothed = SmoothedClassifier(tiny_base(), 0.25, num_classes=4, mode="soft", num_samples=8)
    x = images().requires_grad_(True)
    (grad,) = torch.autograd.grad(smoothed(x)[:, 1].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    hard = SmoothedClassifier(tiny_base(), 0.25, num_classes=4, mode="prediction")
    with pytest.raises(ValueError, match="not differentiable"):
        hard(x)


def test_sigma_zero_only_for_inference_and_cohen_methods_unchanged() -> None:
    base, x = tiny_base(), images()
    smoothed = SmoothedClassifier(base, 0.0, num_classes=4, mode="soft")
    with torch.no_grad():
        assert torch.equal(smoothed(x), base(x).softmax(1))
    for call in (lambda: smoothed.predict(x, n=10), lambda: smoothed.certify(x, n0=5, n=10),
                 lambda: smoothed.sample_counts(x, n=10)):
        with pytest.raises(ValueError, match="sigma must be finite and > 0"):
            call()
    positive = SmoothedClassifier(base, 0.25, num_classes=4)  # old signature still works
    counts = positive.sample_counts(x, n=50, generator=torch.Generator().manual_seed(0))
    assert counts.shape == (6, 4) and bool((counts.sum(1) == 50).all())
    certs = positive.certify(x, n0=10, n=100, alpha=0.01, generator=torch.Generator().manual_seed(0))
    assert len(certs) == 6


def test_declared_normalized_noise_cannot_certify() -> None:
    smoothed = SmoothedClassifier(tiny_base(), 0.25, num_classes=4, normalization=((0.5,), (0.25,)))
    with pytest.raises(ValueError, match="pixel space"):
        smoothed.certify(images(), n0=5, n=10)
