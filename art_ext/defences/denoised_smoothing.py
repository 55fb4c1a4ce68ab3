"""Denoised smoothing as a defence: a denoiser prepended to a fixed, pretrained classifier.

Implements the base classifier f o D of Salman et al. (2020, "Denoised Smoothing", arXiv:2003.01908v2, Eq. 3):
randomized smoothing of ``DenoisedClassifier(D, f)`` gives the certified classifier
g(x) = argmax_c P[f(D(x + delta)) = c], delta ~ N(0, sigma^2 I), with Cohen et al.'s CERTIFY run unchanged.

Two ways in:
* torch: ``SmoothedClassifier(DenoisedClassifier(denoiser, classifier), sigma, num_classes=K)`` or
  ``art_ext.certify(DenoisedClassifier(...), x, ...)``;
* ART: ``PyTorchClassifier(classifier, ..., preprocessing_defences=[DenoiserPreprocessor(denoiser)])``, then
  ``RandomizedSmoothingClassifier(estimator, sigma)`` certifies exactly the same base classifier, and ART attacks
  see the denoiser with its exact gradient or a BPDA identity gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from art_ext.ops.bpda import straight_through
from art_ext.ops.modes import eval_mode

GRADIENTS = ("exact", "bpda")


class DenoisedClassifier(nn.Module):
    """The base classifier f(D(x)) of denoised smoothing: [B, C, H, W] in [0, 1] -> logits [B, K].

    The denoiser works in pixel space; the classifier's normalization (its first layer) follows the denoiser, as in
    the reference (microsoft/denoised-smoothing@9500d0e, code/architectures.py). Put the module in eval mode before
    sampling (``SmoothedClassifier`` / ``certify`` check it): both parts are then fixed functions.

    Args:
        denoiser: [B, C, H, W] -> [B, C, H, W], pixel units (e.g. ``art_ext.models.denoisers.DnCNN``).
        classifier: [B, C, H, W] in [0, 1] -> logits [B, K]; never modified.
    """

    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(x))  # [B, K]


@dataclass(frozen=True)
class DenoiserPreprocessorConfig:
    """Parameters of ``DenoiserPreprocessor``.

    Attributes:
        gradient: ``"exact"`` (autograd through the denoiser) or ``"bpda"`` (identity backward pass).
        batch_size: Images per denoiser call (ART's ``predict`` hands the whole array to a preprocessor at once);
            ``None`` = one call.
    """

    gradient: str = "exact"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be an int >= 1 or None, got {self.batch_size!r}")


def denoise(denoiser: nn.Module, x: torch.Tensor, config: DenoiserPreprocessorConfig) -> torch.Tensor:
    """D(x) in eval mode (modes restored), chunked by ``config.batch_size``, with the configured gradient."""
    with eval_mode(denoiser):
        if config.batch_size is None or x.shape[0] <= config.batch_size:
            out = denoiser(x)  # [B, C, H, W]
        else:
            out = torch.cat([denoiser(chunk) for chunk in x.split(config.batch_size)])
    return straight_through(x, out) if config.gradient == "bpda" else out  # BPDA: identity backward


def _check_batch(x: torch.Tensor) -> None:
    """Structural check of a batch reaching the denoiser (no host sync: values are checked at the numpy entry)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"the denoiser preprocessor expects a float tensor [N, C, H, W], got {shape}")


def __getattr__(name: str) -> Any:
    """``DenoiserPreprocessor``, the ART adapter (``art_ext.defences.preprocessors``), loaded with ART on first use:
    importing this module does not import ART."""
    if name == "DenoiserPreprocessor":
        from art_ext.defences.preprocessors import DenoiserPreprocessor

        return DenoiserPreprocessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
