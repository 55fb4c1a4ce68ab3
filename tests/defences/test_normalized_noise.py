"""NormalizedNoiseDenoiser (Kumar & Narayan): the pixel-radius conversion R_pixel = R_n * min(std), checked on a
linear base classifier whose exact smoothed pixel radius is known, and the ART NormalizedNoisePreprocessor.

The statistical tests: for f(x) = 1[w.x + b > 0] behind an exact reconstructor, the smoothed classifier under
normalized noise (pixel std sigma_n * std_c on channel c) is f itself, with p_A = Phi(|w.x + b| / (sigma_n ||std * w||))
and exact pixel radius |w.x + b| / ||w||. A certified pixel radius above it happens only when the Clopper-Pearson
bound fails (probability <= alpha per image, independent across images and seeds); thresholds are binomial quantiles
at a false-failure rate of 1e-4 per test.
"""

import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

from art_ext import ABSTAIN, NormalizedNoise, PixelNoise
from art_ext.defences.normalized_noise import (
    IMAGENET_STD,
    NormalizedNoiseDenoiser,
    NormalizedNoisePreprocessor,
    NormalizedReconstructor,
)
from art_ext.smoothing import NoiseKeys, NoiseStreams
from art_ext.testing import LinearToy, tiny_cnn

FALSE_FAILURE = 1e-4
MEAN, STD = (0.4, 0.5, 0.6), (0.5, 0.25, 1.0)  # min std 0.25 on channel 1


class Denormalize(nn.Module):
    """An exact 'UNet': z -> z * std + mean, so the reconstruction of a clean image is the image."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, z):
        return z * self.std + self.mean


def linear_pipeline(channel: int, margins_over_sigma, sigma_n: float):
    """A LinearToy looking at one channel of 3x2x2 images, behind an exact reconstructor, and images at the given
    distances from its hyperplane in units of that channel's pixel noise std."""
    g = torch.Generator().manual_seed(3)
    w = torch.zeros(3, 2, 2, dtype=torch.float64)
    w[channel] = torch.randn(2, 2, generator=g, dtype=torch.float64)
    w = w.flatten()
    centre = torch.full((12,), 0.5, dtype=torch.float64)
    toy = LinearToy(w, float(-(centre @ w)))
    unit = w / w.norm()
    pixel_std = sigma_n * STD[channel]
    x = torch.stack([centre + m * pixel_std * unit for m in margins_over_sigma]).float().view(-1, 3, 2, 2)
    assert 0 <= x.min() and x.max() <= 1
    rec = NormalizedReconstructor(Denormalize(MEAN, STD), MEAN, STD)
    return NormalizedNoiseDenoiser(rec, toy).eval(), toy, x


@pytest.mark.statistical
def test_pixel_radius_is_sound_and_tight_along_the_lowest_std_channel():
    sigma_n, alpha, trials = 0.5, 0.05, 120
    margins = [0.3, 0.8, 1.5, -0.6, 1.0]
    h, toy, x = linear_pipeline(1, margins, sigma_n)  # w on the min-std channel: R_n * min(std) is exact
    true_radius, true_class = toy.true_radius(x), toy.true_class(x)
    violations = wrong = 0
    ratios = []
    for seed in range(trials):
        certs = h.certify(x, sigma=sigma_n, n0=32, n=400, alpha=alpha, num_classes=2, batch_size=4096,
                          generator=torch.Generator().manual_seed(seed))
        ok = certs.label != ABSTAIN
        assert torch.allclose(certs.radius, certs.radius_noise_space * min(STD))
        violations += int(((certs.radius > true_radius) & ok).sum())
        wrong += int((ok & (certs.label != true_class)).sum())
        ratios.append((certs.radius[ok] / true_radius[ok]).mean().item())
    limit = sps.binom.ppf(1 - FALSE_FAILURE, trials * len(margins), alpha)
    assert violations <= limit, f"{violations} pixel radii above the exact radius (allowed {limit:.0f})"
    assert wrong <= limit
    # not vacuous: with n = 400 the certified radius is on average well above half the exact one (reporting R_n
    # itself, 4x larger, or R_n * mean(std) would break the violation count above)
    assert np.mean(ratios) > 0.6


@pytest.mark.statistical
def test_reporting_r_n_or_mean_std_as_a_pixel_radius_over_claims():
    sigma_n = 0.5
    h, toy, x = linear_pipeline(1, [1.0, 1.5], sigma_n)
    certs = h.certify(x, sigma=sigma_n, n0=100, n=20_000, alpha=0.001, num_classes=2, batch_size=20_000,
                      generator=torch.Generator().manual_seed(0))
    true_radius = toy.true_radius(x)
    assert (certs.radius <= true_radius).all()
    assert (certs.radius_noise_space > 3 * true_radius).all()  # R_n is 1 / 0.25 = 4x the pixel radius here
    assert (certs.radius_noise_space * float(np.mean(STD)) > true_radius).all()


