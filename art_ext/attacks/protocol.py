"""Scoring adversarial examples against a randomized defence: k independent draws, mean and worst-case accuracy."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from art_ext import _art
from art_ext.ops.modes import eval_mode
from art_ext.ops.validation import check_positive_int
from art_ext.types import Bounds

#: model(x [B, ...]) -> scores [B, K] (argmax is the decision) or int64 labels [B] (-1 = abstain, always wrong)
DecisionFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RandomizedScore:
    """Correctness of each example under each independent draw of the defence.

    Attributes:
        correct: bool [B, k]; an abstention counts as wrong.
    """

    correct: torch.Tensor

    @property
    def draws(self) -> int:
        return int(self.correct.shape[1])

    @property
    def mean_accuracy(self) -> float:
        """Expected accuracy of one deployment draw: the mean over examples and draws."""
        return float(self.correct.float().mean())

    @property
    def worst_case_accuracy(self) -> float:
        """Fraction of examples correct under *all* k draws (an attacker who may retry k times wins on the rest)."""
        return float(self.correct.all(1).float().mean())

    @property
    def per_draw_accuracy(self) -> torch.Tensor:
        """float [k]: accuracy of each draw (its spread shows how much one evaluation can vary)."""
        return self.correct.float().mean(0)

    @property
    def per_example_rate(self) -> torch.Tensor:
        """float [B]: fraction of draws that classify each example correctly."""
        return self.correct.float().mean(1)


def _decide(model: DecisionFn, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if out.dim() == 2:
        return out.argmax(1)
    if out.dim() == 1 and not out.is_floating_point():
        return out
    raise ValueError(
        f"model must return scores [B, K] or int64 labels [B], got {out.dtype} of shape {tuple(out.shape)}"
    )


def _labels(y: object, num_examples: int, device: torch.device) -> torch.Tensor:
    """Integer class indices [N] >= 0 as int64 on ``device`` (one-hot or float labels are refused, not guessed)."""
    if isinstance(y, np.ndarray):
        y = torch.as_tensor(y)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a tensor or numpy array of class indices [{num_examples}], got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y has dtype {y.dtype}; expected integer class indices of shape [{num_examples}]")
    if tuple(y.shape) != (num_examples,):
        raise ValueError(f"y must have shape [{num_examples}] (class indices), got {tuple(y.shape)}")
    if bool((y < 0).any()):
        raise ValueError(f"y holds negative labels (min {int(y.min())}); expected class indices >= 0")
    return y.to(device=device, dtype=torch.int64)


def score_randomized(
    model: DecisionFn,
    x_adv: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    draws: int = 10,
    batch_size: int = 256,
    bounds: Bounds | None = None,
) -> RandomizedScore:
    """Evaluate final adversarial examples over ``draws`` independent passes of a randomized defence.

    A single evaluation of a randomized model can "escape" an attack by a lucky draw (user_needs C1; AutoAttack's
    random-defence issue): this scores *after* the attack, with fresh randomness on every pass, and reports both
    the mean accuracy and the worst case (correct under all draws). A deterministic model gives identical columns.
    The model's train/eval flags are snapshot, it runs in eval mode, and the flags are restored afterwards.

    Args:
        model: Randomized decision (draws its own randomness on every call), e.g. a smoothed classifier's forward.
        x_adv: Adversarial examples [B, ...], a float tensor or numpy array (e.g. an ART ``generate`` output),
            checked like every art_ext entry point (``_art.input_to_tensor``: dtype, NaN/inf, inside ``bounds``).
        y: True labels, integer indices [B] (tensor or array), >= 0.
        draws: k >= 1 independent evaluations.
        bounds: Optional input range that ``x_adv`` must lie in (None: not checked).
    Returns:
        ``RandomizedScore`` with ``correct`` bool [B, k] on ``x_adv``'s device.
    Raises:
        TypeError / ValueError before any model call for a bad ``x_adv``, ``y``, ``draws`` or ``batch_size``.
    """
    check_positive_int(draws, "draws")
    check_positive_int(batch_size, "batch_size")
    device = x_adv.device if isinstance(x_adv, torch.Tensor) else torch.device("cpu")
    spec = _art.InputSpec(input_shape=tuple(np.shape(x_adv)[1:]),  # a shape check of its own: no estimator here
                          clip_values=None if bounds is None else (bounds.low, bounds.high), device=device)
    x_adv = _art.input_to_tensor(spec, x_adv, name="x_adv")
    y = _labels(y, x_adv.shape[0], device)
    modes = eval_mode(model) if isinstance(model, nn.Module) else nullcontext()
    columns = []
    with modes, torch.no_grad():
        for _ in range(draws):
            labels = torch.cat([_decide(model, x_adv[i:i + batch_size]) for i in range(0, x_adv.shape[0], batch_size)])
            columns.append(labels == y)  # abstain (-1) never equals a label
    return RandomizedScore(torch.stack(columns, 1))  # [B, k]
