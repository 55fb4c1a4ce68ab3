"""Gaussian noise augmentation (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918v2, Sec. 3.2 "Training").

The base classifier is trained on noisy copies of the training images,

    (GA-1)  min_theta E_(x, y) E_(delta ~ N(0, sigma^2 I)) CE(f_theta(x + delta), y),

with one fresh noise draw per example per step in pixel units and no clipping (locuslab/smoothing train.py:109).
Cohen et al. state the objective in words; it has no equation number in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.training.certified._common import CertifiedMethod, check_real, noisy_copies


@dataclass(frozen=True)
class GaussianAugmentation(CertifiedMethod):
    """Gaussian noise augmentation at ``sigma`` (GA-1): the baseline every other method is compared with.

    Attributes:
        sigma: Noise std in pixel units (> 0), the smoothing sigma the model will be certified at.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from art_ext.training.certified import GaussianAugmentation, certified_loss
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 2])
        >>> loss = certified_loss(model, x, y, GaussianAugmentation(0.25), generator=torch.Generator().manual_seed(0))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
        >>> GaussianAugmentation(0.0)
        Traceback (most recent call last):
        ...
        ValueError: sigma must be a finite number > 0, got 0.0
    """

    sigma: float

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        """Mean CE(f(x + delta), y) over the batch, one noise draw per example (GA-1)."""
        inputs, noise = noisy_copies(x, 1, self.sigma, generator)
        return F.cross_entropy(model(inputs + noise), y)
