"""Shared pieces of the certified-training methods: config checks, noise copies, the soft smoothed estimate.

Layout of the noisy copies (every method): an input batch x [B, C, H, W] is repeated m times with
``repeat_interleave`` (row ``b * m + i`` is example b's i-th copy, so it groups correctly for any input rank), and
the noise of all B * m rows is one ``torch.randn`` draw from the caller's generator, in pixel units, never clipped.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager

import torch
from torch import nn

from art_ext.ops.modes import frozen


def check_real(value: object, name: str, *, low: float = 0.0, strict: bool = True, high: float | None = None,
               high_strict: bool = False) -> float:
    """``value`` as a float, or a one-line ValueError naming it and the expected range."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = value > low if strict else value >= low  # type: ignore[operator]
    if ok and high is not None:
        ok = value < high if high_strict else value <= high  # type: ignore[operator]
    if not ok:
        lower = f"{'>' if strict else '>='} {low:g}"
        upper = "" if high is None else f" and {'<' if high_strict else '<='} {high:g}"
        raise ValueError(f"{name} must be a finite number {lower}{upper}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_int(value: object, name: str, *, low: int = 1) -> int:
    """``value`` as an int >= ``low``, or a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def warmup_factor(epoch: int, warmup: int) -> float:
    """min(1, (epoch + 1) / warmup) for a 0-based ``epoch`` (train_pgd.py:177, smoothmix train.py:89)."""
    return min(1.0, (epoch + 1) / warmup)


def noisy_copies(
    x: torch.Tensor, m: int, sigma: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x repeated m times, noise)``: both [B * m, ...], row b * m + i the i-th copy of example b, noise
    sigma * N(0, I) drawn once from ``generator``."""
    repeated = x.repeat_interleave(m, dim=0)
    noise = sigma * torch.randn(repeated.shape, generator=generator, device=x.device, dtype=x.dtype)
    return repeated, noise


def soft_smoothed(logits: torch.Tensor, m: int) -> torch.Tensor:
    """The soft smoothed estimate F_hat(x) = (1/m) sum_i softmax(f(x + delta_i)): [B, K] from logits [B * m, K]."""
    return logits.softmax(dim=1).view(-1, m, logits.shape[1]).mean(dim=1)


def attacking(model: nn.Module) -> AbstractContextManager[None]:
    """Eval mode and frozen parameters (no parameter gradients) for an attack; both restored afterwards."""
    return frozen([model])


def unit_rows(g: torch.Tensor, *, eps: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each row of ``g`` divided by its L2 norm (+ ``eps``). With ``eps == 0``, rows of zero norm are replaced by a
    unit direction drawn from N(0, I) (SmoothAdv's rule, attacks.py:100-105); the draw happens only when such a row
    exists."""
    flat = g.flatten(1)
    norms = flat.norm(dim=1, keepdim=True)
    if eps > 0:
        return (flat / (norms + eps)).view_as(g)
    zero = norms[:, 0] == 0
    if bool(zero.any()):
        flat = flat.clone()
        flat[zero] = torch.randn(flat[zero].shape, generator=generator, device=g.device, dtype=g.dtype)
        norms = flat.norm(dim=1, keepdim=True)
    return (flat / norms).view_as(g)


class CertifiedMethod:
    """Base of the five certified-training configs: ``loss`` is the method's training loss for one batch (inputs
    already checked by ``certified_loss``), ``chunks`` the optimizer steps the loop takes per loader batch."""

    sigma: float

    @property
    def chunks(self) -> int:
        """How many chunks (each with its own optimizer step) a loader batch is cut into (1: the whole batch)."""
        return 1

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        raise NotImplementedError
