"""Smoothed inference core: voting rules, noise handling, chunking, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from art_ext.models.classifiers import Normalize
from art_ext.smoothing import NoiseKeys, NoiseStreams, NormalizedNoise
from art_ext.smoothing.inference import (
    SmoothedInferenceConfig,
    finish,
    labels_from_scores,
    rank_weights,
    smoothed_scores,
    votes,
)
from art_ext.testing import CallRecorder, tiny_cnn

K = 3


class Linear2(nn.Module):
    """Logits W @ [x_0, x_1] + b for images [B, 1, 1, 2] (hand-set W and b: ``hand_scores`` recomputes the modes
    from them, which the random shared toys of ``art_ext.testing`` would not allow)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, K)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0], [-2.0, -2.0]]))
            self.lin.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
        self.eval()  # a base classifier is sampled as a fixed function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def toy_images() -> torch.Tensor:
    return torch.tensor([[[[0.6, 0.4]]], [[[0.2, 0.3]]], [[[0.5, 0.5]]]])  # [3, 1, 1, 2]


def hand_scores(x: np.ndarray, noise: np.ndarray, sigma: float, mode: str, weights=None) -> np.ndarray:
    """Independent numpy computation of Eqs. 9-13 from the same noise draws [M, B, 1, 1, 2]."""
    w_mat = np.array([[4.0, 0.0], [0.0, 4.0], [-2.0, -2.0]])
    bias = np.array([0.0, 0.0, 1.0])
    z = (x[None] + sigma * noise).reshape(noise.shape[0], noise.shape[1], 2)  # [M, B, 2]
    logits = z @ w_mat.T + bias  # [M, B, K]
    if mode == "prediction":
        v = np.eye(K)[logits.argmax(-1)]
    elif mode == "weighted":
        w = np.array([1.0, 0.5, 0.25]) if weights is None else np.pad(weights, (0, K - len(weights)))
        w = w / w.sum()
        ranks = np.argsort(np.argsort(-logits, axis=-1), axis=-1)  # rank of each class
        v = w[ranks]
    else:
        e = np.exp(logits - logits.max(-1, keepdims=True))
        v = e / e.sum(-1, keepdims=True)
    return v.mean(0)


@pytest.mark.parametrize("mode,weights", [("prediction", None), ("weighted", None), ("weighted", (1.0, 0.3)),
                                          ("soft", None)])
def test_each_mode_matches_hand_computation_with_fixed_noise(mode, weights) -> None:
    x, sigma, m = toy_images(), 0.3, 7
    cfg = SmoothedInferenceConfig(sigma, m, mode, weights=weights, batch_size=1000)
    keys = NoiseKeys.from_seed(5, range(x.shape[0]))
    got = smoothed_scores(Linear2(), x, cfg, num_classes=K, keys=keys)
    # draw j of image i is sample j of image i's noise stream (documented)
    noise = NoiseStreams(keys, x.shape[1:]).draw(0, m).transpose(0, 1).numpy()  # [m, B, C, H, W]
    want = hand_scores(x.numpy().astype(np.float64), noise.astype(np.float64), sigma, mode, weights)
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-6)
    np.testing.assert_allclose(got.detach().sum(1).numpy(), 1.0, atol=1e-6)