@pytest.mark.statistical
def test_pixel_radius_is_conservative_along_a_high_std_channel():
    sigma_n, alpha, trials = 0.2, 0.05, 60
    h, toy, x = linear_pipeline(2, [0.5, 1.0, 2.0], sigma_n)  # w on the std-1.0 channel
    true_radius = toy.true_radius(x)
    for seed in range(trials):
        certs = h.certify(x, sigma=sigma_n, n0=32, n=400, alpha=alpha, num_classes=2, batch_size=4096,
                          generator=torch.Generator().manual_seed(seed))
        # R_n ~ true radius / std_2 = true radius here, so the pixel radius ~ true radius * 0.25: far inside
        assert (certs.radius <= 0.5 * true_radius).all()


def test_certify_uses_normalized_noise_and_pixel_noise_when_asked():
    h, _, x = linear_pipeline(1, [1.0], 0.5)
    assert h.noise_space == NormalizedNoise(MEAN, STD)
    assert h.pixel_sigma(0.5) == (0.25, 0.125, 0.5)
    pixel = NormalizedNoiseDenoiser(h.reconstructor, h.classifier, noise="pixel")
    assert pixel.noise_space == PixelNoise() and pixel.pixel_sigma(0.5) == (0.5, 0.5, 0.5)
    certs = pixel.certify(x, sigma=0.125, n0=10, n=200, alpha=0.01, num_classes=2, batch_size=500,
                          generator=torch.Generator().manual_seed(0))
    # same-kernel: pixel noise: the same tensor, no conversion
    assert torch.equal(certs.radius, certs.radius_noise_space)  # pixel noise: no conversion


def test_reconstructor_normalizes_per_channel_and_validates():
    rec = NormalizedReconstructor(nn.Identity(), MEAN, STD, output_space="normalized")
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor(MEAN).view(-1, 1, 1)) / torch.tensor(STD).view(-1, 1, 1)
    assert torch.allclose(rec(x), expected)
    assert NormalizedReconstructor(nn.Identity()).stats[1] == pytest.approx(IMAGENET_STD)
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
        rec(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="std must be > 0 in every channel, got \\(0.5, 0.0\\)"):
        NormalizedReconstructor(nn.Identity(), (0.1, 0.2), (0.5, 0.0))
    with pytest.raises(ValueError, match="one value per channel"):
        NormalizedReconstructor(nn.Identity(), (0.1, 0.2), (0.5,))
    with pytest.raises(ValueError, match="output_space must be one of"):
        NormalizedReconstructor(nn.Identity(), output_space="logits")
    with pytest.raises(TypeError, match="must be a NormalizedReconstructor"):
        NormalizedNoiseDenoiser(nn.Identity(), nn.Identity())
    with pytest.raises(ValueError, match="noise must be one of"):
        NormalizedNoiseDenoiser(rec, nn.Identity(), noise="latent")


# ---- ART adapter -------------------------------------------------------------------------------------------------

def _reconstructor(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, 1))  # a non-linear stand-in
    return NormalizedReconstructor(net, MEAN, STD).eval()


def _estimator(pre, model, **kwargs):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model, nn.CrossEntropyLoss(), (3, 8, 8), 10, clip_values=(0.0, 1.0),
                             preprocessing=(np.array(MEAN), np.array(STD)), preprocessing_defences=[pre],
                             device_type="cpu", **kwargs)


def test_art_predictions_equal_the_torch_pipeline_with_noise_after_the_estimators_normalization():
    rec, model = _reconstructor(), tiny_cnn(in_channels=3, size=8)
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    pre = NormalizedNoisePreprocessor(rec, 0.5, seed=7)
    est = _estimator(pre, model)
    pre.check_estimator(est)
    got = est.predict(x.numpy())
    # by hand: z = (x - m) / s, z + 0.5 e, U -> pixels, ART standardises, classifier
    # the preprocessor's noise: one key per image from one draw of its generator, image i gets its key's sample 0
    e = NoiseStreams(NoiseKeys.draw(torch.Generator().manual_seed(7), 5), (3, 8, 8)).draw(0, 1)[:, 0]
    m, s = torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1)
    with torch.no_grad():
        pixels = rec.network((x - m) / s + 0.5 * e)
        want = model((pixels - m) / s)
    assert np.allclose(got, want.numpy(), atol=1e-5)


