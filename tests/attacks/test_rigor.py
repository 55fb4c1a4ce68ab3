"""art_ext.attacks.rigor: each check trips on the symptom it names and stays quiet without it; bad inputs raise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.attacks import rigor
from art_ext.testing import tiny_cnn


def test_output_randomness_sees_a_noisy_model_and_restores_modes():
    model = tiny_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert not rigor.output_randomness(model, x).flagged
    dropout = nn.Sequential(nn.Dropout(0.5), model).train()  # random only in train mode: the check runs eval
    assert not rigor.output_randomness(dropout, x).flagged and dropout.training
    gen = torch.Generator().manual_seed(1)
    noisy = rigor.output_randomness(lambda z: model(z + 1e-3 * torch.randn(z.shape, generator=gen)), x, passes=3)
    assert noisy.flagged and noisy.fraction == 1.0 and noisy.max_abs_difference > 0
    assert not rigor.output_randomness(lambda z: model(z + 1e-9 * torch.randn(z.shape, generator=gen)), x,
                                       atol=1e-3).flagged
    with pytest.raises(ValueError, match="passes must be >= 2"):
        rigor.output_randomness(model, x, passes=1)


def test_gradient_health_counts_zero_and_nonfinite_per_example():
    model = tiny_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    assert not rigor.gradient_health(model, x, y).flagged
    detached = rigor.gradient_health(lambda z: model(z.detach()), x, y)  # no autograd path: zero
    assert detached.zero_fraction == 1.0

    def half_nan(z: torch.Tensor) -> torch.Tensor:  # examples 0 and 1 get NaN logits and gradients, 2 and 3 not
        scale = torch.tensor([[float("nan")], [float("nan")], [1.0], [1.0]])
        return model(z) + 0.0 * (z.flatten(1) * scale).sum(1, keepdim=True)

    check = rigor.gradient_health(half_nan, x, y)
    assert check.nonfinite.tolist() == [True, True, False, False] and check.zero_fraction == 0.0
    with pytest.raises(ValueError, match="one label per example"):
        rigor.gradient_health(model, x, y[:2])


def test_eps_monotonicity_tolerance_and_errors():
    assert not rigor.eps_monotonicity([0.1, 0.2, 0.3], [0.5, 0.52, 0.1], tolerance=0.05).flagged
    check = rigor.eps_monotonicity([0.1, 0.2, 0.3], [0.5, 0.6, 0.1], tolerance=0.05)
    assert check.flagged and check.increases[0][:2] == (0.1, 0.2) and "eps=0.1" in check.message
    for eps, acc in (([0.1, 0.2], [0.5, 0.4]), ([0.1, 0.1, 0.3], [0.5, 0.4, 0.3]), ([0.1, 0.2, 0.3], [0.5, 0.4]),
                     ([0.1, 0.2, 0.3], [0.5, 0.4, 1.5])):
        with pytest.raises(ValueError):
            rigor.eps_monotonicity(eps, acc)


def test_gradient_free_gap_threshold_and_shapes():
    grad = torch.tensor([[True, True, True, False]])
    free = torch.tensor([False, False, True, False])
    gap = rigor.gradient_free_gap(grad, free, min_examples=3)
    assert gap.count == 2 and not gap.flagged and gap.free_accuracy == 0.25 and gap.gradient_accuracy == 0.75
    assert rigor.gradient_free_gap(grad[0], free, min_examples=2).flagged  # a single attack as [B]
    with pytest.raises(ValueError, match="bool tensors"):
        rigor.gradient_free_gap(grad.float(), free)
    with pytest.raises(ValueError, match="expected gradient_robust"):
        rigor.gradient_free_gap(grad, free[:3])
