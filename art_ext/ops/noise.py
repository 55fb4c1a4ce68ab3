"""Gaussian noise as a layer: x -> x + sigma * e, e ~ N(0, I), fresh on every call."""

from __future__ import annotations

import torch
from torch import nn

from art_ext.ops.validation import check_sigma


def add_gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + sigma * e with e ~ N(0, I) drawn from ``generator`` (no clipping, as in randomized smoothing)."""
    if sigma == 0:
        return x
    return x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class GaussianNoise(nn.Module):
    """Adds fresh N(0, sigma^2) noise in the space of its input on every forward (differentiable in x).

    Compose it in front of a classifier, ``nn.Sequential(GaussianNoise(0.25), model)``, to get the randomized model
    that EOT / expectation attacks and noise-augmented training see.
    """

    def __init__(self, sigma: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.sigma = check_sigma(sigma, allow_zero=True)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_gaussian_noise(x, self.sigma, self.generator)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"
