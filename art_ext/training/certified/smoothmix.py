"""SmoothMix: mixup between a clean point and an adversarial point of the soft smoothed classifier (Jeong, Park,
Kim, Lee, Kim & Shin, NeurIPS 2021, arXiv:2111.09277, Sec. 3; reference jh-jeong/smoothmix train.py:121-273).

With m noise draws delta_1..delta_m fixed for the step and F_hat(x) = (1/m) sum_i softmax(f(x + delta_i)), the
adversarial path starts at x^(0) = x and takes T normalized-gradient steps of length alpha on -log F_hat(x^(t))_y,
each projected back to the image box (and to an L2 ball of radius ``maxnorm`` around x when one is set; the paper
sets none). The clean side is x_s = x^(s) for s = ``mix_step`` (0: x itself; 1: the one-step adversary), projected
to the ball of radius w_e * maxnorm_s; the adversarial side is x_a = x^(T). Then, per example,

    (SM-1)  lambda ~ U[0, 1/2),  x_mix = (1 - lambda) x_s + lambda x_a,
            y_mix = (1 - lambda) F_hat(x_s) + lambda * (1/K) 1              (F_hat(x_s) not detached)
    (SM-2)  L = mean_{b,i} CE(f(x_s + delta_i), y)
                + eta * w_e * mean_{b,i} 1[argmax F_hat(x_s) = y] * KL(y_mix || softmax(f(x_mix + delta_i)))

with w_e = min(1, (epoch + 1) / warmup) (train.py:89-90). The path is computed in eval mode with frozen parameters;
the two forwards of SM-2 run in train mode. Labels SM-1 / SM-2 are this project's (the paper's equation numbers
could not be checked against its text), restated from the reference code that produced the paper's numbers.

Deviation from ART 1.20.1's ``PyTorchSmoothMix`` (research/certified_training.md §4.3): ART uses its certification
failure probability ``alpha`` (0.001) as the attack step; here the step is ``step_size`` (default 2 * sigma, the
value of all three published CIFAR-10 recipes), noise in pixel space, lambda from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.ops.norms import project_l2_ball
from art_ext.training.certified._common import (
    CertifiedMethod,
    attacking,
    check_int,
    check_real,
    noisy_copies,
    soft_smoothed,
    unit_rows,
    warmup_factor,
)
from art_ext.training.certified.smoothadv import soft_smoothed_nll


def smoothmix_path(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, *, step_size: float, num_steps: int,
    mix_step: int, maxnorm: float | None, maxnorm_s: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adversarial path of SmoothMix: ``(x_s, x_a)``, both [B, C, H, W] in [0, 1] and detached.

    Args:
        model: The base classifier (eval mode and frozen parameters here, both restored).
        x: Clean images [B, C, H, W] in [0, 1]; y: labels [B].
        noise: The m fixed noise draws [B * m, C, H, W] (row b * m + i).
        step_size: alpha, the L2 length of each step (pixel units). num_steps: T.
        mix_step: s, the step whose point is the clean side (0 <= s <= T).
        maxnorm: L2 bound of the whole path around x (None: the box only).
        maxnorm_s: L2 bound of x_s around x (the caller scales it by the warm-up).
    """
    m = noise.shape[0] // x.shape[0]
    point = x.clone()
    clean = x.clone()
    with attacking(model):
        for t in range(num_steps):
            point.requires_grad_(True)
            logits = model(point.repeat_interleave(m, dim=0) + noise)
            (grad,) = torch.autograd.grad(soft_smoothed_nll(logits, y, m).sum(), point)
            with torch.no_grad():
                point = point + step_size * unit_rows(grad, eps=1e-8)
                if maxnorm is not None:
                    point = x + project_l2_ball(point - x, maxnorm)
                point = point.clamp(0.0, 1.0)
            if t + 1 == mix_step:
                clean = (x + project_l2_ball(point - x, maxnorm_s)).clamp(0.0, 1.0)
    return clean.detach(), point.detach()


