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


# ---- input contract: bad inputs are refused before any forward pass, naming the value and the expected form --------
def test_output_randomness_refuses_bad_inputs_and_nan_outputs():
    model = tiny_cnn()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    calls = []

    def counted(z: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return model(z)

    bad_x = x.clone()
    bad_x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x contains 1 NaN or infinite values"):
        rigor.output_randomness(counted, bad_x)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor \[B, ...\], got ndarray"):
        rigor.output_randomness(counted, x.numpy())
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor.*torch.int64"):
        rigor.output_randomness(counted, torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="atol must be a finite number >= 0, got nan"):
        rigor.output_randomness(counted, x, atol=float("nan"))
    with pytest.raises(TypeError, match="model must be callable"):
        rigor.output_randomness("tiny_cnn", x)  # type: ignore[arg-type]
    assert not calls  # every refusal came before the first forward pass
    gen = torch.Generator().manual_seed(1)

    def random_nan(z: torch.Tensor) -> torch.Tensor:  # random outputs, with NaN in one column of every row
        out = model(z) + torch.randn(z.shape[0], 10, generator=gen)
        out[:, 0] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"model returned NaN outputs for 2 of 2 examples"):
        rigor.output_randomness(random_nan, x)  # before: reported 'deterministic' (NaN comparisons are False)


def test_output_randomness_compares_infinite_outputs_entrywise():
    gen = torch.Generator().manual_seed(0)

    def log_probs(z: torch.Tensor) -> torch.Tensor:  # -inf for an impossible class, random elsewhere
        out = torch.randn(z.shape[0], 3, generator=gen)
        out[:, 0] = -float("inf")
        return out

    check = rigor.output_randomness(log_probs, torch.rand(2, 1, 2, 2))
    assert check.flagged and check.fraction == 1.0 and check.max_abs_difference > 0  # before: -inf - -inf hid it
    assert not rigor.output_randomness(lambda z: torch.full((z.shape[0], 2), -float("inf")),
                                       torch.rand(2, 1, 2, 2)).flagged


def test_gradient_health_refuses_bad_inputs_and_labels():
    model = tiny_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    bad_x = x.clone()
    bad_x[1] = float("inf")
    with pytest.raises(ValueError, match=r"x contains 64 NaN or infinite values"):
        rigor.gradient_health(model, bad_x, y)  # before: reported as a masked (non-finite) gradient
    with pytest.raises(ValueError, match=r"y must hold integer class indices.*torch.float32"):
        rigor.gradient_health(model, x, y.float())
    with pytest.raises(ValueError, match=r"y has class indices in \[-1, 3\]; expected \[0, 10\)"):
        rigor.gradient_health(model, x, torch.tensor([0, 1, -1, 3]))
    with pytest.raises(ValueError, match=r"y has class indices in \[0, 10\]; expected \[0, 10\)"):
        rigor.gradient_health(model, x, torch.tensor([0, 1, 10, 3]))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        rigor.gradient_health(model, x, [0, 1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x is an empty batch"):
        rigor.gradient_health(model, x[:0], y[:0])


@pytest.mark.parametrize("eps, message", [
    ([0.1, float("nan"), 0.3], r"eps must be finite numbers >= 0, got \[0.1, nan, 0.3\]"),
    ([-0.1, 0.2, 0.3], r"eps must be finite numbers >= 0, got \[-0.1, 0.2, 0.3\]"),
    ([0.1, 0.2, float("inf")], r"eps must be finite numbers >= 0, got \[0.1, 0.2, inf\]"),
])
def test_eps_monotonicity_refuses_nan_negative_and_infinite_budgets(eps, message):
    with pytest.raises(ValueError, match=message):
        rigor.eps_monotonicity(eps, [0.5, 0.4, 0.3])


def test_eps_monotonicity_refuses_a_non_numeric_tolerance():
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0, got 'se'"):
        rigor.eps_monotonicity([0.1, 0.2, 0.3], [0.5, 0.4, 0.3], tolerance="se")  # type: ignore[arg-type]


def test_gradient_free_gap_refuses_an_empty_batch_and_non_tensors():
    with pytest.raises(ValueError, match=r"expected gradient_robust \[A >= 1, B >= 1\]"):
        rigor.gradient_free_gap(torch.zeros(1, 0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(TypeError, match="gradient_robust and free_robust must be bool tensors, got list"):
        rigor.gradient_free_gap([[True]], torch.tensor([True]))  # type: ignore[arg-type]


@pytest.mark.parametrize("p, n, message", [
    (1.5, 10, r"p must be an accuracy in \[0, 1\], got 1.5"),
    (float("nan"), 10, r"p must be an accuracy in \[0, 1\], got nan"),
    (0.5, -3, r"n must be an int >= 0, got -3"),
    (0.5, 2.5, r"n must be an int >= 0, got 2.5"),
])
def test_binomial_se_refuses_values_it_used_to_clamp(p, n, message):
    with pytest.raises(ValueError, match=message):
        rigor.binomial_se(p, n)
    assert rigor.binomial_se(0.5, 0) == 0.0 and rigor.binomial_se(0.5, 4) == 0.25
