"""SmoothAdv-PGD: PGD on the soft smoothed classifier, -log mean_i softmax_y(f(x' + delta_i))."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from art_ext.attacks._common import KeyedNoise, attack_keys, to_model_dtype
from art_ext.attacks.pgd import LossFn, PGDConfig, pgd
from art_ext.ops import norms
from art_ext.ops.validation import check_attack_inputs
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, resolve
from art_ext.types import Bounds, LogitsFn, Norm

Aggregate = Literal["softmax", "logits"]
_AGGREGATES = ("softmax", "logits")
NoiseSchedule = Literal["fixed", "fresh"]
_NOISE_SCHEDULES = ("fixed", "fresh")


def draw_noise(x: torch.Tensor, samples: int, sigma: float, noise_space: NoiseSpace | None = None, *,
               keys: NoiseKeys, start: int = 0) -> torch.Tensor:
    """Gaussian draws ``start .. start + samples - 1`` of each image [m, B, ...], of std sigma in ``noise_space``,
    in input (pixel) units: draw j of image i is ``sigma * scale * NoiseStreams(keys)`` sample j of image i
    (``KeyedNoise``), whatever the batch. sigma = 0: zeros, nothing drawn. For ``NormalizedNoise(mean, std)``
    channel c is scaled by ``std_c`` (noise of std sigma after the normalization).
    """
    return KeyedNoise(keys, x, sigma, noise_space).draw(start, samples)  # [m, B, ...]


def noisy_logits(model: LogitsFn, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Logits [m, B, K] of the m noisy copies x + noise[i], evaluated in one batch of m * B rows."""
    samples, batch = noise.shape[:2]
    return model((x.unsqueeze(0) + noise).flatten(0, 1)).view(samples, batch, -1)  # [m, B, K]