def mixup_target(clean_probs: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """y_mix = (1 - lambda) F_hat(x_s) + lambda / K (SM-1): [B, K] from F_hat [B, K] and lambda [B]."""
    k = clean_probs.shape[1]
    return (1 - lam[:, None]) * clean_probs + lam[:, None] / k


@dataclass(frozen=True)
class SmoothMixTraining(CertifiedMethod):
    """SmoothMix (SM-1, SM-2) at ``sigma``. Each loader batch is cut into ``num_noise_vec`` chunks, each with its own
    optimizer step (train.py:114-198).

    Attributes:
        sigma: Noise std in pixel units (> 0).
        eta: Weight of the mixup term (>= 0); the CIFAR-10 recipes use 5, the reference default is 1.
        mix_step: s, the path step used as the clean side (0 <= s <= num_steps; 0 = x itself).
        num_steps: T, steps of the adversarial path (>= 1).
        num_noise_vec: Noise draws m per example (>= 1).
        warmup: Epochs over which eta and maxnorm_s grow as min(1, (epoch + 1) / warmup) (>= 1).
        step_size: alpha, the L2 step length in pixel units (> 0; None: 2 * sigma, resolved at construction).
        maxnorm: L2 bound of the path around x (None, the paper's choice: the box only).
        maxnorm_s: L2 bound of the clean side x_s (None: step_size * mix_step, resolved at construction).

    Examples:
        >>> config = SmoothMixTraining(0.25, eta=5.0, num_steps=4, num_noise_vec=2)
        >>> config.step_size, config.maxnorm_s
        (0.5, 0.0)
        >>> SmoothMixTraining(0.25, mix_step=3, num_steps=2)
        Traceback (most recent call last):
        ...
        ValueError: mix_step must be an int in [0, num_steps=2], got 3
    """

    sigma: float
    eta: float = 1.0
    mix_step: int = 0
    num_steps: int = 10
    num_noise_vec: int = 1
    warmup: int = 1
    step_size: float | None = None
    maxnorm: float | None = None
    maxnorm_s: float | None = None

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma")
        check_real(self.eta, "eta", strict=False)
        check_int(self.num_steps, "num_steps")
        if isinstance(self.mix_step, bool) or not isinstance(self.mix_step, int) or not \
                0 <= self.mix_step <= self.num_steps:
            raise ValueError(f"mix_step must be an int in [0, num_steps={self.num_steps}], got {self.mix_step!r}")
        check_int(self.num_noise_vec, "num_noise_vec")
        check_int(self.warmup, "warmup")
        step = 2.0 * self.sigma if self.step_size is None else check_real(self.step_size, "step_size")
        object.__setattr__(self, "step_size", float(step))
        if self.maxnorm is not None:
            object.__setattr__(self, "maxnorm", check_real(self.maxnorm, "maxnorm"))
        bound = step * self.mix_step if self.maxnorm_s is None else check_real(self.maxnorm_s, "maxnorm_s",
                                                                               strict=False)
        object.__setattr__(self, "maxnorm_s", float(bound))

    @property
    def chunks(self) -> int:
        return self.num_noise_vec

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        """SM-2: m noise draws, the path in eval mode, lambda ~ U[0, 1/2) per example, then the clean and mixed
        forwards in the model's own (train) mode. Generator order: noise, then lambda."""
        m = self.num_noise_vec
        weight = warmup_factor(epoch, self.warmup)
        _, noise = noisy_copies(x, m, self.sigma, generator)
        x_s, x_a = smoothmix_path(
            model, x, y, noise, step_size=float(self.step_size), num_steps=self.num_steps,  # type: ignore[arg-type]
            mix_step=self.mix_step, maxnorm=self.maxnorm, maxnorm_s=weight * float(self.maxnorm_s),  # type: ignore[arg-type]
        )
        lam = 0.5 * torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)  # [B] in [0, 1/2)
        clean_logits = model(x_s.repeat_interleave(m, dim=0) + noise)  # [B * m, K]
        targets = y.repeat_interleave(m)
        clean_loss = F.cross_entropy(clean_logits, targets)
        clean_probs = soft_smoothed(clean_logits, m)  # [B, K], not detached (train.py:176)
        correct = (clean_probs.argmax(1) == y).to(x.dtype)  # [B]
        mixed = (1 - lam.view(-1, 1, 1, 1)) * x_s + lam.view(-1, 1, 1, 1) * x_a
        mixed_logits = model(mixed.repeat_interleave(m, dim=0) + noise)
        target = mixup_target(clean_probs, lam).repeat_interleave(m, dim=0)  # [B * m, K]
        kl = F.kl_div(mixed_logits.log_softmax(1), target, reduction="none").sum(1)  # [B * m]
        mix_loss = (correct.repeat_interleave(m) * kl).mean()
        return clean_loss + self.eta * weight * mix_loss
