"""BPDA-PGD: forward through a (possibly non-differentiable) defence, backward through a surrogate, PGD on top."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from art_ext.attacks.pgd import LossFn, PGDConfig, cross_entropy_loss, pgd
from art_ext.ops.bpda import straight_through
from art_ext.ops.validation import check_attack_inputs
from art_ext.smoothing.keys import NoiseKeys
from art_ext.types import Bounds, LogitsFn, Norm

TensorFn = Callable[[torch.Tensor], torch.Tensor]


class BPDA(nn.Module):
    """Straight-through wrapper (Athalye et al., 2018, arXiv:1802.00420v4, Sec. 4.1): the value of ``defence(x)``,
    the gradient of ``surrogate(x)`` (identity by default).

    ``forward(x) = s + (d - s).detach()`` (``art_ext.ops.bpda.straight_through``, the one straight-through
    estimator, shared with ``art_ext.defences.denoised_smoothing``) with d = defence(x) computed without a graph and
    s = surrogate(x), so the defence may be non-differentiable (quantisation, JPEG, a sampler) or stochastic.
    Modules passed as defence or surrogate are registered, so ``eval()`` / ``.to()`` reach them.
    """

    def __init__(self, defence: TensorFn, surrogate: TensorFn | None = None) -> None:
        super().__init__()
        self.defence = defence
        self.surrogate = surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.surrogate is None else self.surrogate(x)  # differentiable stand-in
        with torch.no_grad():
            d = self.defence(x)  # [B, ...], the deployed value
        return straight_through(s, d)


def bpda(defence: TensorFn, surrogate: TensorFn | None = None) -> BPDA:
    """``BPDA(defence, surrogate)``: compose with a classifier as ``nn.Sequential(bpda(denoiser), classifier)``."""
    return BPDA(defence, surrogate)


def reach(config: PGDConfig) -> float:
    """The farthest distance from x that ``config``'s iterates can get without a random start: max_iter * eps_step."""
    return config.max_iter * config.eps_step


def warn_if_unreachable(config: PGDConfig) -> None:
    """Warn when max_iter * eps_step < eps: the attack cannot use its budget (e.g. Kumar & Narayan's Table V)."""
    if config.num_random_init == 0 and reach(config) < config.eps:
        warnings.warn(
            f"max_iter * eps_step = {config.max_iter} * {config.eps_step:g} = {reach(config):g} < eps = "
            f"{config.eps:g}: the iterates can never leave the {config.norm} ball of radius {reach(config):g}, so this "
            f"attack is weaker than its eps suggests; use eps_step >= {config.eps / config.max_iter:g} "
            f"(e.g. sane_config: 2.5 * eps / max_iter)",
            RuntimeWarning,
            stacklevel=3,
        )


def table_v_config() -> PGDConfig:
    """Kumar & Narayan, Table V: "20-step BPDA-based PGD-l2, l2-norm 0.5, alpha 0.01" (pixel units on [0, 1]).

    Warns: 20 * 0.01 = 0.2 < 0.5, so the attack stays inside a ball of radius 0.2 (see ``sane_config``).
    """
    config = PGDConfig(eps=0.5, eps_step=0.01, max_iter=20, norm="l2")
    warn_if_unreachable(config)
    return config


def sane_config(eps: float = 0.5, max_iter: int = 20, norm: Norm = "l2") -> PGDConfig:
    """Same threat model with eps_step = 2.5 * eps / max_iter (Madry et al.'s rule), which can reach the boundary."""
    return PGDConfig(eps=eps, eps_step=2.5 * eps / max_iter, max_iter=max_iter, norm=norm)


def bpda_pgd(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: PGDConfig,
    *,
    defence: TensorFn,
    surrogate: TensorFn | None = None,
    loss_fn: LossFn = cross_entropy_loss,
    bounds: Bounds = Bounds(),
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """PGD on ``model(defence(x))`` with BPDA gradients: ``pgd(model o bpda(defence, surrogate), ...)``.

    Implements the BPDA attack of Athalye et al. (2018, arXiv:1802.00420v4, Sec. 4.1) with the one PGD loop; for a
    randomized defence (noise + denoiser) set ``config.eot_samples`` > 1 to average fresh draws (BPDA + EOT, Sec.
    4.3). Warns when max_iter * eps_step < eps (``warn_if_unreachable``).

    Args:
        model: Classifier on the defence's output, -> logits.
        defence: The deployed transformation (any tensor function; may be stochastic or non-differentiable).
        surrogate: Differentiable approximation used for gradients; None = identity.
        generator, keys: The random starts' keys, as in ``pgd`` (a stochastic defence draws its own noise).
    Returns:
        Adversarial inputs like ``x``, ||x_adv - x|| <= eps, inside ``bounds``.
    Raises:
        TypeError / ValueError before any model call, from ``check_attack_inputs``: ``x`` not a floating tensor
            [B, ...] of finite values inside ``bounds``, or ``y`` not int64 class indices [B] >= 0.

    Deviations:
        The reference (anishathalye/obfuscated-gradients@9ef8b37) uses raw-gradient steps with a soft l2 penalty and
        early stopping; here the standard PGD step (sign for l_inf, unit l2 direction) and an exact projection are
        used, without early stopping. Kumar & Narayan's Table V setting is available as ``table_v_config``.
    """
    check_attack_inputs(x, y, bounds, attack="bpda_pgd")  # before any work (pgd checks again, cheaply)
    warn_if_unreachable(config)
    wrapped = bpda(defence, surrogate)
    if isinstance(model, nn.Module):  # a module, so that pgd computes in the classifier's dtype
        attacked: LogitsFn = nn.Sequential(wrapped, model)
    else:
        def attacked(z: torch.Tensor) -> torch.Tensor:
            return model(wrapped(z))

    return pgd(attacked, x, y, config, loss_fn=loss_fn, bounds=bounds, mask=mask, generator=generator, keys=keys)


def __getattr__(name: str) -> Any:
    """``BPDAPGD``, the ART adapter, loaded (with ART) on first use: importing this core does not import ART."""
    if name == "BPDAPGD":
        from art_ext.attacks.adapters import BPDAPGD

        return BPDAPGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
