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

import numpy as np
import torch
from torch import nn

from art_ext import _art
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


def _preprocessor_base() -> type:
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

    return PreprocessorPyTorch


class DenoiserPreprocessor(_preprocessor_base()):  # type: ignore[misc]
    """ART ``PreprocessorPyTorch`` that applies a denoiser before the classifier (and before ART's mean/std).

    ``PyTorchClassifier`` differentiates through ``forward`` with autograd and never calls ``estimate_forward``
    (ART issue #1526), so the BPDA identity gradient is expressed inside ``forward`` as a straight-through estimator;
    ``estimate_forward`` returns the same tensor for ART's numpy-compatibility ``estimate_gradient``.

    Args:
        denoiser: [B, C, H, W] -> [B, C, H, W] in pixel units; moved to the estimator's device and put in eval mode.
        gradient: ``"exact"`` or ``"bpda"``.
        batch_size: Images per denoiser call (``None`` = all at once).
        device_type: ``"cpu"`` or ``"gpu"`` (ART's convention; must match the classifier's estimator).
        apply_fit: Apply during ART ``fit`` (default False: the defence is for inference).
        apply_predict: Apply during ``predict`` / gradients (default True).
    """

    params = ["gradient", "batch_size"]

    def __init__(
        self, denoiser: nn.Module, *, gradient: str = "exact", batch_size: int | None = None,
        device_type: str = "cpu", apply_fit: bool = False, apply_predict: bool = True,
    ) -> None:
        if device_type not in ("cpu", "gpu"):
            raise ValueError(f"device_type must be 'cpu' or 'gpu' (ART's convention), got {device_type!r}")
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.gradient, self.batch_size = gradient, batch_size
        self._check_params()
        self.denoiser = denoiser.to(self.device).eval()

    def _check_params(self) -> None:  # ART's set_params() re-runs this
        self._config = DenoiserPreprocessorConfig(self.gradient, self.batch_size)

    def set_params(self, **kwargs: Any) -> None:
        """ART's ``set_params``, refusing keywords outside ``params`` (ART ignores them) and leaving every parameter
        as it was when the new values are refused."""
        _art.refuse_unknown_kwargs(kwargs, self.params, f"{type(self).__name__}.set_params")
        previous = {key: getattr(self, key) for key in kwargs}
        for key, value in kwargs.items():
            setattr(self, key, value)
        try:
            self._check_params()
        except Exception:
            for key, value in previous.items():
                setattr(self, key, value)
            self._check_params()
            raise

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        _check_batch(x)
        return denoise(self.denoiser, x, self._config), y

    def estimate_forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        _check_batch(x)
        return denoise(self.denoiser, x, self._config)

    def __call__(self, x: Any, y: Any = None) -> tuple[Any, Any]:
        """ART's numpy entry point: the values are checked (finite) once here, then ``forward`` runs in torch.

        (Inside an estimator, ART calls ``forward`` on tensors directly; its inputs may lie outside [0, 1] because
        randomized smoothing adds unclipped noise before the defences, so no range is imposed.)
        """
        if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x must be a float numpy array [N, C, H, W], got {type(x).__name__} "
                            f"{getattr(x, 'dtype', '')}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x contains {int((~np.isfinite(x)).sum())} NaN or infinite values; expected finite "
                             "images [N, C, H, W]")
        return super().__call__(x.astype(np.float32, copy=False), y)
