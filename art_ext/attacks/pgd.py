"""Projected gradient descent: the one PGD loop of art_ext (plain, EOT/expectation, any loss)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from art_ext.attacks._common import attack_keys, checked_width, image_generators, to_model_dtype
from art_ext.ops import norms
from art_ext.ops.validation import check_attack_inputs
from art_ext.smoothing.keys import NoiseKeys
from art_ext.types import Bounds, LogitsFn, Norm

#: loss_fn(model, x_adv, y) -> per-example loss [B] that the attack *increases* (decreases when targeted)
LossFn = Callable[[LogitsFn, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PGDConfig:
    """Parameters of ``pgd`` (ART's names).

    Attributes:
        eps: Radius of the threat-model ball (pixel units), >= 0.
        eps_step: Step size per iteration, > 0 (l2: length of the step; linf: size of the sign step).
        max_iter: Iterations, >= 1.
        norm: ``"l2"`` or ``"linf"`` (ART's 2 / np.inf / "inf" are accepted and converted).
        targeted: Move toward ``y`` instead of away from it.
        num_random_init: 0 starts at x; k >= 1 runs k random starts and keeps, per example, the final point of
            the best start (highest loss; lowest when targeted), like ART.
        eot_samples: Model calls averaged per gradient (expectation over the model's randomness; 1 = plain PGD).
    """

    eps: float
    eps_step: float
    max_iter: int = 20
    norm: Norm = "l2"
    targeted: bool = False
    num_random_init: int = 0
    eot_samples: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be finite and >= 0, got {self.eps!r}")
        if not (math.isfinite(self.eps_step) and self.eps_step > 0):
            raise ValueError(f"eps_step must be finite and > 0, got {self.eps_step!r}")
        for name in ("max_iter", "eot_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.num_random_init, bool) or not isinstance(self.num_random_init, int) or \
                self.num_random_init < 0:
            raise ValueError(f"num_random_init must be an int >= 0, got {self.num_random_init!r}")


def cross_entropy_loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy [B] of ``model(x)`` against ``y``."""
    return F.cross_entropy(model(x), y, reduction="none")


def expected_loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, samples: int) -> torch.Tensor:
    """Mean of ``samples`` independent evaluations of ``loss_fn`` (each model call draws fresh randomness)."""
    total = loss_fn(model, x, y)
    for _ in range(samples - 1):
        total = total + loss_fn(model, x, y)
    return total / samples


def pgd(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: PGDConfig,
    *,
    loss_fn: LossFn = cross_entropy_loss,
    bounds: Bounds = Bounds(),
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """PGD (Madry et al., 2018, arXiv:1706.06083v4, Eq. 2) with optional EOT averaging (Athalye et al., 2018,
    arXiv:1802.00420v4, Sec. 4.3).

    Each step: delta <- Proj(delta + eps_step * steepest_ascent(grad_delta sign * mean_m loss(x + delta, y))),
    where Proj is the eps-ball projection followed by the box clamp (``norms.project_and_clamp``). Only input
    gradients are computed; the model's train/eval mode is left as the caller set it.

    Args:
        model: Logits function on inputs in ``bounds``; may be stochastic (then use ``eot_samples`` > 1).
        x: Clean inputs [B, ...] inside ``bounds``.
        y: int64 labels [B] (targets when ``config.targeted``).
        loss_fn: Per-example loss to ascend; cross-entropy by default.
        bounds: Box of valid inputs, in the same units as ``eps`` (default [0, 1] pixels; (-inf, inf) = unbounded).
        mask: Optional bool tensor broadcastable to ``x``: only features where it is True are perturbed (the random
            start and every step), as ART's ``mask``.
        generator: Source of the per-image keys of the random starts (one draw per call, only when
            ``num_random_init`` > 0; ``None``: torch's default generator). The model's own noise comes from the model.
        keys: Fixed per-image keys (``NoiseKeys``, one per image) instead of ``generator``. Image i's random starts
            are drawn by a generator seeded from ``keys.derive("random start")[i]`` (start r is its r-th draw), so
            x_adv[i] does not depend on the batch size or on the other images in the call.
    Returns:
        Adversarial inputs, same shape/dtype/device as ``x``, with ||x_adv - x|| <= eps, x_adv in ``bounds`` and
        x_adv == x where ``mask`` is False. The attack runs in the model's dtype (its first floating parameter's,
        float32 without parameters): ``x`` of another floating dtype (float64, float16, bfloat16) is cast once on
        entry and the result cast back to ``x.dtype`` (exact for float64; for a narrower dtype the ball holds up to
        that dtype's rounding).
    Raises:
        TypeError / ValueError before any model call: ``x`` is not a floating tensor [B, ...] of finite values inside
            ``bounds``, or ``y`` is not int64 class indices [B] >= 0 (a [B, 1] column or one-hot [B, K] is refused,
            not guessed); at the first forward: a label >= the model's output width. ValueError: both ``generator``
            and ``keys`` are given, or ``keys`` does not hold one key per image.

    Examples:
        >>> from art_ext.testing import tiny_cnn, tiny_images
        >>> model, x = tiny_cnn(), tiny_images(4)
        >>> y = model(x).argmax(1)
        >>> x_adv = pgd(model, x, y, PGDConfig(eps=0.5, eps_step=0.1, max_iter=5, norm="l2"))
        >>> bool((norms.lp_norm(x_adv - x, "l2") <= 0.5 + 1e-6).all())
        True
        >>> pgd(model, x * 255, y, PGDConfig(eps=0.5, eps_step=0.1))  # 8-bit values are refused, not clamped
        Traceback (most recent call last):
        ...
        ValueError: x has values in [...], outside pgd's bounds [0.0, 1.0]; pass inputs inside the bounds ...
    """
    check_attack_inputs(x, y, bounds, attack="pgd")  # before any work
    x_in = x
    x = to_model_dtype(x, model)  # the one cast (a no-op in the model's dtype)
    model = checked_width(model, y)  # labels < the output width, checked at the first forward
    image_keys = attack_keys(keys, generator, x, needed=config.num_random_init > 0 and config.eps > 0)
    if config.eps == 0:
        return x_in.detach().clone()
    starts = None if image_keys is None else image_generators(image_keys.derive("random start"), x.device)
    sign = -1.0 if config.targeted else 1.0
    best: torch.Tensor | None = None
    best_loss: torch.Tensor | None = None
    for _ in range(max(1, config.num_random_init)):
        if config.num_random_init > 0:
            assert starts is not None  # drawn above when num_random_init > 0
            delta = norms.random_start(x, config.eps, config.norm, bounds, starts)
            if mask is not None:
                delta = delta * mask  # ART: the random start is masked too
        else:
            delta = torch.zeros_like(x)
        for _ in range(config.max_iter):
            delta.requires_grad_(True)
            loss = expected_loss(model, x + delta, y, loss_fn, config.eot_samples)  # [B]
            (grad,) = torch.autograd.grad(sign * loss.sum(), delta)
            with torch.no_grad():
                if mask is not None:
                    grad = grad * mask  # zero outside the mask, before the step's normalisation (as ART)
                delta = delta + config.eps_step * norms.steepest_ascent(grad, config.norm)
                delta = norms.project_and_clamp(x, delta, config.eps, config.norm, bounds)
        if config.num_random_init <= 1:
            return (x + delta).clamp(bounds.low, bounds.high).detach().to(x_in.dtype)  # exact box after rounding
        with torch.no_grad():
            final = sign * expected_loss(model, x + delta, y, loss_fn, config.eot_samples)  # [B]
            if best is None or best_loss is None:
                best, best_loss = delta.clone(), final
            else:
                better = final > best_loss
                best[better], best_loss = delta[better], torch.where(better, final, best_loss)
    assert best is not None  # at least one start ran
    return (x + best).clamp(bounds.low, bounds.high).detach().to(x_in.dtype)


def __getattr__(name: str) -> Any:
    """``PGD``, the ART adapter, loaded (with ART) on first use: importing this core does not import ART."""
    if name == "PGD":
        from art_ext.attacks.adapters import PGD

        return PGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
