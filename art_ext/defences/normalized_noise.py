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

from art_ext.ops.modes import eval_mode
from art_ext.smoothing import Certificates, certify
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


def __getattr__(name: str) -> Any:
    """``NormalizedNoisePreprocessor``, the ART adapter (``art_ext.defences.preprocessors``), loaded with ART on first
    use: importing this module does not import ART."""
    if name == "NormalizedNoisePreprocessor":
        from art_ext.defences.preprocessors import NormalizedNoisePreprocessor

        return NormalizedNoisePreprocessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