def test_noise_is_independent_of_the_batch_size():
    rec, x = _reconstructor(), torch.rand(6, 3, 8, 8)
    whole = NormalizedNoisePreprocessor(rec, 0.5, seed=3).forward(x)[0]
    chunked = NormalizedNoisePreprocessor(rec, 0.5, seed=3, batch_size=2).forward(x)[0]
    assert torch.allclose(whole, chunked, atol=1e-6)


def test_noise_is_keyed_per_image_not_by_the_other_images_of_the_call():
    """Image i's noise depends on the call's one draw and i only: the first images of a call get the same noise
    alone as inside a longer call (elementwise ops on the same values: bit-equal)."""
    rec, x = _reconstructor(), torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    whole = NormalizedNoisePreprocessor(rec, 0.5, seed=3)._noisy(x)
    for k in (1, 3, 6):
        # same-kernel: per-image keyed noise added by the same elementwise ops
        assert torch.equal(NormalizedNoisePreprocessor(rec, 0.5, seed=3)._noisy(x[:k]), whole[:k])
    pixel = NormalizedNoisePreprocessor(rec, 0.5, noise="pixel", seed=3)._noisy(x)
    # the same unit noise, scaled by std_c in normalized mode and by 1 in pixel mode
    std = torch.tensor(STD).view(-1, 1, 1)
    torch.testing.assert_close((whole - x) / std, pixel - x, rtol=1e-5, atol=1e-6)
    pre = NormalizedNoisePreprocessor(rec, 0.5, seed=3)
    # same-kernel: per-image keyed noise added by the same elementwise ops
    assert not torch.equal(pre._noisy(x), pre._noisy(x))  # each call draws fresh keys


def test_exact_and_bpda_gradients():
    rec, x = _reconstructor(), torch.rand(2, 3, 8, 8, requires_grad=True)
    exact = NormalizedNoisePreprocessor(rec, 0.0, gradient="exact")
    bpda = NormalizedNoisePreprocessor(rec, 0.0, gradient="bpda")
    weights = torch.randn(2, 3, 8, 8)
    g_exact = torch.autograd.grad((exact.forward(x)[0] * weights).sum(), x)[0]
    g_bpda = torch.autograd.grad((bpda.forward(x)[0] * weights).sum(), x)[0]
    want = torch.autograd.grad((rec(x) * weights).sum(), x)[0]
    assert torch.allclose(g_exact, want, atol=1e-6)
    # same-kernel: elementwise: the identity backward passes the weights through
    assert torch.equal(g_bpda, weights)  # identity backward pass
    assert torch.allclose(exact.forward(x)[0], bpda.forward(x)[0])  # same forward values


@pytest.mark.slow
def test_arts_own_pgd_runs_against_the_defended_classifier():
    from art.attacks.evasion import ProjectedGradientDescent

    rec, model = _reconstructor(), tiny_cnn(in_channels=3, size=8)
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(2)).numpy()
    for gradient in ("exact", "bpda"):
        est = _estimator(NormalizedNoisePreprocessor(rec, 0.0, gradient=gradient), model)
        y = est.predict(x).argmax(1)
        attack = ProjectedGradientDescent(est, norm=2, eps=1.0, eps_step=0.25, max_iter=10, verbose=False)
        x_adv = attack.generate(x, y=np.eye(10)[y])
        dist = np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1)
        assert dist.max() <= 1.0 + 1e-4 and x_adv.min() >= 0 and x_adv.max() <= 1
        flipped = (est.predict(x_adv).argmax(1) != y).mean()
        assert flipped > 0, f"{gradient}: ART PGD changed no prediction"


def test_adapter_validates_its_arguments_and_the_estimators_normalization():
    rec = _reconstructor()
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        NormalizedNoisePreprocessor(rec, -0.1)
    with pytest.raises(ValueError, match="output_space='pixel'"):
        NormalizedNoisePreprocessor(NormalizedReconstructor(nn.Identity(), MEAN, STD, output_space="normalized"), 0.1)
    with pytest.raises(ValueError, match="gradient must be one of"):
        NormalizedNoisePreprocessor(rec, 0.1, gradient="zero")
    from art.estimators.classification import PyTorchClassifier

    pre = NormalizedNoisePreprocessor(rec, 0.1)
    plain = PyTorchClassifier(tiny_cnn(in_channels=3, size=8), nn.CrossEntropyLoss(), (3, 8, 8), 10,
                              clip_values=(0.0, 1.0), preprocessing_defences=[pre], device_type="cpu")
    with pytest.raises(ValueError, match=r"the estimator normalizes with \(mean, std\) = None"):
        pre.check_estimator(plain)


