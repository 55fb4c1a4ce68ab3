"""Expectation PGD (EPGD): PGD on the mean per-sample cross-entropy over M fresh Gaussian noise draws per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from art_ext.attacks._adapter import TorchEvasionAttack
from art_ext.attacks.pgd import LossFn, PGDConfig, pgd
from art_ext.ops import norms
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, add_gaussian_noise, resolve
from art_ext.types import Bounds, LogitsFn, Norm


def noisy_cross_entropy(sigma: float, noise_space: NoiseSpace | None = None,
                        generator: torch.Generator | None = None) -> LossFn:
    """Per-example CE(f(x + eta), y) [B] with one fresh draw eta ~ N(0, sigma^2) in ``noise_space`` per call
    (``art_ext.smoothing.add_gaussian_noise``, the draw of ``GaussianNoise``); ``pgd`` averages ``eot_samples``
    calls, which is Eq. 25 as the reference code implements it: (1/M) sum_j CE(f(x + eta_j), y). sigma = 0 draws
    nothing (the generator's state then matches plain PGD's)."""

    def loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        noisy = add_gaussian_noise(x, sigma, generator, noise_space=noise_space)  # [B, ...]
        return F.cross_entropy(model(noisy), y, reduction="none")  # [B]

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
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Expectation PGD (Nemcovsky et al., arXiv:1911.07198, Sec. 4.2, Eq. 25) against a Gaussian-smoothed model.

    Each step ascends the gradient of L(x') = (1/M) sum_{j=1..M} CE(f(x' + eta_j), y) with M fresh draws
    eta_j ~ N(0, sigma^2 I) in ``config.noise_space`` (M forward passes of B rows, one backward), then projects
    with ``norms.project_and_clamp``; it is ``pgd`` with that loss, and therefore also ``pgd`` on
    ``nn.Sequential(GaussianNoise(sigma, generator=g), f)`` with ``eot_samples`` = M (same draws, same order, bit
    for bit). With M = 1 and sigma = 0 it is exactly ``pgd`` on f.

    Args:
        model: Base classifier f, inputs in ``bounds`` -> logits; deterministic (EPGD supplies the noise).
        x: Clean inputs [B, C, H, W] in ``bounds``; y: int64 labels [B] (targets when targeted).
        mask: Optional bool tensor broadcastable to ``x`` (features perturbed where True), as in ``pgd``.
        generator: Randomness of the noise and of the random starts.
    Returns:
        Adversarial inputs like ``x``, ||x_adv - x|| <= eps, inside ``bounds``.

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
    loss_fn = noisy_cross_entropy(config.sigma, config.noise_space, generator)
    return pgd(model, x, y, config.pgd_config(), loss_fn=loss_fn, bounds=bounds, mask=mask, generator=generator)


class EPGD(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``epgd`` on an ART ``PyTorchClassifier`` (noise added to the estimator's
    inputs, before its preprocessing; ``noise_space=NormalizedNoise(mean, std)`` declares noise of std sigma after
    the normalization instead)."""

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init", "sigma", "eot_samples", "noise_space"]

    def __init__(self, estimator, sigma: float, norm=2, eps: float = 0.5, eps_step: float = 0.1, max_iter: int = 20,
                 eot_samples: int = 8, targeted: bool = False, num_random_init: int = 0,
                 noise_space: NoiseSpace | None = None, batch_size: int = 32, verbose: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, sigma=sigma, norm=norm,
                         eps=eps, eps_step=eps_step, max_iter=max_iter, eot_samples=eot_samples, targeted=targeted,
                         num_random_init=num_random_init, noise_space=noise_space)

    def _build_config(self) -> EPGDConfig:
        return EPGDConfig(eps=self.eps, eps_step=self.eps_step, sigma=self.sigma, max_iter=self.max_iter,
                          norm=self.norm, targeted=self.targeted, num_random_init=self.num_random_init,
                          eot_samples=self.eot_samples, noise_space=resolve(self.noise_space))

    def _attack_batch(self, model, x, y, generator, *, bounds, mask):
        return epgd(model, x, y, self.config, bounds=bounds, mask=mask, generator=generator)
