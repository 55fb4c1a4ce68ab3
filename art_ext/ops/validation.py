"""Input validation with errors that name the bad value and the expected form."""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch import nn


def check_images(x: object, *, name: str = "x", low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Check that ``x`` is a 4-D floating tensor [B, C, H, W] of finite values inside [low, high]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W] (channel first), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with values in [{low}, {high}], got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    finite = torch.isfinite(x.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values; expected finite values in [{low}, {high}]")
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if lo < low or hi > high:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside the declared range [{low}, {high}]; "
            "art_ext works in pixel space: scale images to [0, 1] and put normalization inside the model"
        )
    return x


def check_sigma(sigma: float, *, allow_zero: bool = False) -> float:
    """Check a noise level: finite and > 0 (or >= 0 when ``allow_zero``)."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a real number, got {sigma!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"sigma must be finite and {bound} (pixel units), got {sigma!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """Check an integer >= 1 (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_alpha(alpha: float) -> float:
    """Check a failure probability strictly inside (0, 1)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"alpha must be a real number in (0, 1), got {alpha!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    return value


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def check_fixed_function(base: Callable[[torch.Tensor], torch.Tensor], *, name: str = "base") -> None:
    """Refuse a base classifier that is not a fixed function while it is sampled.

    Monte-Carlo certificates treat the n draws as i.i.d. Bernoulli trials of one deterministic function; a module
    in training mode (BatchNorm using batch statistics, active dropout) breaks that, so the bound would be invalid.
    """
    if not isinstance(base, nn.Module):
        return
    in_training = [mod_name or type(base).__name__ for mod_name, mod in base.named_modules() if mod.training]
    if in_training:
        shown = ", ".join(in_training[:5]) + (" ..." if len(in_training) > 5 else "")
        raise ValueError(
            f"{name} has modules in training mode ({shown}); call {name}.eval() first: a base classifier must be a "
            "fixed function while it is sampled (train-mode BatchNorm or dropout make the draws dependent)"
        )


def check_output_width(logits: torch.Tensor, num_classes: int, *, name: str = "base") -> None:
    if logits.dim() != 2:
        raise ValueError(f"{name} must return logits of shape [batch, classes], got shape {tuple(logits.shape)}")
    if logits.shape[1] > num_classes:
        raise ValueError(
            f"num_classes={num_classes} is smaller than {name}'s output width {logits.shape[1]}; "
            f"pass num_classes >= {logits.shape[1]}"
        )


def warn_if_never_certifies(n: int, alpha: float) -> None:
    """Warn when even n agreeing votes out of n cannot give p_A_lower > 1/2 (the Clopper-Pearson cap alpha^(1/n))."""
    if alpha ** (1.0 / n) <= 0.5:
        warnings.warn(
            f"n={n} with alpha={alpha} can never certify: even if all {n} votes agree, the Clopper-Pearson lower "
            f"bound is alpha**(1/n) = {alpha ** (1.0 / n):.4f} <= 0.5, so every point abstains; "
            f"use n >= {math.ceil(math.log(alpha) / math.log(0.5)) + 1}",
            RuntimeWarning,
            stacklevel=3,
        )
