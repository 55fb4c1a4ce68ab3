"""The fixed-function guard: a base classifier whose output for one image depends on anything but that image is
refused before sampling, and defective outputs (NaN / inf logits, a single logit column) are errors, never votes."""

from __future__ import annotations

import pytest
import torch
from scipy import stats as sps
from torch import nn

from art_ext import ABSTAIN, NormalizedNoise, certify, predict, sample_counts
from art_ext.smoothing import SmoothedInference
from art_ext.testing import LinearToy, tiny_cnn, tiny_images

FALSE_FAILURE = 1e-4


class BatchMeanShift(nn.Module):
    """Two-class model whose logit is (x - mean over the batch) . w: a stand-in for batch-statistics BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(1, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x.flatten(1).mean(dim=1, keepdim=True))  # [m, 1], normalized with batch statistics
        return torch.cat([torch.zeros_like(z), z], dim=1)


def test_batchnorm_without_running_statistics_is_refused_in_eval_mode() -> None:
    """Without the guard, one image's votes depend on its batch neighbours: measured on main before the fix, an image
    that abstains alone was certified when batched with another. Here the dependence is shown, then refused."""
    model = BatchMeanShift().eval()
    alone, other = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.0)
    with torch.no_grad():  # the same image gets another logit when batched with a darker one
        assert not torch.allclose(model(torch.cat([alone, alone]))[0], model(torch.cat([alone, other]))[0])
    for call in (
        lambda: certify(model, alone, n0=10, n=100, sigma=0.25, alpha=0.01, num_classes=2, batch_size=50),
        lambda: predict(model, alone, n=100, sigma=0.25, alpha=0.01, num_classes=2, batch_size=50),
        lambda: sample_counts(model, alone, n=100, sigma=0.25, num_classes=2, batch_size=50),
        lambda: SmoothedInference(model, 0.25, num_classes=2)(alone),
    ):
        with pytest.raises(ValueError, match=r"BatchNorm layers without running statistics \(bn\)"):
            call()


def test_batchnorm_with_running_mean_removed_is_refused_as_tent_models_do() -> None:
    model = tiny_cnn(batchnorm=True)
    model[1].running_mean = None  # Tent-style: normalize with batch statistics at test time
    model[1].running_var = None
    with pytest.raises(ValueError, match="without running statistics"):
        certify(model, tiny_images(2), n0=5, n=20, sigma=0.25, alpha=0.1, num_classes=10, batch_size=20)


def test_a_train_mode_base_is_refused_and_its_statistics_are_not_updated() -> None:
    model = tiny_cnn(batchnorm=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"training mode \(Sequential"):
        certify(model, tiny_images(2), n0=5, n=20, sigma=0.25, alpha=0.1, num_classes=10, batch_size=20)
    with pytest.raises(ValueError, match="training mode"):
        SmoothedInference(model, 0.25, num_classes=10, mode="soft")(tiny_images(2))
    # same-kernel: nothing ran: the same tensors
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class NaNFor(nn.Module):
    """Logits of a fixed linear map, NaN for inputs whose mean exceeds ``threshold``."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1, keepdim=True)  # [m, 1]
        logits = torch.cat([mean, 1 - mean], dim=1)
        return torch.where(mean > self.threshold, torch.full_like(logits, float("nan")), logits)


def test_nan_logits_are_an_error_that_names_the_first_bad_image() -> None:
    """Before: NaN logits were argmaxed into votes and the image certified at the cap radius."""
    x = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.2), torch.full((1, 2, 2), 5.0 / 6)])
    base = NaNFor(threshold=0.7).eval()  # image 2 (mean 0.83) is NaN on most draws
    with pytest.raises(ValueError, match=r"NaN or infinite logits for image 2 of the batch"):
        certify(base, x, n0=10, n=100, sigma=0.1, alpha=0.01, num_classes=2, batch_size=64)
    with pytest.raises(ValueError, match="image 2"):
        SmoothedInference(base, 0.1, num_classes=2, mode="prediction")(x)


