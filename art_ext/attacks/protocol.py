"""Scoring adversarial examples against a randomized defence: k independent draws, mean and worst-case accuracy."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from art_ext.ops.modes import eval_mode
from art_ext.ops.validation import check_positive_int

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
    raise ValueError(f"model must return scores [B, K] or int64 labels [B], got {out.dtype} of shape {tuple(out.shape)}")


def score_randomized(
    model: DecisionFn,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    *,
    draws: int = 10,
    batch_size: int = 256,
) -> RandomizedScore:
    """Evaluate final adversarial examples over ``draws`` independent passes of a randomized defence.

    A single evaluation of a randomized model can "escape" an attack by a lucky draw (user_needs C1; AutoAttack's
    random-defence issue): this scores *after* the attack, with fresh randomness on every pass, and reports both
    the mean accuracy and the worst case (correct under all draws). A deterministic model gives identical columns.
    The model's train/eval flags are snapshot, it runs in eval mode, and the flags are restored afterwards.

    Args:
        model: Randomized decision (draws its own randomness on every call), e.g. a smoothed classifier's forward.
        x_adv: Adversarial examples [B, ...]; y: true int64 labels [B].
        draws: k >= 1 independent evaluations.
    Returns:
        ``RandomizedScore`` with ``correct`` bool [B, k] on ``x_adv``'s device.
    """
    check_positive_int(draws, "draws")
    check_positive_int(batch_size, "batch_size")
    if y.shape != x_adv.shape[:1]:
        raise ValueError(f"y must have shape [{x_adv.shape[0]}], got {tuple(y.shape)}")
    modes = eval_mode(model) if isinstance(model, nn.Module) else nullcontext()
    columns = []
    with modes, torch.no_grad():
        for _ in range(draws):
            labels = torch.cat([_decide(model, x_adv[i:i + batch_size]) for i in range(0, x_adv.shape[0], batch_size)])
            columns.append(labels == y)  # abstain (-1) never equals a label
    return RandomizedScore(torch.stack(columns, 1))  # [B, k]
