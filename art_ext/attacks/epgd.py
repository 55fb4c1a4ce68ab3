"""Expectation PGD (EPGD): PGD on the mean per-sample cross-entropy over M fresh Gaussian noise draws per step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from art_ext.attacks._common import KeyedNoise, attack_keys, to_model_dtype
from art_ext.attacks.pgd import LossFn, PGDConfig, pgd
from art_ext.ops import norms
from art_ext.ops.validation import check_attack_inputs
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, resolve
from art_ext.types import Bounds, LogitsFn, Norm


def noisy_cross_entropy(sigma: float, keys: NoiseKeys | None, samples: int = 1,
                        noise_space: NoiseSpace | None = None) -> LossFn:
    """Per-example mean cross-entropy [B], (1/M) sum_j CE(f(x + eta_j), y), over M = ``samples`` Gaussian draws
    eta_j ~ N(0, sigma^2) in ``noise_space`` (Eq. 25 as the reference code implements it): M forward passes of B
    rows.

    Call c of the returned loss uses draws c * M .. c * M + M - 1 of each image's stream (``KeyedNoise(keys)``: the
    draw of image i is a function of ``keys[i]`` and its index only), so in ``pgd`` step t uses draws t*M .. t*M+M-1
    whatever the batch. sigma = 0 draws nothing (``keys`` may then be None).
    """
    if sigma > 0 and keys is None:
        raise ValueError("noisy_cross_entropy with sigma > 0 needs keys (one NoiseKeys key per image)")
    calls = 0
    noise: KeyedNoise | None = None

    def loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls, noise
        if sigma == 0 or keys is None:
            eta = torch.zeros((samples, *x.shape), device=x.device, dtype=x.dtype)  # nothing drawn
        else:
            noise = noise or KeyedNoise(keys, x, sigma, noise_space)  # x's shape, device and dtype
            eta = noise.draw(calls * samples, samples)  # [M, B, C, H, W]
        calls += 1
        total = F.cross_entropy(model(x + eta[0]), y, reduction="none")  # [B]
        for j in range(1, samples):
            total = total + F.cross_entropy(model(x + eta[j]), y, reduction="none")
        return total / samples

    return loss


@dataclass(frozen=True)
class EPGDConfig:
    """Parameters of ``epgd`` (ART names; ``eot_samples`` = M, ``sigma`` the noise level of the smoothed model).

    Attributes:
        eps, eps_step, max_iter, norm, targeted, num_random_init: as in ``PGDConfig`` (input units).
        sigma: Noise std, >= 0, in the units of ``noise_space``.
        eot_samples: M fresh noise draws per step, >= 1.
        noise_space: Where the deployed noise is added: ``PixelNoise()`` (default, Cohen et al., this project's
            convention) or ``NormalizedNoise(mean, std)`` (after the model's normalization, Nemcovsky et al.'s code).
    """

    eps: float
    eps_step: float
    sigma: float
    max_iter: int = 20
    norm: Norm = "l2"
    targeted: bool = False
    num_random_init: int = 0
    eot_samples: int = 8
    noise_space: NoiseSpace = PixelNoise()

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not (
                math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        object.__setattr__(self, "noise_space", resolve(self.noise_space))
        if isinstance(self.eot_samples, bool) or not isinstance(self.eot_samples, int) or self.eot_samples < 1:
            raise ValueError(f"eot_samples must be an int >= 1, got {self.eot_samples!r}")
        self.pgd_config()  # validates the PGD fields

    def pgd_config(self) -> PGDConfig:
        # The M draws live in the loss (``noisy_cross_entropy``: M forward passes of B rows, one backward per step;
        # on CPU faster than one pass of M * B rows, as torchattacks' EOTPGD), so the PGD loop calls it once a step.
        return PGDConfig(eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter, norm=self.norm,
                         targeted=self.targeted, num_random_init=self.num_random_init)


def epgd(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: EPGDConfig,
    *,
    bounds: Bounds = Bounds(),
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """Expectation PGD (Nemcovsky et al., arXiv:1911.07198, Sec. 4.2, Eq. 25) against a Gaussian-smoothed model.

    Each step ascends the gradient of L(x') = (1/M) sum_{j=1..M} CE(f(x' + eta_j), y) with M fresh draws
    eta_j ~ N(0, sigma^2 I) in ``config.noise_space`` (M forward passes of B rows, one backward), then projects
    with ``norms.project_and_clamp``; it is ``pgd`` with that loss (``noisy_cross_entropy``). The noise is keyed
    per image: draw j of step t (t counts every loss evaluation, restarts and their final comparison included) for
    image i is ``sigma * KeyedNoise(keys.derive("eot"))`` draw t * M + j of image i, and the random starts are
    ``pgd``'s under the same keys, so x_adv[i] does not depend on the batch size or on the other images in the
    call. With sigma = 0 it is exactly ``pgd`` on f with the same generator or keys (for M = 1, bit for bit).

    Args:
        model: Base classifier f, inputs in ``bounds`` -> logits; deterministic (EPGD supplies the noise).
        x: Clean inputs [B, C, H, W] in ``bounds``; y: int64 labels [B] (targets when targeted).
        mask: Optional bool tensor broadcastable to ``x`` (features perturbed where True), as in ``pgd``.
        generator: Source of the per-image keys (one draw per call; ``None``: torch's default generator), used
            when sigma > 0 or ``num_random_init`` > 0.
        keys: Fixed per-image keys (``NoiseKeys``) instead of ``generator``.
    Returns:
        Adversarial inputs like ``x`` (shape, dtype, device), ||x_adv - x|| <= eps, inside ``bounds``. The attack
        runs in the model's dtype (its first floating parameter's, float32 without parameters): ``x`` of another
        floating dtype is cast once on entry and the result cast back (exact for float64).
    Raises:
        TypeError / ValueError before any model call, from ``check_attack_inputs``: ``x`` not a floating tensor
            [B, ...] of finite values inside ``bounds``, or ``y`` not int64 class indices [B] >= 0.

    Deviations:
        Eq. 25 in the paper writes a sum of softmax outputs; the reference code (yanemcovsky/SIAM@947630e
        attacks/expectation_pgd_fgsmk.py) back-propagates the mean of per-sample CE, which is what EPGD means here.
        The reference never zeroes the input gradient between steps (an undecayed accumulated gradient); here each
        step uses a fresh gradient. The reference is l_inf in normalized space with a uniform random start; here
        the threat model is in pixel space (eps in [0, 1] units, l2 or l_inf), the noise space is declared with
        ``noise_space``, and the random start is ``num_random_init`` (0 by default, as ART).

    Examples:
        >>> from art_ext.testing import tiny_cnn, tiny_images
        >>> model, x = tiny_cnn(), tiny_images(3)
        >>> y = model(x).argmax(1)
        >>> config = EPGDConfig(eps=0.5, eps_step=0.125, sigma=0.25, max_iter=4, eot_samples=2)
        >>> x_adv = epgd(model, x, y, config, generator=torch.Generator().manual_seed(0))
        >>> bool((norms.lp_norm(x_adv - x, "l2") <= 0.5 + 1e-6).all())
        True
    """
    check_attack_inputs(x, y, bounds, attack="epgd")  # before any work
    x_in = x
    x = to_model_dtype(x, model)  # the one cast (a no-op in the model's dtype)
    image_keys = attack_keys(keys, generator, x, needed=config.sigma > 0 or config.num_random_init > 0)
    eot = None if image_keys is None else image_keys.derive("eot")
    loss_fn = noisy_cross_entropy(config.sigma, eot, config.eot_samples, config.noise_space)
    x_adv = pgd(model, x, y, config.pgd_config(), loss_fn=loss_fn, bounds=bounds, mask=mask, keys=image_keys)
    return x_adv.to(x_in.dtype)


def __getattr__(name: str) -> Any:
    """``EPGD``, the ART adapter, loaded (with ART) on first use: importing this core does not import ART."""
    if name == "EPGD":
        from art_ext.attacks.adapters import EPGD

        return EPGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