def test_infinite_logits_are_refused_but_minus_infinity_for_one_class_is_a_valid_log_probability() -> None:
    class LogProbs(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = x.flatten(1).mean(1, keepdim=True)
            return torch.cat([torch.zeros_like(z), torch.full_like(z, -float("inf")), z], dim=1)  # class 1 impossible

    counts = sample_counts(LogProbs().eval(), tiny_images(2), n=50, sigma=0.1, num_classes=3, batch_size=30)
    assert counts[:, 1].sum() == 0 and bool((counts.sum(1) == 50).all())

    class PlusInf(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 2), float("inf"))

    with pytest.raises(ValueError, match="NaN or infinite logits for image 0"):
        sample_counts(PlusInf().eval(), tiny_images(2), n=5, sigma=0.1, num_classes=2, batch_size=5)


def test_a_single_logit_column_is_refused_with_the_way_to_wrap_a_binary_model() -> None:
    """Before: argmax over one column made every vote class 0 and the model was certified as class 0 everywhere."""
    single = nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).eval()
    with pytest.raises(ValueError, match=r"one logit per sample.*torch.cat\(\[torch.zeros_like"):
        certify(single, tiny_images(2, size=4), n0=5, n=20, sigma=0.25, alpha=0.1, num_classes=2, batch_size=10)


@pytest.mark.statistical
def test_normalized_noise_pixel_radius_is_sound_and_tight_on_a_linear_classifier() -> None:
    """NormalizedNoise(mean, std) on one channel is pixel noise of std std * sigma, so a linear model's smoothed
    classifier is itself and its exact pixel radius is the distance to the hyperplane. The certified pixel radius
    (R_n * std) must exceed it at most alpha often (binomial quantile at false-failure rate 1e-4), and at large n
    come within 10% of it; the native radius is the pixel radius / std."""
    std, sigma_n, alpha, trials = 0.25, 1.0, 0.05, 100  # pixel noise std 0.25
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=g, dtype=torch.float64)
    centre = torch.full((16,), 0.5, dtype=torch.float64)
    model = LinearToy(w, float(-(centre @ w))).eval()
    unit = w / w.norm()
    x = torch.stack([centre + m * 0.25 * unit for m in (0.4, 1.0, -1.5)]).float().view(-1, 1, 4, 4)
    space = NormalizedNoise(mean=(0.5,), std=(std,))
    true_radius, true_class = model.true_radius(x), model.true_class(x)
    violations = 0
    for seed in range(trials):
        certs = certify(model, x, n0=32, n=400, sigma=sigma_n, alpha=alpha, num_classes=2, batch_size=2000,
                        generator=torch.Generator().manual_seed(seed), noise_space=space)
        certified = certs.label != ABSTAIN
        violations += int((certified & ((certs.radius > true_radius) | (certs.label != true_class))).sum())
        assert torch.allclose(certs.radius, certs.radius_noise_space * std)
    assert violations <= sps.binom.ppf(1 - FALSE_FAILURE, trials * 3, alpha)
    big = certify(model, x, n0=100, n=100_000, sigma=sigma_n, alpha=0.001, num_classes=2, batch_size=50_000,
                  generator=torch.Generator().manual_seed(1), noise_space=space)
    assert torch.all((true_radius - big.radius).abs() < 0.1 * true_radius)


def test_normalized_noise_refuses_a_channel_mismatch_before_sampling() -> None:
    with pytest.raises(ValueError, match=r"NormalizedNoise has 3 channels .* expected \[B, 3, H, W\]"):
        certify(tiny_cnn(), tiny_images(2), n0=5, n=20, sigma=0.25, alpha=0.1, num_classes=10, batch_size=20,
                noise_space=NormalizedNoise((0.5, 0.5, 0.5), (0.2, 0.2, 0.2)))
