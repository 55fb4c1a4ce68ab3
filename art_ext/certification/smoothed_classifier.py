"""``SmoothedClassifier``: an ``nn.Module`` holding a base classifier and its Gaussian noise level."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from art_ext.certification import sampling, smoothing
from art_ext.ops import validation


class SmoothedClassifier(nn.Module):
    """The smoothed classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, sigma^2 I), around a base classifier f.

    ``sigma`` is in pixel units: inputs are [0, 1] images and any normalization is the base's first layer.
    The Monte-Carlo methods below are Cohen et al.'s PREDICT and CERTIFY (see ``art_ext.certification``).

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K']. Must be in eval mode when sampled.
        sigma: Noise standard deviation in pixel units (> 0).
        num_classes: Number of classes K (>= the base's output width).
    """

    def __init__(self, base: nn.Module | Callable[[torch.Tensor], torch.Tensor], sigma: float, *, num_classes: int):
        super().__init__()
        self.base = base
        self.sigma = validation.check_sigma(sigma)
        self.num_classes = validation.check_num_classes(num_classes)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, num_classes={self.num_classes}"

    def sample_counts(
        self, x: torch.Tensor, *, n: int, batch_size: int = 1000, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Class histogram [B, K] of the base's votes over ``n`` noise draws per image."""
        return sampling.sample_counts(
            self.base, x, n=n, sigma=self.sigma, num_classes=self.num_classes, batch_size=batch_size,
            generator=generator,
        )

    def predict(
        self,
        x: torch.Tensor,
        *,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Cohen et al. PREDICT: int64 labels [B], ``ABSTAIN`` (-1) where undecided."""
        return smoothing.predict(
            self.base, x, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator,
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
    ) -> smoothing.Certificates:
        """Cohen et al. CERTIFY: labels, pixel-space L2 radii and the evidence behind them."""
        return smoothing.certify(
            self.base, x, n0=n0, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator,
        )
