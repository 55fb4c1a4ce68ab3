"""``SmoothedClassifier``: Cohen et al.'s PREDICT and CERTIFY around a base classifier and its noise level."""

from __future__ import annotations

import torch

from art_ext.ops import validation
from art_ext.smoothing.certify import Certificates, certify, predict
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.smoothing.sampling import sample_counts
from art_ext.types import LogitsFn


class SmoothedClassifier:
    """The smoothed classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, sigma^2 I), around a base classifier f.

    Monte-Carlo PREDICT / CERTIFY of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2); see
    ``art_ext.smoothing.certify`` for the guarantee. ``sigma`` is in the units of ``noise_space`` (pixels by
    default; inputs are [0, 1] images and any normalization is the base's first layer); certified radii are
    reported in pixel units. For a smoothed *forward* (prediction / soft / weighted voting, differentiable in the
    soft mode) use ``art_ext.smoothing.SmoothedInference``.

    Args:
        base: Base classifier in eval mode, [m, C, H, W] in [0, 1] -> logits [m, K'].
        sigma: Noise standard deviation (> 0).
        num_classes: Number of classes K (>= the base's output width, >= 2).
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> smoothed = SmoothedClassifier(LinearToy(torch.ones(4), b=-2.0), 0.25, num_classes=2)
        >>> x = torch.full((2, 1, 2, 2), 0.9)
        >>> certs = smoothed.certify(x, n0=10, n=1000, generator=torch.Generator().manual_seed(0))
        >>> certs.label.tolist()
        [1, 1]
        >>> smoothed.predict(x, n=1000, generator=torch.Generator().manual_seed(0)).tolist()
        [1, 1]
    """

    def __init__(
        self, base: LogitsFn, sigma: float, *, num_classes: int, noise_space: NoiseSpace | None = None
    ) -> None:
        self.base = base
        self.sigma = validation.check_sigma(sigma)
        self.num_classes = validation.check_num_classes(num_classes)
        self.noise_space = resolve(noise_space)

    def __repr__(self) -> str:
        return (
            f"SmoothedClassifier(base={type(self.base).__name__}, sigma={self.sigma}, num_classes={self.num_classes}, "
            f"noise_space={self.noise_space})"
        )

    def sample_counts(
        self, x: torch.Tensor, *, n: int, batch_size: int = 1000, generator: torch.Generator | None = None,
        keys: NoiseKeys | None = None,
    ) -> torch.Tensor:
        """Class histogram int64 [B, K] of the base's votes over ``n`` noise draws per image."""
        return sample_counts(
            self.base, x, n=n, sigma=self.sigma, num_classes=self.num_classes, batch_size=batch_size,
            generator=generator, noise_space=self.noise_space, keys=keys,
        )

    def predict(
        self,
        x: torch.Tensor,
        *,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
        keys: NoiseKeys | None = None,
    ) -> torch.Tensor:
        """Cohen et al. PREDICT: int64 labels [B], ``ABSTAIN`` (-1) where undecided."""
        return predict(
            self.base, x, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator, noise_space=self.noise_space, keys=keys,
        )

    def certify(
        self,
        x: torch.Tensor,
        *,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
        keys: NoiseKeys | None = None,
    ) -> Certificates:
        """Cohen et al. CERTIFY: labels, pixel-space L2 radii and the evidence behind them."""
        return certify(
            self.base, x, n0=n0, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator, noise_space=self.noise_space, keys=keys,
        )
