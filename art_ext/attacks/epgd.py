"""Expectation PGD (EPGD): PGD on the mean per-sample cross-entropy over M fresh Gaussian noise draws per step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from art_ext.attacks._adapter import TorchEvasionAttack
from art_ext.attacks.pgd import LogitsFn, LossFn, PGDConfig, pgd
from art_ext.ops import norms
from art_ext.types import Bounds, Norm

#: noise_fn(x [B, ...], samples M) -> noise [M, B, ...] in pixel units
NoiseFn = Callable[[torch.Tensor, int], torch.Tensor]


def gaussian_noise_fn(sigma: float, *, std: Sequence[float] | None = None,
                      generator: torch.Generator | None = None) -> NoiseFn:
    """Draws [M, B, ...] Gaussian noise in pixel units.

    With ``std`` (the model's per-channel normalization std), ``sigma`` is in *normalized* units, as in
    Nemcovsky et al.'s code, which adds the noise after (x - mean) / std: N(0, sigma^2) there equals
    N(0, (sigma * std_c)^2) per channel in pixel space.
    """

    def draw(x: torch.Tensor, samples: int) -> torch.Tensor:
        if sigma == 0:  # a deterministic model: no draw, so the generator's state matches plain PGD's
            return torch.zeros((samples, *x.shape), device=x.device, dtype=x.dtype)
        noise = torch.randn((samples, *x.shape), generator=generator, device=x.device, dtype=x.dtype)  # [M, B, ...]
        if std is None:
            return sigma * noise
        scale = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 2)))  # [C, 1, 1]
        return sigma * scale * noise

    return draw


def noisy_logits(model: LogitsFn, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Logits [M, B, K] of the M noisy copies x + noise[i], evaluated in one batch of M * B rows."""
    samples, batch = noise.shape[:2]
    return model((x.unsqueeze(0) + noise).flatten(0, 1)).view(samples, batch, -1)  # [M, B, K]


def noisy_cross_entropy(noise_fn: NoiseFn) -> LossFn:
    """Per-example CE(f(x + eta), y) [B] with one fresh draw eta per call; ``pgd`` averages ``eot_samples`` calls,
    which is Eq. 25 as the reference code implements it: (1/M) sum_j CE(f(x + eta_j), y)."""

    def loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x + noise_fn(x, 1)[0]), y, reduction="none")  # [B]

    return loss


@dataclass(frozen=True)
class EPGDConfig:
    """Parameters of ``epgd`` (ART names; ``eot_samples`` = M, ``sigma`` the noise level of the smoothed model).

    Attributes:
        eps, eps_step, max_iter, norm, targeted, num_random_init: as in ``PGDConfig`` (pixel units).
        sigma: Noise std, >= 0; pixel units unless ``noise_std`` is given (then normalized units).
        eot_samples: M fresh noise draws per step, >= 1.
        noise_std: Per-channel normalization std of the model when the deployed noise is added after normalization
            (Nemcovsky et al.); None = noise in pixel space (Cohen et al., this project's convention).
    """

    eps: float
    eps_step: float
    sigma: float
    max_iter: int = 20
    norm: Norm = "l2"
    targeted: bool = False
    num_random_init: int = 0
    eot_samples: int = 8
    noise_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not (
                math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if self.noise_std is not None:
            std = tuple(float(s) for s in self.noise_std)
            if not std or not all(math.isfinite(s) and s > 0 for s in std):
                raise ValueError(f"noise_std must be a non-empty sequence of finite values > 0, got {self.noise_std!r}")
            object.__setattr__(self, "noise_std", std)
        if isinstance(self.eot_samples, bool) or not isinstance(self.eot_samples, int) or self.eot_samples < 1:
            raise ValueError(f"eot_samples must be an int >= 1, got {self.eot_samples!r}")
        self.pgd_config()  # validates the PGD fields

    def pgd_config(self) -> PGDConfig:
        # The M draws are M forward passes of B rows averaged by the PGD loop (one backward per step): on CPU, M
        # passes of B rows are faster than one pass of M * B rows (torchattacks' EOTPGD does the same).
        return PGDConfig(eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter, norm=self.norm,
                         targeted=self.targeted, num_random_init=self.num_random_init, eot_samples=self.eot_samples)


def epgd(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: EPGDConfig,
    *,
    bounds: Bounds = Bounds(),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Expectation PGD (Nemcovsky et al., arXiv:1911.07198, Sec. 4.2, Eq. 25) against a Gaussian-smoothed model.

    Each step ascends the gradient of L(x') = (1/M) sum_{j=1..M} CE(f(x' + eta_j), y) with M fresh draws
    eta_j ~ N(0, sigma^2 I) (M forward passes of B rows, one backward), then projects with ``norms.project_and_clamp``; it is ``pgd``
    with that loss. With M = 1 and sigma = 0 it is exactly ``pgd`` (same iterates, bit for bit).

    Args:
        model: Base classifier f, [0, 1] inputs -> logits; deterministic (EPGD supplies the noise).
        x: Clean inputs [B, C, H, W] in ``bounds``; y: int64 labels [B] (targets when targeted).
        generator: Randomness of the noise and of the random starts.
    Returns:
        Adversarial inputs like ``x``, ||x_adv - x|| <= eps, inside ``bounds``.

    Deviations:
        Eq. 25 in the paper writes a sum of softmax outputs; the reference code (yanemcovsky/SIAM@947630e
        attacks/expectation_pgd_fgsmk.py) back-propagates the mean of per-sample CE, which is what EPGD means here.
        The reference never zeroes the input gradient between steps (an undecayed accumulated gradient); here each
        step uses a fresh gradient. The reference is l_inf in normalized space with a uniform random start; here
        the threat model is in pixel space (eps in [0, 1] units, l2 or l_inf), the noise space is declared with
        ``noise_std``, and the random start is ``num_random_init`` (0 by default, as ART).
    """
    noise_fn = gaussian_noise_fn(config.sigma, std=config.noise_std, generator=generator)
    loss_fn = noisy_cross_entropy(noise_fn)
    return pgd(model, x, y, config.pgd_config(), loss_fn=loss_fn, bounds=bounds, generator=generator)


class EPGD(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``epgd`` on an ART ``PyTorchClassifier`` (noise added in pixel space, before
    the estimator's preprocessing, unless ``noise_std`` declares the normalized space)."""

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init", "sigma", "eot_samples", "noise_std"]

    def __init__(self, estimator, sigma: float, norm=2, eps: float = 0.5, eps_step: float = 0.1, max_iter: int = 20,
                 eot_samples: int = 8, targeted: bool = False, num_random_init: int = 0,
                 noise_std: Sequence[float] | None = None, batch_size: int = 32, verbose: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, sigma=sigma, norm=norm,
                         eps=eps, eps_step=eps_step, max_iter=max_iter, eot_samples=eot_samples, targeted=targeted,
                         num_random_init=num_random_init, noise_std=noise_std)

    def _build_config(self) -> EPGDConfig:
        return EPGDConfig(eps=self.eps, eps_step=self.eps_step, sigma=self.sigma, max_iter=self.max_iter,
                          norm=self.norm, targeted=self.targeted, num_random_init=self.num_random_init,
                          eot_samples=self.eot_samples, noise_std=self.noise_std)

    def _attack_batch(self, model, x, y, generator):
        return epgd(model, x, y, self.config, generator=generator)
