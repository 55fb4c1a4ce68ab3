"""``SmoothedClassifier``: an ``nn.Module`` holding a base classifier and its Gaussian noise level."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch
from torch import nn

from art_ext.certification import sampling, smoothing
from art_ext.defences import smoothed_inference
from art_ext.ops import validation


class SmoothedClassifier(nn.Module):
    """The smoothed classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, sigma^2 I), around a base classifier f.

    ``sigma`` is in pixel units: inputs are [0, 1] images and any normalization is the base's first layer.
    The Monte-Carlo methods ``predict`` / ``certify`` / ``sample_counts`` are Cohen et al.'s PREDICT and CERTIFY
    (see ``art_ext.certification``); they need sigma > 0 and pixel-space noise.

    ``forward(x)`` is smoothed *inference* (Nemcovsky et al., arXiv:1911.07198v2, Eqs. 8-13; see
    ``art_ext.defences.smoothed_inference``): scores [B, K] from M = ``num_samples`` fresh noisy passes, vote shares
    for ``mode="prediction"`` / ``"weighted"`` and probabilities for ``"soft"``. Only ``"soft"`` is differentiable
    (end to end, so attacks can target it); the hard modes raise ``ValueError`` when asked for gradients. sigma = 0
    is allowed here and gives the base exactly. ``forward`` draws from ``self.generator`` (settable; ``None`` =
    torch's default generator); ``scores``/``labels`` take an explicit generator. The base is called as is: keep it
    in eval mode for inference (train mode is allowed, e.g. for soft-smoothing training).

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K']. Must be in eval mode when sampled.
        sigma: Noise standard deviation in pixel units (> 0 for predict/certify; >= 0 for ``forward``).
        num_classes: Number of classes K (>= the base's output width).
        mode: Voting rule of ``forward``: ``"prediction"``, ``"weighted"`` or ``"soft"``.
        num_samples: M, noisy passes per ``forward`` call.
        weights: Rank weights of the weighted mode (``None``: 2^(1-k), Eq. 11; ``(1, C)``: Eq. 12).
        soft_average: ``"probabilities"`` (Eq. 13) or ``"logits"`` (the reference code's mean of logits).
        batch_size: Noisy samples per forward pass in ``forward`` (memory bound).
        normalization: ``(mean, std)`` to declare ``forward``'s noise in the base's normalized space.
        generator: Noise source of ``forward``.
    """

    def __init__(
        self,
        base: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        sigma: float,
        *,
        num_classes: int,
        mode: str = "soft",
        num_samples: int = 8,
        weights: Sequence[float] | None = None,
        soft_average: str = "probabilities",
        batch_size: int = 1000,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.base = base
        self.sigma = validation.check_sigma(sigma, allow_zero=True)  # predict/certify re-check sigma > 0
        self.num_classes = validation.check_num_classes(num_classes)
        self.inference = smoothed_inference.SmoothedInferenceConfig(
            sigma=self.sigma, num_samples=num_samples, mode=mode, weights=weights, soft_average=soft_average,
            batch_size=batch_size, normalization=normalization,
        )
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, num_classes={self.num_classes}, mode={self.inference.mode!r}, "
            f"num_samples={self.inference.num_samples}"
        )

    @property
    def mode(self) -> str:
        return self.inference.mode

    @property
    def num_samples(self) -> int:
        return self.inference.num_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Smoothed-inference scores [B, K] of images x [B, C, H, W] in [0, 1], noise from ``self.generator``."""
        return self.scores(x, generator=self.generator)

    def scores(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Smoothed-inference scores [B, K] (see ``smoothed_inference.smoothed_scores``)."""
        if self.inference.sigma != self.sigma:  # sigma was reassigned after construction
            self.inference = dataclasses.replace(self.inference, sigma=self.sigma)
        return smoothed_inference.smoothed_scores(
            self.base, x, self.inference, num_classes=self.num_classes, generator=generator
        )

    def labels(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Smoothed-inference labels [B] (int64), ``ABSTAIN`` (-1) where the top scores tie."""
        with torch.no_grad():
            return smoothed_inference.labels_from_scores(self.scores(x, generator=generator))

    def _pixel_noise_only(self) -> None:
        if self.inference.normalization is not None:
            raise ValueError(
                "predict/certify/sample_counts add noise in pixel space (their radii are pixel-space); this "
                "SmoothedClassifier declares normalized-space noise for forward() (normalization="
                f"{self.inference.normalization}); build one without normalization to certify"
            )

    def sample_counts(
        self, x: torch.Tensor, *, n: int, batch_size: int = 1000, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Class histogram [B, K] of the base's votes over ``n`` noise draws per image."""
        self._pixel_noise_only()
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
        self._pixel_noise_only()
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
        self._pixel_noise_only()
        return smoothing.certify(
            self.base, x, n0=n0, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator,
        )
