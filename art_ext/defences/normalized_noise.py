"""Kumar & Narayan's normalized-noise denoiser: noise added after input normalization, a UNet reconstructor.

Implements the test-time pipeline of Kumar & Narayan ("Towards Robust Certified Defense via Improved Randomized
Smoothing", Sec. IV-A, Fig. 1): the image x in [0, 1] is normalized, z = (x - mean) / std (per channel; ImageNet
statistics in the paper), Gaussian noise of std sigma_n is added to z, a UNet U maps z + delta to the input the
classifier expects (pixels by default), and the classifier f votes: the base classifier of randomized smoothing is

    h(x + delta') = f(U((x + delta' - mean) / std)),   delta' = std * delta,  delta ~ N(0, sigma_n^2 I),

which is exactly ``NormalizedNoise(mean, std)`` of the smoothing layer: art_ext draws the noise in pixel space with
std ``std_c * sigma_n`` on channel c, and the base classifier normalizes. Certification (Cohen et al.'s CERTIFY with
``noise_space=NormalizedNoise(mean, std)``) certifies R_n = sigma_n * Phi^-1(p_A_lower) in normalized units; the
pixel-space radius it guarantees is R_pixel = R_n * min_c std_c (research/algorithms.md §9.2), which ``Certificates``
report as ``radius`` (R_n as ``radius_noise_space``). The paper reports R_n: on ImageNet statistics a "radius 1.0"
is a pixel radius of 0.224.

Pixel-space comparison (Salman-style): ``noise="pixel"`` keeps the same normalize -> UNet -> classifier network but
adds isotropic noise to the pixels (``PixelNoise``), so two pipelines can be compared at equal pixel sigma / radius.
For a single-channel input (digits) normalized noise of std sigma_n *is* isotropic pixel noise of std
sigma_n * std, so the two coincide at sigma_pixel = sigma_n * std; they differ on colour images, where normalized
noise is anisotropic in pixel space.

Two ways in:
    * torch: ``NormalizedNoiseDenoiser(NormalizedReconstructor(unet, mean, std), classifier).certify(x, ...)``;
    * ART: ``PyTorchClassifier(classifier, ..., preprocessing=(mean, std),
      preprocessing_defences=[NormalizedNoisePreprocessor(reconstructor, sigma)])``: the preprocessor normalizes with
      the estimator's own (mean, std), adds the noise there, reconstructs pixels, and ART then normalizes for the
      classifier as usual; gradients are exact through the UNet or BPDA (identity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from art_ext import _art
from art_ext.defences.denoised_smoothing import DenoiserPreprocessor, _check_batch, denoise
from art_ext.ops.modes import eval_mode
from art_ext.smoothing import Certificates, certify
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams
from art_ext.smoothing.noise import NoiseSpace, NormalizedNoise, PixelNoise

#: ImageNet statistics, the normalization Kumar & Narayan use for CIFAR-10 and ImageNet (Sec. V-C)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_SPACES = ("pixel", "normalized")
NOISE = ("normalized", "pixel")


def _stats(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of numbers, one per channel, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, one per channel, got {values!r}")
    return out


def noise_space_for(noise: str, mean: Sequence[float], std: Sequence[float]) -> NoiseSpace:
    """``NormalizedNoise(mean, std)`` for ``noise="normalized"`` (Kumar & Narayan), ``PixelNoise()`` for ``"pixel"``."""
    if noise not in NOISE:
        raise ValueError(f"noise must be one of {NOISE}, got {noise!r}")
    return NormalizedNoise(tuple(mean), tuple(std)) if noise == "normalized" else PixelNoise()


class NormalizedReconstructor(nn.Module):
    """R(x) = U((x - mean) / std): a network U applied to the normalized image, its output in ``output_space``.

    Args:
        network: [B, C, H, W] -> [B, C, H, W] (e.g. ``art_ext.models.UNet``), fed normalized images.
        mean: Per-channel mean of [0, 1] pixels, in [0, 1] (default ImageNet's, as Kumar & Narayan; the digits zoo
            uses the digits statistics ``art_ext.zoo.DIGITS_MEAN`` / ``DIGITS_STD``, 0.305 / 0.319).
        std: Per-channel std of [0, 1] pixels, in (0, 1]. A network that declares ``in_channels`` (or
            ``out_channels``), as ``UNet``, ``DnCNN`` and ``nn.Conv2d`` do, must have one per mean/std value.
        output_space: ``"pixel"`` (default: U reconstructs [0, 1] pixels for a classifier that normalizes itself)
            or ``"normalized"`` (U reconstructs the normalized image for a classifier that takes normalized input).
    Shapes:
        [B, C, H, W] pixels (noisy or clean) -> [B, C, H, W] in ``output_space``.

    Examples:
        >>> rec = NormalizedReconstructor(nn.Identity(), mean=(0.5,), std=(0.25,), output_space="normalized")
        >>> rec(torch.full((1, 1, 2, 2), 0.75)).flatten().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: nn.Module, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, *, output_space: str = "pixel") -> None:
        super().__init__()
        mean_t, std_t = _stats(mean, "mean"), _stats(std, "std")
        if len(mean_t) != len(std_t):
            raise ValueError(f"mean and std need one value per channel each, got mean={mean_t}, std={std_t}")
        if min(std_t) <= 0:
            raise ValueError(f"std must be > 0 in every channel, got {std_t}")
        pixel_stats = "statistics of [0, 1] pixels; divide 0-255 statistics by 255"
        if not all(0.0 <= m <= 1.0 for m in mean_t):
            raise ValueError(f"mean must be in [0, 1] in every channel ({pixel_stats}), got {mean_t}")
        if max(std_t) > 1.0:
            raise ValueError(f"std must be in (0, 1] in every channel ({pixel_stats}), got {std_t}")
        for attr, what in (("in_channels", "takes {} input channel(s)"), ("out_channels", "returns {} channel(s)")):
            declared = getattr(network, attr, None)
            if isinstance(declared, int) and declared != len(mean_t):
                raise ValueError(f"network {what.format(declared)} but mean/std have {len(mean_t)}; the reconstructor "
                                 f"maps images [B, {len(mean_t)}, H, W] to [B, {len(mean_t)}, H, W]")
        if output_space not in OUTPUT_SPACES:
            raise ValueError(f"output_space must be one of {OUTPUT_SPACES}, got {output_space!r}")
        self.network = network
        self.output_space = output_space
        self._stats = (mean_t, std_t)  # as given (the buffers below hold their float32 copies)
        self.register_buffer("mean", torch.tensor(mean_t).view(-1, 1, 1))  # [C, 1, 1]
        self.register_buffer("std", torch.tensor(std_t).view(-1, 1, 1))

    @property
    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) as tuples of floats, as given to the constructor."""
        return self._stats

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected images [B, {self.mean.shape[0]}, H, W] (channel first, one channel per "
                             f"mean/std value), got shape {tuple(x.shape)}")
        return (x - self.mean) / self.std  # [B, C, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))  # [B, C, H, W] in output_space

    def extra_repr(self) -> str:
        mean, std = self.stats
        return f"mean={mean}, std={std}, output_space={self.output_space!r}"


class NormalizedNoiseDenoiser(nn.Module):
    """Base classifier of Kumar & Narayan (Sec. IV-A, Fig. 1): h(x) = f(R(x)), R = U o normalize.

    Smoothing noise is added by the caller in ``self.noise_space`` (``NormalizedNoise(mean, std)`` for
    ``noise="normalized"``, the paper's; ``PixelNoise()`` for the Salman-style pixel-space comparison), with sigma in
    that space's units; ``certify`` does it and returns pixel radii (``radius`` = R_n * min(std)) beside R_n
    (``radius_noise_space``).

    Args:
        reconstructor: A ``NormalizedReconstructor`` (its mean / std define the normalized space).
        classifier: Logits of the reconstruction: [B, C, H, W] in ``reconstructor.output_space`` -> [B, K];
            never modified.
        noise: ``"normalized"`` (default) or ``"pixel"``.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> rec = NormalizedReconstructor(nn.Identity(), mean=(0.5,), std=(0.25,), output_space="normalized")
        >>> h = NormalizedNoiseDenoiser(rec, LinearToy(torch.ones(4), 0.0)).eval()
        >>> certs = h.certify(torch.full((1, 1, 2, 2), 0.6), sigma=0.5, n0=10, n=1000, alpha=0.001,
        ...                   num_classes=2, batch_size=1000, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(certs.radius, certs.radius_noise_space * 0.25)  # pixel radius = R_n * min(std)
        True
    """

    def __init__(self, reconstructor: NormalizedReconstructor, classifier: nn.Module, *,
                 noise: str = "normalized") -> None:
        super().__init__()
        if not isinstance(reconstructor, NormalizedReconstructor):
            raise TypeError(f"reconstructor must be a NormalizedReconstructor (it carries mean / std), got "
                            f"{type(reconstructor).__name__}")
        self.noise_space = noise_space_for(noise, *reconstructor.stats)
        self.noise = noise
        self.reconstructor = reconstructor
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.reconstructor(x))  # [B, K]

    def pixel_sigma(self, sigma: float) -> tuple[float, ...]:
        """Per-channel pixel-space std of the smoothing noise at ``sigma`` (in this denoiser's noise space)."""
        if self.noise == "pixel":
            return (float(sigma),) * len(self.reconstructor.stats[1])
        return tuple(float(sigma) * s for s in self.reconstructor.stats[1])

    def certify(self, x: torch.Tensor, *, sigma: float, n0: int, n: int, alpha: float, num_classes: int,
                batch_size: int, generator: torch.Generator | None = None) -> Certificates:
        """Cohen et al.'s CERTIFY (arXiv:1902.02918v2, Thm. 1) of this base classifier with the noise in
        ``self.noise_space`` at ``sigma`` (that space's units). ``radius``: pixel units; ``radius_noise_space``: R_n.
        The module is evaluated in eval mode (its modes are restored). ``x``: [B, C, H, W] in [0, 1], C the
        reconstructor's channel count (checked with the rest of certify's arguments before any work)."""
        channels = len(self.reconstructor.stats[0])
        if isinstance(x, torch.Tensor) and (x.dim() != 4 or x.shape[1] != channels):
            raise ValueError(f"x has shape {tuple(x.shape)}; expected images [B, {channels}, H, W] (channel first, "
                             "one channel per mean/std value of the reconstructor)")
        with eval_mode(self):
            return certify(self, x, n0=n0, n=n, sigma=sigma, alpha=alpha, num_classes=num_classes,
                           batch_size=batch_size, generator=generator, noise_space=self.noise_space)


class NormalizedNoisePreprocessor(DenoiserPreprocessor):
    """ART ``PreprocessorPyTorch``: noise after normalization, then the UNet, returning pixels (Kumar & Narayan).

    ART applies preprocessing defences to [0, 1] pixels and its ``preprocessing=(mean, std)`` standardisation after
    them. This preprocessor therefore normalizes with the reconstructor's (mean, std), which should be the
    estimator's own (``check_estimator`` verifies it), adds fresh noise of std ``sigma`` there (``noise="pixel"``:
    in pixels), reconstructs pixels with the UNet, and hands them to ART's standardisation and the classifier.

    Noise keyed per image: each ``forward`` takes one draw from the generator and derives one ``NoiseKeys`` key per
    image of the batch it receives; image i's noise is a function of that draw and i only, not of the other images
    or of the denoiser's ``batch_size``. ART's ``predict``, ``loss_gradient`` and ``class_gradient`` apply the
    preprocessing to the whole array of a call before batching, so there the noise is keyed per image per call.
    (A smoothing estimator that feeds this preprocessor chunks of noisy samples calls it once per chunk: its base
    is then random, not the fixed function that CERTIFY needs; use ``NormalizedNoiseDenoiser.certify`` instead.)

    Args:
        reconstructor: A ``NormalizedReconstructor`` with ``output_space="pixel"``.
        sigma: Noise std in the noise space's units (>= 0; 0 = reconstruction only).
        noise: ``"normalized"`` (default) or ``"pixel"``.
        gradient: ``"exact"`` (autograd through the UNet; the noise is additive, so d/dx is exact) or ``"bpda"``
            (identity backward pass through noise + UNet).
        seed: Seeds the noise generator (None: torch's global generator).
        batch_size, device_type, apply_fit, apply_predict: As ``DenoiserPreprocessor``.

    Examples:
        >>> import numpy as np
        >>> from art.estimators.classification import PyTorchClassifier
        >>> from art_ext.testing import tiny_cnn
        >>> rec = NormalizedReconstructor(nn.Conv2d(3, 3, 1), IMAGENET_MEAN, IMAGENET_STD).eval()
        >>> pre = NormalizedNoisePreprocessor(rec, 0.25, gradient="bpda", seed=0)
        >>> est = PyTorchClassifier(tiny_cnn(in_channels=3), nn.CrossEntropyLoss(), (3, 8, 8), 10,
        ...                         clip_values=(0.0, 1.0), preprocessing=(np.array(IMAGENET_MEAN),
        ...                         np.array(IMAGENET_STD)), preprocessing_defences=[pre])
        >>> pre.check_estimator(est)  # the noise goes in after the estimator's own normalization
        >>> est.predict(np.zeros((2, 3, 8, 8), dtype=np.float32)).shape
        (2, 10)
    """

    params = ["sigma", "noise", "gradient", "batch_size"]

    def __init__(self, reconstructor: NormalizedReconstructor, sigma: float, *, noise: str = "normalized",
                 gradient: str = "exact", seed: int | None = None, batch_size: int | None = None,
                 device_type: str = "cpu", apply_fit: bool = False, apply_predict: bool = True) -> None:
        if not isinstance(reconstructor, NormalizedReconstructor):
            raise TypeError(f"reconstructor must be a NormalizedReconstructor, got {type(reconstructor).__name__}")
        if reconstructor.output_space != "pixel":
            raise ValueError("the ART adapter needs a reconstructor with output_space='pixel' (ART's own "
                             f"standardisation follows it), got {reconstructor.output_space!r}")
        self.sigma, self.noise, self._stats = sigma, noise, reconstructor.stats
        super().__init__(reconstructor, gradient=gradient, batch_size=batch_size, device_type=device_type,
                         apply_fit=apply_fit, apply_predict=apply_predict)
        self._generator = _art.generator_for(seed, self.device)

    def _check_params(self) -> None:  # ART's set_params() re-runs this
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not (
                math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0 (noise-space units), got {self.sigma!r}")
        self.noise_space = noise_space_for(self.noise, *self._stats)
        super()._check_params()

    def check_estimator(self, estimator: Any) -> None:
        """Raise ``ValueError`` unless ``estimator`` feeds this preprocessor what it expects: ``clip_values`` None or
        (0, 1) ([0, 1] pixels, the range of mean / std), channel-first inputs with the reconstructor's channel count,
        and a ``preprocessing`` (mean, std) equal to the reconstructor's, i.e. the noise goes in after the
        estimator's own normalization."""
        own = _art.estimator_normalization(estimator)  # checks it is a PyTorchClassifier
        _art.check_pixel_clip_values(estimator)
        channels = len(self._stats[0])
        if not estimator.channels_first:
            raise ValueError(f"the estimator has channels_first=False (input_shape {tuple(estimator.input_shape)}); "
                             f"the preprocessor expects channel-first images [N, {channels}, H, W]")
        shape = tuple(estimator.input_shape)
        if len(shape) != 3 or shape[0] != channels:
            raise ValueError(f"the estimator's input_shape {shape} has {shape[0] if shape else 0} channel(s); the "
                             f"reconstructor has {channels} (expected input_shape ({channels}, H, W))")
        mine = self._stats
        if own is None or not (torch.allclose(torch.tensor(own[0]), torch.tensor(mine[0]))
                               and torch.allclose(torch.tensor(own[1]), torch.tensor(mine[1]))):
            raise ValueError(f"the estimator normalizes with (mean, std) = {own}, the reconstructor with {mine}; "
                             "pass preprocessing=(mean, std) equal to the reconstructor's to the PyTorchClassifier")

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        _check_batch(x)
        self.noise_space.check_input(x)
        sigma = float(self.sigma)
        if sigma == 0:
            return x
        keys = NoiseKeys.draw(self._generator, x.shape[0], x.device)  # one draw per call, key i = f(draw, i)
        noise = NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype).draw(0, 1)[:, 0]  # [N, C, H, W]
        scale = sigma if self.noise_space.is_pixel else sigma * self.noise_space.pixel_scale(x)  # [C, 1, 1]
        return x + scale * noise

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return denoise(self.denoiser, self._noisy(x), self._config), y  # [N, C, H, W] pixels

    def estimate_forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return denoise(self.denoiser, self._noisy(x), self._config)
