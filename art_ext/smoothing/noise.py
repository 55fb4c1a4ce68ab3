"""Noise spaces of randomized smoothing, and Gaussian noise as a function and as a layer.

A noise space says where the isotropic Gaussian noise of std ``sigma`` is added, and therefore in which units
``sigma`` and the certified radius are measured:

* ``PixelNoise()`` (the default everywhere): noise on [0, 1] pixels, ``x + sigma * e``; radii are pixel L2 radii.
* ``NormalizedNoise(mean, std)``: noise of std ``sigma`` added *after* the per-channel normalization
  ``(x - mean_c) / std_c``. In pixel space that is noise of std ``std_c * sigma`` on channel c, which is how it is
  drawn here (the base classifier keeps receiving pixels and normalizes itself). A radius R_n certified in the
  normalized space is a pixel radius of ``R_n * min_c std_c`` (research/algorithms.md §9.2): an L2 ball of radius r
  in pixels maps into the normalized ball of radius r / min_c std_c, so the normalized certificate covers the pixel
  ball of radius R_n * min_c std_c and no larger ball in general.

Every function that adds smoothing noise takes ``noise_space=`` (``None`` = ``PixelNoise()``), with ``sigma`` in
that space's units; every certificate reports ``radius`` in pixel units and keeps ``radius_noise_space``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from art_ext.ops.validation import check_sigma


class NoiseSpace:
    """Where smoothing noise is added (base class of ``PixelNoise`` and ``NormalizedNoise``)."""

    def pixel_scale(self, x: torch.Tensor) -> torch.Tensor | float:
        """Per-channel pixel-space std of unit noise in this space: a float or a tensor [C, 1, 1] for x [B, C, H, W]."""
        raise NotImplementedError

    def pixel_radius(self, radius: torch.Tensor) -> torch.Tensor:
        """A radius certified in this space, converted to a pixel-space L2 radius that it certifies."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` [B, C, H, W] does not fit this space (e.g. a channel-count mismatch)."""

    @property
    def is_pixel(self) -> bool:
        return False

    def pixel_sigma(self, sigma: float) -> float:
        """The pixel-space std of noise of std ``sigma`` in this space, the smallest over channels (the one that
        converts a radius certified in this space into a pixel radius)."""
        return float(self.pixel_radius(torch.tensor(float(sigma), dtype=torch.float64)))

    def scale(self, e: torch.Tensor, sigma: float) -> torch.Tensor:
        """Unit Gaussian draws ``e`` [..., C, H, W] as pixel-space noise of std ``sigma`` in this space."""
        if self.is_pixel:
            return sigma * e
        return (sigma * self.pixel_scale(e)) * e

    def add(self, x: torch.Tensor, sigma: float, e: torch.Tensor) -> torch.Tensor:
        """``x`` plus the unit draws ``e`` (x's shape) as noise of std ``sigma`` in this space (no clipping)."""
        return x + self.scale(e, sigma)

    def draw(self, shape: tuple[int, ...] | torch.Size, sigma: float, *, generator: torch.Generator | None,
             device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Fresh pixel-space noise of ``shape`` [..., C, H, W] and std ``sigma`` in this space, from ``generator``:
        the one place a noise tensor is drawn from a generator rather than from per-image keys."""
        e = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return self.scale(e, sigma)


@dataclass(frozen=True)
class PixelNoise(NoiseSpace):
    """Noise added to [0, 1] pixels: sigma and radii in pixel units (Cohen et al., 2019)."""

    def pixel_scale(self, x: torch.Tensor) -> float:
        return 1.0

    def pixel_radius(self, radius: torch.Tensor) -> torch.Tensor:
        return radius

    @property
    def is_pixel(self) -> bool:
        return True


def _float_tuple(values: object, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(
            f"NormalizedNoise {name} must be a sequence of numbers (one per channel), got {values!r}"
        ) from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"NormalizedNoise {name} must be a non-empty sequence of finite numbers, got {values!r}")
    return out


@dataclass(frozen=True)
class NormalizedNoise(NoiseSpace):
    """Noise of std sigma added after ``(x - mean_c) / std_c``: pixel noise of std ``std_c * sigma``.

    Radii certified in this space (R_n) are reported in pixel units as ``R_n * min(std)`` (Kumar & Narayan report
    R_n; research/algorithms.md §9.2). ``mean`` does not change the noise; it is kept so the space describes the
    normalization it belongs to.

    Examples:
        >>> space = NormalizedNoise(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        >>> float(space.pixel_radius(torch.tensor(1.0)))  # doctest: +ELLIPSIS
        0.224...
        >>> round(space.pixel_sigma(0.5), 4)  # the smallest per-channel pixel std of sigma_n = 0.5
        0.112
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean, std = _float_tuple(self.mean, "mean"), _float_tuple(self.std, "std")
        if len(mean) != len(std):
            raise ValueError(f"NormalizedNoise needs one mean and one std per channel, got mean={mean}, std={std}")
        if min(std) <= 0:
            raise ValueError(f"NormalizedNoise std must be > 0 in every channel, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() == 4 and len(self.std) != 1 and x.shape[1] != len(self.std):
            raise ValueError(
                f"NormalizedNoise has {len(self.std)} channels (std={self.std}) but x has {x.shape[1]} "
                f"(shape {tuple(x.shape)}); expected [B, {len(self.std)}, H, W]"
            )

    def pixel_scale(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1)  # [C, 1, 1]

    def pixel_radius(self, radius: torch.Tensor) -> torch.Tensor:
        return radius * min(self.std)


def resolve(noise_space: NoiseSpace | None) -> NoiseSpace:
    """``None`` -> ``PixelNoise()``; anything that is not a ``NoiseSpace`` is refused."""
    if noise_space is None:
        return PixelNoise()
    if not isinstance(noise_space, NoiseSpace):
        raise TypeError(
            f"noise_space must be PixelNoise(), NormalizedNoise(mean, std) or None, got {type(noise_space).__name__}"
        )
    return noise_space


def add_gaussian_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, *, noise_space: NoiseSpace | None = None
) -> torch.Tensor:
    """x + sigma * e with e ~ N(0, I) in ``noise_space`` (drawn from ``generator``; no clipping, as in randomized
    smoothing). Differentiable in x."""
    if sigma == 0:
        return x
    e = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return resolve(noise_space).add(x, sigma, e)


class GaussianNoise(nn.Module):
    """Adds fresh N(0, sigma^2) noise (in ``noise_space``, pixels by default) on every forward; differentiable in x.

    Compose it in front of a classifier, ``nn.Sequential(GaussianNoise(0.25), model)``, to get the randomized model
    that EOT / expectation attacks and noise-augmented training see.

    Examples:
        >>> noisy_model = nn.Sequential(GaussianNoise(0.25, generator=torch.Generator().manual_seed(0)), nn.Flatten())
        >>> noisy_model(torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 16])
    """

    def __init__(
        self, sigma: float, *, generator: torch.Generator | None = None, noise_space: NoiseSpace | None = None
    ) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma, allow_zero=True)
        self.generator = generator
        self.noise_space = resolve(noise_space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_gaussian_noise(x, self.sigma, self.generator, noise_space=self.noise_space)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, noise_space={self.noise_space}"