# ---- input contract ----------------------------------------------------------------------------------------------
def test_reconstructor_refuses_a_network_of_another_channel_count():
    from art_ext.models import UNet

    with pytest.raises(ValueError, match=r"network takes 1 input channel\(s\) but mean/std have 3"):
        NormalizedReconstructor(UNet(in_channels=1, depth=1, width=2), MEAN, STD)
    with pytest.raises(ValueError, match=r"network returns 1 channel\(s\) but mean/std have 3"):
        NormalizedReconstructor(UNet(in_channels=3, out_channels=1, depth=1, width=2), MEAN, STD)
    with pytest.raises(ValueError, match=r"network takes 3 input channel\(s\) but mean/std have 1"):
        NormalizedReconstructor(nn.Conv2d(3, 3, 1), (0.5,), (0.25,))
    NormalizedReconstructor(UNet(in_channels=3, depth=1, width=2), MEAN, STD)  # matching: accepted


@pytest.mark.parametrize("mean, std, message", [
    ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4),
     r"mean must be in \[0, 1\] in every channel \(statistics of \[0, 1\] pixels; divide 0-255 statistics by 255\), "
     r"got \(123.7, 116.3, 103.5\)"),
    ((0.5, 0.5, 0.5), (58.4, 57.1, 57.4), r"std must be in \(0, 1\] in every channel .*got \(58.4, 57.1, 57.4\)"),
    ((-0.1, 0.5, 0.5), STD, r"mean must be in \[0, 1\] in every channel"),
])
def test_reconstructor_refuses_statistics_outside_the_pixel_range(mean, std, message):
    with pytest.raises(ValueError, match=message):
        NormalizedReconstructor(nn.Identity(), mean, std)


def test_certify_checks_the_channel_count_before_any_work():
    h, _, x = linear_pipeline(1, [1.0], 0.5)
    pixel = NormalizedNoiseDenoiser(h.reconstructor, h.classifier, noise="pixel")
    calls = []
    pixel.register_forward_pre_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r"x has shape \(1, 1, 2, 2\); expected images \[B, 3, H, W\]"):
        pixel.certify(x[:, :1], sigma=0.125, n0=10, n=200, alpha=0.01, num_classes=2, batch_size=500)
    assert not calls
    channels_last = torch.rand(1, 2, 2, 3)
    with pytest.raises(ValueError, match="channel first"):
        h.reconstructor(channels_last)


def test_adapter_refuses_unknown_or_failed_set_params_and_unknown_device_types():
    pre = NormalizedNoisePreprocessor(_reconstructor(), 0.1)
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['simga'\]; it accepts \['batch_size', 'gradient', "
                                        r"'noise', 'sigma'\]"):
        pre.set_params(simga=0.5)  # ART's own set_params silently ignores unknown keys
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        pre.set_params(sigma=-1.0, batch_size=4)
    assert pre.sigma == 0.1 and pre.batch_size is None  # a refused set_params leaves the parameters as they were
    pre.set_params(sigma=0.25)
    assert pre.sigma == 0.25
    with pytest.raises(ValueError, match=r"device_type must be 'cpu' or 'gpu' \(ART's convention\), got 'cuda'"):
        NormalizedNoisePreprocessor(_reconstructor(), 0.1, device_type="cuda")  # ART falls back to CPU silently


def test_check_estimator_refuses_other_clip_values_channel_order_and_channel_count():
    from art.estimators.classification import PyTorchClassifier

    rec = _reconstructor()
    pre = NormalizedNoisePreprocessor(rec, 0.1)
    norm = (np.array(MEAN), np.array(STD))

    def est(shape=(3, 8, 8), **kwargs):
        kwargs.setdefault("clip_values", (0.0, 1.0))
        return PyTorchClassifier(tiny_cnn(in_channels=3, size=8), nn.CrossEntropyLoss(), shape, 10,
                                 preprocessing=norm, preprocessing_defences=[pre], device_type="cpu", **kwargs)

    pre.check_estimator(est())
    with pytest.raises(ValueError, match=r"clip_values is \(0.0, 255.0\); art_ext expects inputs in \[0, 1\]"):
        pre.check_estimator(est(clip_values=(0.0, 255.0)))
    with pytest.raises(ValueError, match=r"channels_first=False.*expects channel-first images \[N, 3, H, W\]"):
        pre.check_estimator(est((8, 8, 3), channels_first=False))
    with pytest.raises(ValueError, match=r"input_shape \(1, 8, 8\) has 1 channel\(s\); the reconstructor has 3"):
        pre.check_estimator(est((1, 8, 8)))