def test_votes_on_hand_made_logits() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    # same-kernel: hand-made logits; votes are 0/1
    assert torch.equal(votes(logits, SmoothedInferenceConfig(0.1, mode="prediction")),
                       torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    weighted = votes(logits, SmoothedInferenceConfig(0.1, mode="weighted"))  # 2^(1-k) / (1 + 1/2 + 1/4)
    assert torch.allclose(weighted, torch.tensor([[0.25, 1.0, 0.5], [0.5, 0.25, 1.0]]) / 1.75)
    v_c = votes(logits, SmoothedInferenceConfig(0.1, mode="weighted", weights=(1.0, 0.4)))  # Eq. 12, C = 0.4
    assert torch.allclose(v_c, torch.tensor([[0.0, 1.0, 0.4], [0.4, 0.0, 1.0]]) / 1.4)
    soft_logits = SmoothedInferenceConfig(0.1, mode="soft", soft_average="logits")
    mean = votes(logits, soft_logits).mean(0)
    assert torch.allclose(finish(mean, soft_logits), torch.tensor([0.5, 1.0, 3.5]).softmax(0))


def test_weighted_with_one_hot_weights_equals_prediction_voting() -> None:
    x = torch.rand(5, 1, 1, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(num_classes=K)
    pred = smoothed_scores(Linear2(), x, SmoothedInferenceConfig(0.5, 33, "prediction", batch_size=40), **kw,
                           generator=torch.Generator().manual_seed(1))
    weighted = smoothed_scores(Linear2(), x, SmoothedInferenceConfig(0.5, 33, "weighted", weights=(1, 0, 0),
                                                                     batch_size=40), **kw,
                               generator=torch.Generator().manual_seed(1))
    # same-kernel: 0/1 votes on the same logits; one-hot weights give the same sums; one check asserts a difference
    assert torch.equal(pred, weighted)
    # same-kernel: asserts a difference
    assert not torch.equal(pred, pred[:, [1, 0, 2]])  # the draws do not make the check trivial


def test_soft_gradients_are_finite_and_nonzero_and_hard_modes_refuse_gradients() -> None:
    base = tiny_cnn(size=6)
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    scores = smoothed_scores(base, x, SmoothedInferenceConfig(0.25, 16, "soft", batch_size=10), num_classes=10,
                             generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(-scores[:, 0].clamp_min(1e-12).log().sum(), x)
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).norm(dim=1) > 1e-6).all()  # every image receives a gradient
    for mode in ("prediction", "weighted"):
        with pytest.raises(ValueError, match="not differentiable"):
            smoothed_scores(base, x, SmoothedInferenceConfig(0.25, 4, mode), num_classes=10)
        with torch.no_grad():  # fine without gradients
            smoothed_scores(base, x, SmoothedInferenceConfig(0.25, 4, mode), num_classes=10)


@pytest.mark.parametrize("mode", ["prediction", "weighted", "soft"])
def test_sigma_zero_is_the_base_exactly(mode) -> None:
    base = tiny_cnn(size=4, seed=1)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    cfg = SmoothedInferenceConfig(0.0, 64, mode)
    with torch.no_grad():
        got, logits = smoothed_scores(base, x, cfg, num_classes=10), base(x)
    if mode == "soft":
        # same-kernel: sigma 0 is one call of the base on the same batch, then the same softmax
        assert torch.equal(got, logits.softmax(1))
    else:
        assert torch.equal(got.argmax(1), logits.argmax(1))  # same-kernel: integer labels of the same logits
        # same-kernel: bools from the same scores
        assert torch.equal(got.max(1).values > got.topk(2).values[:, 1], torch.ones(8, dtype=torch.bool))


def test_memory_does_not_grow_with_num_samples() -> None:
    """Only chunks of <= batch_size noisy samples ever exist; the accumulator is [B, K] whatever M is."""
    x = torch.rand(4, 1, 1, 2, generator=torch.Generator().manual_seed(0))
    sizes = {}
    for m in (16, 4096):
        base = CallRecorder(Linear2()).eval()
        with torch.no_grad():
            out = smoothed_scores(base, x, SmoothedInferenceConfig(0.3, m, "soft", batch_size=64), num_classes=K)
        assert out.shape == (4, K) and torch.allclose(out.sum(1), torch.ones(4, dtype=out.dtype))
        sizes[m] = base.batch_sizes
    assert max(sizes[16]) == 64 and max(sizes[4096]) == 64  # 16 draws x 4 images per chunk, for any M
    assert len(sizes[4096]) == 4096 // 16 and sum(sizes[4096]) == 4096 * 4
    # more images than batch_size: images are split into blocks, still <= batch_size samples per call
    base = CallRecorder(Linear2()).eval()
    with torch.no_grad():
        smoothed_scores(base, torch.rand(10, 1, 1, 2), SmoothedInferenceConfig(0.3, 5, "prediction", batch_size=3),
                        num_classes=K)
    assert max(base.batch_sizes) == 3 and base.samples == 50


@pytest.mark.statistical
def test_prediction_vote_share_matches_the_analytic_probability() -> None:
    """For logits (z, -z) with z = w.x, P[vote = 0] = Phi(w.x / (sigma ||w||)); the vote share of M draws is
    Binomial(M, p) / M. Acceptance region: two-sided binomial quantiles at 1e-6 (false-failure rate <= 1e-6)."""
    w = torch.tensor([0.6, 0.8])

    def base(x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ w
        return torch.stack([z, -z], dim=1)

    x = torch.tensor([[[[0.2, 0.1]]]])
    sigma, m = 0.5, 4000
    p = scipy.stats.norm.cdf(float(x.flatten() @ w) / (sigma * 1.0))
    share = smoothed_scores(base, x, SmoothedInferenceConfig(sigma, m, "prediction", batch_size=1000),
                            num_classes=2, generator=torch.Generator().manual_seed(0))[0, 0].item()
    lo, hi = scipy.stats.binom.ppf([0.5e-6, 1 - 0.5e-6], m, p) / m
    assert lo <= share <= hi


def test_normalized_noise_space_equals_noise_after_normalization() -> None:
    mean, std = (0.3, 0.5), (0.2, 0.4)
    head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 9, 5))
    base = nn.Sequential(Normalize(mean, std), head).eval()
    x = torch.rand(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    cfg = SmoothedInferenceConfig(0.3, 6, "soft", noise_space=NormalizedNoise(mean, std))
    with torch.no_grad():
        keys = NoiseKeys.from_seed(3, range(2))
        got = smoothed_scores(base, x, cfg, num_classes=5, keys=keys)
        noise = NoiseStreams(keys, x.shape[1:]).draw(0, 6).transpose(0, 1)  # [6, B, C, H, W], unit noise
        normalized = (x - torch.tensor(mean).view(1, 2, 1, 1)) / torch.tensor(std).view(1, 2, 1, 1)
        want = head((normalized.unsqueeze(0) + 0.3 * noise).flatten(0, 1)).softmax(1).view(6, 2, 5).mean(0)
    assert torch.allclose(got, want, atol=1e-5)
    pixel = smoothed_scores(base, x, SmoothedInferenceConfig(0.3, 6, "soft"), num_classes=5, keys=keys)
    assert not torch.allclose(pixel, got, atol=1e-3)  # the declared space matters


def test_ties_abstain_and_rows_are_never_zero() -> None:
    scores = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]])
    assert labels_from_scores(scores).tolist() == [-1, 1, 2]
    # M = 2 hard votes that split: a tie, kept as scores (0.5, 0.5) and reported as -1
    const = lambda x: torch.tensor([[2.0, 1.0, 0.0]]).expand(x.shape[0], 3)  # noqa: E731
    cfg = SmoothedInferenceConfig(0.1, 2, "weighted", weights=(1.0, 1.0))
    out = smoothed_scores(const, torch.rand(2, 1, 1, 2), cfg, num_classes=3)
    assert torch.equal(out, torch.tensor([[0.5, 0.5, 0.0]] * 2))  # same-kernel: hand-made votes, sums of 0/1
    assert labels_from_scores(out).tolist() == [-1, -1]


def test_config_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        SmoothedInferenceConfig(0.1, mode="vote")
    with pytest.raises(ValueError, match="sigma"):
        SmoothedInferenceConfig(-0.1)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        SmoothedInferenceConfig(0.1, 0)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        SmoothedInferenceConfig(0.1, mode="weighted", weights=(1.0, -0.5))
    with pytest.raises(ValueError, match="soft_average"):
        SmoothedInferenceConfig(0.1, soft_average="median")
    with pytest.raises(ValueError, match="std must be > 0"):
        SmoothedInferenceConfig(0.1, noise_space=NormalizedNoise((0.5,), (0.0,)))
    with pytest.raises(TypeError, match="noise_space must be"):
        SmoothedInferenceConfig(0.1, noise_space=((0.5,), (0.25,)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the declared range"):
        smoothed_scores(Linear2(), toy_images() + 1, SmoothedInferenceConfig(0.1), num_classes=K)


def test_rank_weights_default_is_eq_11() -> None:
    w = rank_weights(4)
    assert torch.allclose(w, torch.tensor([1, 0.5, 0.25, 0.125]) / 1.875)
    assert math.isclose(float(rank_weights(3, (1.0, 0.2)).sum()), 1.0, rel_tol=1e-6)
