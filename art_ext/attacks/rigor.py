"""Evaluation-rigor checks: symptoms that a robustness evaluation is unreliable, tested before (or beside) attacks.

Carlini et al. ("On Evaluating Adversarial Robustness", arXiv:1902.06705, §5-6) and Croce & Hein's AutoAttack
(ICML 2020, the ``checks`` it runs before attacking) list the warning signs of gradient masking and of randomness that
an attack does not account for. Four of them are cheap and mechanical, and each is one function here:

* ``output_randomness``: two identical forward passes give different outputs (the model is randomized: a single
  evaluation of an attack can be escaped by a lucky draw; score over k draws and attack with EOT).
* ``gradient_health``: the input gradient of the loss is exactly zero, or not finite, for some examples (shattered or
  obfuscated gradients: a gradient attack cannot move; use BPDA or a gradient-free attack).
* ``eps_monotonicity``: robust accuracy must not increase as the perturbation budget grows (a larger ball contains
  the smaller one); an increase beyond noise means the attack failed to find points it could reach.
* ``gradient_free_gap``: a gradient-free attack breaking examples that every gradient attack left robust is a
  classic masking symptom (Athalye et al., ICML 2018, §3).

All four take tensors (or plain numbers) and return a frozen result with a ``flagged`` attribute and a one-line
``message``; nothing is printed and no global state is touched (randomness comes from the model's own draws).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.ops.modes import eval_mode
from art_ext.ops.validation import check_batch, check_positive_int

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def _check_model(model: object) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable, x [B, ...] -> outputs [B, ...], got {type(model).__name__}")


def _check_nonnegative(value: object, name: str) -> float:
    """A finite number >= 0 (bools and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RandomnessCheck:
    """Whether repeated identical forward passes differ.

    Attributes:
        differing: bool [B]: the example's outputs differed between at least two of the passes.
        max_abs_difference: Largest absolute difference of any output entry between passes.
    """

    differing: torch.Tensor
    max_abs_difference: float

    @property
    def fraction(self) -> float:
        return float(self.differing.float().mean())

    @property
    def flagged(self) -> bool:
        return bool(self.differing.any())

    @property
    def message(self) -> str:
        if not self.flagged:
            return "deterministic: identical forward passes gave identical outputs"
        return (f"randomized outputs: identical forward passes differ on {self.fraction:.0%} of examples (max |diff| "
                f"{self.max_abs_difference:.3g}); score over k draws and attack with EOT")


def output_randomness(model: LogitsFn, x: torch.Tensor, *, passes: int = 2, atol: float = 0.0) -> RandomnessCheck:
    """Run ``passes`` identical forward passes of ``model`` on ``x`` and report which examples' outputs differ.

    An ``nn.Module`` runs in eval mode (its train/eval flags are restored afterwards), under ``torch.no_grad``.

    Args:
        model: x [B, ...] -> outputs [B, ...] (logits or scores).
        x: Inputs [B, ...].
        passes: Number of passes (>= 2).
        atol: Differences up to this absolute value count as equal (0: bitwise equality, as AutoAttack checks).
    Returns:
        ``RandomnessCheck``.
    Raises:
        TypeError / ValueError: ``model`` not callable, ``x`` not a finite float tensor [B >= 1, ...], ``passes`` < 2,
            ``atol`` not a finite number >= 0, or NaN outputs (which no comparison could tell apart). Equal
            infinite entries (log-probabilities of impossible classes) count as equal.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> toy = LinearToy(torch.ones(4), b=-2.0)
        >>> output_randomness(toy, torch.rand(3, 1, 2, 2)).flagged
        False
        >>> noisy = lambda z: toy(z + 0.1 * torch.randn(z.shape))
        >>> output_randomness(noisy, torch.rand(3, 1, 2, 2)).fraction
        1.0
    """
    _check_model(model)
    check_batch(x)
    check_positive_int(passes, "passes")
    if passes < 2:
        raise ValueError(f"passes must be >= 2 to compare forward passes, got {passes}")
    _check_nonnegative(atol, "atol")
    modes = eval_mode(model) if isinstance(model, nn.Module) else nullcontext()
    with modes, torch.no_grad():
        outputs = [model(x).detach().float().flatten(1) for _ in range(passes)]  # each [B, K]
    nan = torch.stack([torch.isnan(o).any(1) for o in outputs]).any(0)  # [B]
    if bool(nan.any()):
        raise ValueError(f"model returned NaN outputs for {int(nan.sum())} of {nan.shape[0]} examples; NaN is "
                         "unequal to itself, so identical passes cannot be compared: check the model on x")
    first = outputs[0]
    # entrywise, equal entries (equal infinities included) differ by 0: inf - inf would be NaN and hide a difference
    diffs = torch.stack([torch.where(o == first, 0.0, (o - first).abs()).amax(1) for o in outputs[1:]]).amax(0)
    return RandomnessCheck(differing=diffs > atol, max_abs_difference=float(diffs.max()))


@dataclass(frozen=True)
class GradientCheck:
    """Health of the input gradient of the cross-entropy loss, per example.

    Attributes:
        zero: bool [B]: the gradient is exactly zero everywhere (and finite).
        nonfinite: bool [B]: the gradient holds a NaN or an infinity.
    """

    zero: torch.Tensor
    nonfinite: torch.Tensor

    @property
    def zero_fraction(self) -> float:
        return float(self.zero.float().mean())

    @property
    def nonfinite_fraction(self) -> float:
        return float(self.nonfinite.float().mean())

    @property
    def flagged(self) -> bool:
        return bool(self.zero.any() or self.nonfinite.any())

    @property
    def message(self) -> str:
        if not self.flagged:
            return "input gradients are finite and non-zero on every example"
        return (f"input gradients zero on {self.zero_fraction:.0%} and NaN/inf on {self.nonfinite_fraction:.0%} of "
                "examples: gradient attacks cannot move there (masked gradients; try BPDA or a gradient-free attack)")


def gradient_health(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> GradientCheck:
    """Per-example input gradients of the cross-entropy loss of ``model``: which are exactly zero or not finite.

    The loss is summed over the batch, so each example's gradient is its own loss's gradient (for a model that
    treats examples independently). An ``nn.Module`` runs in eval mode (flags restored afterwards).

    Args:
        model: x [B, ...] -> logits [B, K] (differentiable, or at least callable under autograd).
        x: Inputs [B, ...] (a float tensor; not modified).
        y: Labels int64 [B].
    Returns:
        ``GradientCheck``. A model whose output does not depend on x through autograd counts as zero gradient.
    Raises:
        TypeError / ValueError: ``model`` not callable, ``x`` not a finite float tensor [B >= 1, ...] (a NaN input
            would read as a masked gradient), ``y`` not an integer tensor [B] of class indices in [0, K).

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> toy = LinearToy(torch.ones(4), b=-2.0)
        >>> x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 1])
        >>> gradient_health(toy, x, y).flagged
        False
        >>> quantised = lambda z: toy(torch.round(z))   # round() has zero gradient almost everywhere
        >>> gradient_health(quantised, x, y).zero_fraction
        1.0
    """
    _check_model(model)
    check_batch(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of int64 class indices [{x.shape[0]}], got {type(y).__name__}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"y must hold one label per example, shape [{x.shape[0]}], got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class indices [{x.shape[0]}], got dtype {y.dtype}")
    modes = eval_mode(model) if isinstance(model, nn.Module) else nullcontext()
    z = x.detach().clone().float().requires_grad_(True)
    with modes, torch.enable_grad():
        logits = model(z)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"model must return logits [{x.shape[0]}, K], got shape {tuple(logits.shape)}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= logits.shape[1]:
            raise ValueError(f"y has class indices in [{low}, {high}]; expected [0, {logits.shape[1]}) (the model "
                             f"returns {logits.shape[1]} logits)")
        loss = F.cross_entropy(logits, y.to(z.device).long(), reduction="sum")
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
        else:
            grad = None
    if grad is None:
        grad = torch.zeros_like(z)
    flat = grad.flatten(1)  # [B, D]
    nonfinite = ~torch.isfinite(flat).all(1)
    zero = (flat == 0).all(1) & ~nonfinite
    return GradientCheck(zero=zero.detach(), nonfinite=nonfinite.detach())


@dataclass(frozen=True)
class MonotonicityCheck:
    """Robust accuracy against the perturbation budget.

    Attributes:
        eps: Budgets, increasing. accuracy: Robust accuracy at each budget.
        increases: (eps_low, eps_high, rise) for each consecutive pair whose accuracy rose by more than the
            tolerance.
    """

    eps: tuple[float, ...]
    accuracy: tuple[float, ...]
    increases: tuple[tuple[float, float, float], ...]

    @property
    def flagged(self) -> bool:
        return bool(self.increases)

    @property
    def message(self) -> str:
        if not self.flagged:
            return "robust accuracy does not increase with eps"
        worst = max(self.increases, key=lambda t: t[2])
        return (f"robust accuracy rises with eps (by {worst[2]:.3f} from eps={worst[0]:g} to eps={worst[1]:g}): the "
                "attack misses points a smaller budget reached")


def eps_monotonicity(eps: Sequence[float], accuracy: Sequence[float], *, tolerance: float = 0.0) -> MonotonicityCheck:
    """Flag every consecutive pair of budgets where robust accuracy rises by more than ``tolerance``.

    Args:
        eps: At least 3 strictly increasing budgets.
        accuracy: Robust accuracy at each budget (same length), in [0, 1].
        tolerance: Allowed rise (>= 0), e.g. one standard error of the accuracy when examples differ by budget.
    Returns:
        ``MonotonicityCheck``.
    Raises:
        ValueError: fewer than 3 budgets, budgets not finite numbers >= 0 or not increasing, lengths differing,
            accuracies outside [0, 1], ``tolerance`` not a finite number >= 0.

    Examples:
        >>> eps_monotonicity([0.1, 0.2, 0.4], [0.8, 0.5, 0.2]).flagged
        False
        >>> check = eps_monotonicity([0.1, 0.2, 0.4], [0.8, 0.5, 0.75])
        >>> check.flagged, check.increases
        (True, ((0.2, 0.4, 0.25),))
    """
    eps_t, acc_t = tuple(float(e) for e in eps), tuple(float(a) for a in accuracy)
    if len(eps_t) < 3:
        raise ValueError(f"eps_monotonicity needs at least 3 budgets, got {list(eps_t)}")
    if any(not math.isfinite(e) or e < 0 for e in eps_t):
        raise ValueError(f"eps must be finite numbers >= 0, got {list(eps_t)}")
    if len(acc_t) != len(eps_t):
        raise ValueError(f"accuracy has {len(acc_t)} values for {len(eps_t)} budgets; expected one per budget")
    if any(b <= a for a, b in zip(eps_t, eps_t[1:], strict=False)):
        raise ValueError(f"eps must be strictly increasing, got {list(eps_t)}")
    if any(not 0.0 <= a <= 1.0 for a in acc_t):
        raise ValueError(f"accuracy values must lie in [0, 1], got {list(acc_t)}")
    _check_nonnegative(tolerance, "tolerance")
    rises = tuple((eps_t[i], eps_t[i + 1], acc_t[i + 1] - acc_t[i]) for i in range(len(eps_t) - 1)
                  if acc_t[i + 1] - acc_t[i] > tolerance)
    return MonotonicityCheck(eps_t, acc_t, rises)


@dataclass(frozen=True)
class GradientFreeGap:
    """Examples a gradient-free attack broke that every gradient attack left robust.

    Attributes:
        only_free: bool [B]: robust to every gradient attack, broken by the gradient-free one.
        gradient_accuracy: Robust accuracy under the worst case over gradient attacks.
        free_accuracy: Robust accuracy under the gradient-free attack.
        min_examples: Number of such examples from which the gap is flagged.
    """

    only_free: torch.Tensor
    gradient_accuracy: float
    free_accuracy: float
    min_examples: int

    @property
    def count(self) -> int:
        return int(self.only_free.sum())

    @property
    def flagged(self) -> bool:
        return self.count >= self.min_examples

    @property
    def message(self) -> str:
        if not self.flagged:
            return (f"the gradient-free attack broke {self.count} example(s) the gradient attacks did not "
                    f"(threshold {self.min_examples})")
        return (f"gradient masking symptom: the gradient-free attack broke {self.count} example(s) every gradient "
                f"attack left robust (robust accuracy {self.free_accuracy:.3f} gradient-free vs "
                f"{self.gradient_accuracy:.3f} worst over gradient attacks)")


def gradient_free_gap(gradient_robust: torch.Tensor, free_robust: torch.Tensor, *,
                      min_examples: int = 1) -> GradientFreeGap:
    """Compare per-example robustness under gradient attacks with a gradient-free attack's.

    Args:
        gradient_robust: bool [A, B] (or [B]): example b survived gradient attack a.
        free_robust: bool [B]: example b survived the gradient-free attack.
        min_examples: Flag from this many examples broken only by the gradient-free attack (>= 1); raise it to
            tolerate a randomized model's chance disagreements.
    Returns:
        ``GradientFreeGap``.
    Raises:
        TypeError / ValueError: inputs that are not bool tensors, shapes that do not line up, an empty batch,
            ``min_examples`` < 1.

    Examples:
        >>> grad = torch.tensor([[True, True, False], [True, False, False]])   # 2 gradient attacks, 3 examples
        >>> gap = gradient_free_gap(grad, torch.tensor([False, False, False]))
        >>> gap.count, gap.flagged, gap.gradient_accuracy
        (1, True, 0.333...)
    """
    check_positive_int(min_examples, "min_examples")
    if not isinstance(gradient_robust, torch.Tensor) or not isinstance(free_robust, torch.Tensor):
        raise TypeError(f"gradient_robust and free_robust must be bool tensors, got {type(gradient_robust).__name__} "
                        f"and {type(free_robust).__name__}")
    if gradient_robust.dtype != torch.bool or free_robust.dtype != torch.bool:
        raise ValueError(f"gradient_robust and free_robust must be bool tensors, got {gradient_robust.dtype} and "
                         f"{free_robust.dtype}")
    grad = gradient_robust.unsqueeze(0) if gradient_robust.dim() == 1 else gradient_robust
    if (grad.dim() != 2 or free_robust.dim() != 1 or grad.shape[1] != free_robust.shape[0] or grad.shape[0] == 0
            or grad.shape[1] == 0):
        raise ValueError(f"expected gradient_robust [A >= 1, B >= 1] and free_robust [B], got "
                         f"{tuple(gradient_robust.shape)} and {tuple(free_robust.shape)}")
    worst = grad.all(0)  # [B]
    return GradientFreeGap(only_free=worst & ~free_robust, gradient_accuracy=float(worst.float().mean()),
                           free_accuracy=float(free_robust.float().mean()), min_examples=min_examples)


def binomial_se(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n), the standard error of an accuracy p in [0, 1] over n >= 0 examples (0 for n = 0)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be an accuracy in [0, 1], got {p!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    return math.sqrt(p * (1 - p) / n) if n > 0 else 0.0