def smoothadv_loss(noise: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
                   aggregate: Aggregate = "softmax") -> LossFn:
    """Per-example loss [B] on the m noisy copies x' + noise[i].

    ``noise`` is either a tensor [m, B, ...] used at every call (fixed noise) or a function x -> [m, B, ...] called
    once per loss evaluation (fresh noise at every step).

    ``"softmax"`` (Salman et al. 2019, Sec. 3.1 and their code): -log((1/m) sum_i softmax_y(f(x' + delta_i))),
    clamped at 1e-20 before the log as the reference does. ``"logits"`` (Nemcovsky et al., Eq. 24):
    CE(softmax((1/m) sum_i f(x' + delta_i)), y), the softmax of the mean logits.
    """

    def loss(model: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        drawn = noise if isinstance(noise, torch.Tensor) else noise(x)  # [m, B, ...]
        logits = noisy_logits(model, x, drawn)  # [m, B, K]
        if aggregate == "logits":
            return F.cross_entropy(logits.mean(0), y, reduction="none")  # [B]
        probs = logits.softmax(-1).mean(0)  # [B, K], mean of probabilities over the m copies
        return -probs.gather(1, y[:, None]).squeeze(1).clamp_min(1e-20).log()  # [B]

    return loss


@dataclass(frozen=True)
class SmoothAdvConfig:
    """Parameters of ``smoothadv_pgd``.

    Attributes:
        eps: Radius (input units), >= 0. max_iter: T >= 1. norm: "l2" (the paper's) or "linf".
        eps_step: Step size; None = 2 * eps / T (the reference's). targeted, num_random_init: as in ``PGDConfig``
            (the reference has no random start: 0).
        sigma: Noise std of the smoothed classifier (units of ``noise_space``), >= 0.
        num_noise: m, the number of noise draws per step, >= 1.
        aggregate: "softmax" (mean of probabilities, the SmoothAdv objective) or "logits" (mean of logits, Eq. 24 of
            Nemcovsky et al.).
        noise: ``"fixed"`` (default; Salman et al.'s code, the paper's setting): the m draws are sampled once and
            reused at every step, so the attack ascends one fixed Monte Carlo objective. ``"fresh"``: m new draws at
            every step (as torchattacks' PGDRSL2), a stochastic gradient of the expectation itself.
        noise_space: Where the noise is added (``PixelNoise()`` default, or ``NormalizedNoise(mean, std)``).
    """

    eps: float
    sigma: float
    max_iter: int = 20
    eps_step: float | None = None
    norm: Norm = "l2"
    targeted: bool = False
    num_random_init: int = 0
    num_noise: int = 8
    aggregate: Aggregate = "softmax"
    noise: NoiseSchedule = "fixed"
    noise_space: NoiseSpace = PixelNoise()

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not (
                math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if isinstance(self.num_noise, bool) or not isinstance(self.num_noise, int) or self.num_noise < 1:
            raise ValueError(f"num_noise must be an int >= 1, got {self.num_noise!r}")
        if self.aggregate not in _AGGREGATES:
            raise ValueError(f"aggregate must be one of {_AGGREGATES}, got {self.aggregate!r}")
        if self.noise not in _NOISE_SCHEDULES:
            raise ValueError(f"noise must be one of {_NOISE_SCHEDULES}, got {self.noise!r}")
        object.__setattr__(self, "noise_space", resolve(self.noise_space))
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.eps_step is None:
            object.__setattr__(self, "eps_step", 2.0 * self.eps / self.max_iter if self.eps > 0 else 1.0)
        self.pgd_config()  # validates eps, eps_step, num_random_init

    def pgd_config(self) -> PGDConfig:
        assert self.eps_step is not None  # set in __post_init__
        return PGDConfig(eps=self.eps, eps_step=float(self.eps_step), max_iter=self.max_iter, norm=self.norm,
                         targeted=self.targeted, num_random_init=self.num_random_init)


def smoothadv_pgd(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: SmoothAdvConfig,
    *,
    fixed_noise: torch.Tensor | None = None,
    bounds: Bounds = Bounds(),
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """SmoothAdv-PGD (Salman et al., NeurIPS 2019, arXiv:1906.04584, Sec. 3.1, objective on the soft smoothed
    classifier G(x) = E_delta[softmax f(x + delta)]) against the base classifier ``model``.

    With ``config.noise == "fixed"`` the m draws delta_i ~ N(0, sigma^2 I) are sampled once (or passed as
    ``fixed_noise`` [m, B, C, H, W]) and reused at every step; with ``"fresh"`` m new draws are taken at every
    loss evaluation (every step, and the final comparison of random restarts). The noise is keyed per image:
    delta_j of image i is ``sigma * KeyedNoise(keys.derive("noise"))`` draw j of image i ("fixed": j < m; "fresh":
    loss evaluation c uses draws c * m .. c * m + m - 1), and the random starts are ``pgd``'s under the same keys,
    so x_adv[i] does not depend on the batch size or on the other images in the call. Each step is ``pgd``'s
    normalized-gradient step of size eps_step = 2 eps / T followed by ``norms.project_and_clamp``. The returned
    example excludes the noise.

    Args:
        model: Base classifier f, inputs in ``bounds`` -> logits (deterministic; the noise is this function's).
        x: Clean inputs [B, C, H, W] in ``bounds``; y: int64 labels [B] (targets when targeted).
        fixed_noise: Optional fixed noise [m, B, ...] in input units (overrides ``sigma``/``num_noise`` sampling);
            only with ``noise="fixed"``.
        mask: Optional bool tensor broadcastable to ``x`` (features perturbed where True), as in ``pgd``.
        generator: Source of the per-image keys (one draw per call; ``None``: torch's default generator).
        keys: Fixed per-image keys (``NoiseKeys``) instead of ``generator``.
    Returns:
        Adversarial inputs like ``x`` (shape, dtype, device) with ||x_adv - x|| <= eps, inside ``bounds``. The
        attack runs in the model's dtype (its first floating parameter's, float32 without parameters): ``x`` of
        another floating dtype is cast once on entry (``fixed_noise`` too) and the result cast back (exact for
        float64).
    Raises:
        TypeError / ValueError before any model call, from ``check_attack_inputs``: ``x`` not a floating tensor
            [B, ...] of finite values inside ``bounds``, or ``y`` not int64 class indices [B] >= 0.

    Deviations:
        Reference: Hadisalman/smoothing-adversarial@cff781d code/attacks.py ``PGD_L2``. It clamps to [0, 1] and then
        rescales into the l2 ball; here the ball projection comes first and the box clamp second (both constraints
        hold either way). Where the gradient is exactly zero the reference steps in a random Gaussian direction;
        here the step is zero. Its ``random_start`` flag is ignored (no random start); here ``num_random_init``
        (default 0) works. l_inf is offered as in torchattacks' PGDRS. The DDN and no-grad variants are not
        implemented. ``aggregate="logits"`` is Nemcovsky et al.'s Eq. 24 reading, not SmoothAdv. ``noise="fresh"``
        is not in the reference (measured in benchmarks/compare_attacks.py: it is the stronger attack there).

    Examples:
        >>> from art_ext.testing import tiny_cnn, tiny_images
        >>> model, x = tiny_cnn(), tiny_images(3)
        >>> y = model(x).argmax(1)
        >>> config = SmoothAdvConfig(eps=0.5, sigma=0.25, max_iter=4, num_noise=4, noise="fresh")
        >>> x_adv = smoothadv_pgd(model, x, y, config, generator=torch.Generator().manual_seed(0))
        >>> bool((norms.lp_norm(x_adv - x, "l2") <= 0.5 + 1e-6).all())
        True
    """
    check_attack_inputs(x, y, bounds, attack="smoothadv_pgd")  # before any work
    x_in = x
    x = to_model_dtype(x, model)  # the one cast (a no-op in the model's dtype)
    needs_keys = (fixed_noise is None and config.sigma > 0) or config.num_random_init > 0
    image_keys = attack_keys(keys, generator, x, needed=needs_keys)
    draws = None if image_keys is None or config.sigma == 0 else KeyedNoise(
        image_keys.derive("noise"), x, config.sigma, config.noise_space)
    if fixed_noise is not None:
        if config.noise != "fixed":
            raise ValueError(f"fixed_noise is given but config.noise is {config.noise!r}; expected noise='fixed'")
        if fixed_noise.dim() != x.dim() + 1 or fixed_noise.shape[1:] != x.shape:
            raise ValueError(f"fixed_noise must have shape [m, *x.shape] = [m, {', '.join(map(str, x.shape))}], "
                             f"got {tuple(fixed_noise.shape)}")
        noise: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] = fixed_noise.detach().to(x.dtype)
    elif draws is None:  # sigma = 0: no noise
        noise = torch.zeros((config.num_noise, *x.shape), device=x.device, dtype=x.dtype)
    elif config.noise == "fixed":
        noise = draws.draw(0, config.num_noise)  # [m, B, ...], once
    else:
        fresh = draws
        calls = 0

        def noise(z: torch.Tensor) -> torch.Tensor:  # m new draws per loss evaluation
            nonlocal calls
            calls += 1
            return fresh.draw((calls - 1) * config.num_noise, config.num_noise)  # [m, B, ...]

    loss_fn = smoothadv_loss(noise, config.aggregate)
    x_adv = pgd(model, x, y, config.pgd_config(), loss_fn=loss_fn, bounds=bounds, mask=mask, keys=image_keys)
    return x_adv.to(x_in.dtype)


def __getattr__(name: str) -> Any:
    """``SmoothAdvPGD``, the ART adapter, loaded (with ART) on first use: importing this core does not import ART."""
    if name == "SmoothAdvPGD":
        from art_ext.attacks.adapters import SmoothAdvPGD

        return SmoothAdvPGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
