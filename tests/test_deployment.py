"""``art_ext.deployment``: one deployed model's views agree on the declared noise (its space and pixel sigma), the
frozen-noise surrogate is deterministic and batch-independent, and every attack output passes one final projection
onto the eps-ball and the bounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext import zoo
from art_ext.deployment import Deployment, FrozenNoiseSmoothing, declared_noise
from art_ext.ops.norms import lp_norm, project_onto_ball
from art_ext.smoothing.noise import NormalizedNoise, PixelNoise
from art_ext.testing import tiny_cnn
from art_ext.types import Bounds

SPACE = NormalizedNoise(mean=(0.305,), std=(0.319,))


class Recorder(nn.Module):
    """A classifier that records its inputs (the noisy images the deployment feeds it)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.flatten(1)[:, :3]


def test_declared_noise_of_zoo_denoisers():
    sigma, space = declared_noise(zoo.get_entry("digits_unet_nn_100", kind="denoiser"))
    assert sigma == 1.0 and space == SPACE
    assert declared_noise(zoo.get_entry("digits_dncnn_stabmse_025", kind="denoiser")) == (0.25, PixelNoise())
    with pytest.raises(TypeError, match="not a denoiser entry"):
        declared_noise(zoo.get_entry("digits_cnn", kind="classifier"))


def test_normalized_noise_deployment_draws_pixel_noise_of_std_times_sigma():
    recorder = Recorder()
    dep = Deployment.smoothed(recorder, 1.0, num_classes=3, num_samples=1, noise_space=SPACE, gradient="frozen",
                              frozen_seed=3, generator=torch.Generator().manual_seed(0))
    assert dep.sigma == 1.0 and dep.sigma_pixel == pytest.approx(0.319, abs=1e-12)
    x = torch.full((1, 1, 64, 64), 0.5)
    # the noise of every view (query, frozen surrogate) has pixel std 0.319, not 1.0; 4096 draws: the sample std is
    # within 5% of 0.319 with probability > 1 - 1e-9
    dep.query(torch.Generator().manual_seed(1))(x)
    dep.differentiate(x)
    dep.decide(x)
    assert len(recorder.seen) == 3
    for seen in recorder.seen:
        assert (seen - 0.5).std().item() == pytest.approx(0.319, rel=0.05)


def test_frozen_noise_surrogate_is_deterministic_and_batch_independent():
    base = tiny_cnn().eval()
    surrogate = FrozenNoiseSmoothing(base, 0.25, 4, seed=0)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    # same-kernel: the same call twice on the same batch
    torch.testing.assert_close(surrogate(x), surrogate(x), rtol=0, atol=0)
    # batch of 1 vs 5: different kernel shapes, so a tolerance of float32 rounding
    torch.testing.assert_close(surrogate(x)[2:3], surrogate(x[2:3]), rtol=1e-6, atol=1e-6)
    noise = 0.25 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.log(torch.softmax(base(x[1:2] + noise), 1).mean(0))
    torch.testing.assert_close(surrogate(x)[1], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_finish_projects_points_outside_and_keeps_points_inside(norm):
    dep = Deployment.plain(tiny_cnn().eval())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 8, 8, generator=gen)
    inside = project_onto_ball(x, x + 0.01 * torch.randn(4, 1, 8, 8, generator=gen), 0.3, norm, Bounds())
    outside = x + 2.0 * torch.randn(4, 1, 8, 8, generator=gen)  # far outside the ball and the box
    out = dep.finish(x, torch.cat([inside[:2], outside[2:]]), 0.3, norm)
    # same-kernel: feasible points are returned untouched
    torch.testing.assert_close(out[:2], inside[:2], rtol=0, atol=0)
    assert (lp_norm(out - x, norm) <= 0.3 * (1 + 1e-5)).all()
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="NaN"):
        dep.finish(x, torch.full_like(x, float("nan")), 0.3, norm)


def test_a_randomized_deployment_needs_a_finite_positive_sigma():
    for sigma in (0.0, float("inf"), -1.0):
        with pytest.raises(ValueError, match="finite sigma > 0"):
            Deployment.smoothed(tiny_cnn().eval(), sigma, num_classes=10, num_samples=2)
    with pytest.raises(ValueError, match="frozen_seed"):
        Deployment.smoothed(tiny_cnn().eval(), 0.25, num_classes=10, num_samples=2, gradient="frozen")
