"""SmoothAdv training: adversarial training of the soft smoothed classifier (Salman et al., NeurIPS 2019,
arXiv:1906.04584, Sec. 3 and Algorithm 1 "SmoothAdv-PGD"; reference Hadisalman/smoothing-adversarial).

For a batch (x, y) and m noise draws delta_1..delta_m ~ N(0, sigma^2 I), fixed for the whole step, the attack
maximizes the cross-entropy of the *soft* smoothed classifier inside the L2 ball of radius eps_e and the image box:

    (SA-1)  x_hat = argmax_{||x' - x||_2 <= eps_e, x' in [0, 1]^d}  -log( (1/m) sum_i softmax(f(x' + delta_i))_y )

by T steps of normalized-gradient ascent from x itself (delta^0 = 0, no random start): step 2 eps_e / T along the
per-example unit gradient (a zero gradient is replaced by a random unit direction), clamp to the box, rescale to the
ball (attacks.py:139-180). The update then minimizes, with the *same* noise draws,

    (SA-2)  (1/m) sum_i CE(f(x_hat + delta_i), y)

(``--train-multi-noise``, used by every published command; train_pgd.py:237-255). The attack runs in eval mode with
the parameters frozen, the update in train mode. eps_e = min(1, (epoch + 1) / warmup) * eps (train_pgd.py:177).
Labels SA-1 / SA-2 are this project's (the paper's equation numbers could not be checked against its text); the
objective is the paper's Eq. (S) restated from the reference code that produced its numbers.

Deviations from ART 1.20.1's ``PyTorchSmoothAdv`` (research/certified_training.md §2.3): ART runs ``num_steps``
1-step L-inf attacks re-centred at each iterate, on predicted labels, with one noise draw and a warm-up that never
changes eps; here the attack is the paper's L2 SmoothAdv-PGD on the true labels with m draws and a working warm-up.
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


def soft_smoothed_nll(logits: torch.Tensor, y: torch.Tensor, m: int) -> torch.Tensor:
    """Per-example -log(max(F_hat(x)_y, 1e-20)) with F_hat the mean softmax of m copies: [B] from logits [B * m, K]
    (SA-1's objective; attacks.py:148-159)."""
    probs = soft_smoothed(logits, m)  # [B, K]
    return -probs.gather(1, y[:, None]).squeeze(1).clamp_min(1e-20).log()


def smoothadv_attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, *, eps: float, num_steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SmoothAdv-PGD (SA-1) against the soft smoothed classifier with fixed noise; returns x_hat [B, C, H, W].

    Args:
        model: The base classifier (put in eval mode with frozen parameters here, both restored).
        x: Clean images [B, C, H, W] in [0, 1]. y: Labels [B].
        noise: The m noise draws, [B * m, C, H, W], row b * m + i the i-th draw of example b.
        eps: L2 radius in pixel units (> 0). num_steps: T >= 1.
        generator: Draws the random unit direction that replaces a zero gradient (only then).
    Returns:
        x_hat with ||x_hat - x||_2 <= eps and x_hat in [0, 1] for every example, detached.
    """
    m = noise.shape[0] // x.shape[0]
    step = 2.0 * eps / num_steps
    delta = torch.zeros_like(x)
    with attacking(model):
        for _ in range(num_steps):
            delta.requires_grad_(True)
            logits = model((x + delta).repeat_interleave(m, dim=0) + noise)
            loss = soft_smoothed_nll(logits, y, m).mean()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = delta + step * unit_rows(grad, generator=generator)
                delta = (x + delta).clamp(0.0, 1.0) - x
                delta = project_l2_ball(delta, eps)  # a rescaled box-feasible delta stays in the box (convexity)
    return (x + delta).detach()


@dataclass(frozen=True)
class SmoothAdvTraining(CertifiedMethod):
    """SmoothAdv training (SA-1, SA-2) at ``sigma``.

    Each loader batch is cut into ``num_noise_vec`` chunks, each with its own optimizer step, so an epoch still sees
    every example once (train_pgd.py:202-267).

    Attributes:
        sigma: Noise std in pixel units (> 0).
        eps: L2 radius of the attack in pixel units (> 0); ART's ``epsilon`` (default 1.0). The reference command
            line gives eps in /256 units: 255 -> 0.996.
        num_steps: PGD steps T (>= 1; ART's default 10).
        num_noise_vec: Noise draws m per example (>= 1), shared by the attack and the update.
        warmup: Epochs over which eps grows as min(1, (epoch + 1) / warmup) * eps (>= 1; 1 = full eps at once).

    Examples:
        >>> SmoothAdvTraining(0.25, eps=0.5, num_steps=2, num_noise_vec=2).epoch_eps(0)
        0.5
        >>> SmoothAdvTraining(0.5, eps=1.0, warmup=4).epoch_eps(1)
        0.5
        >>> SmoothAdvTraining(0.25, num_steps=0)
        Traceback (most recent call last):
        ...
        ValueError: num_steps must be an int >= 1, got 0
    """

    sigma: float
    eps: float = 1.0
    num_steps: int = 10
    num_noise_vec: int = 1
    warmup: int = 1

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma")
        check_real(self.eps, "eps")
        check_int(self.num_steps, "num_steps")
        check_int(self.num_noise_vec, "num_noise_vec")
        check_int(self.warmup, "warmup")

    @property
    def chunks(self) -> int:
        return self.num_noise_vec

    def epoch_eps(self, epoch: int) -> float:
        """The attack radius of 0-based ``epoch``: min(1, (epoch + 1) / warmup) * eps."""
        return warmup_factor(epoch, self.warmup) * self.eps

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        """SA-2 at the SA-1 point: draw m noises, attack in eval mode, then the mean CE of the m noisy copies of
        x_hat in the model's own (train) mode."""
        m = self.num_noise_vec
        _, noise = noisy_copies(x, m, self.sigma, generator)
        x_hat = smoothadv_attack(model, x, y, noise, eps=self.epoch_eps(epoch), num_steps=self.num_steps,
                                 generator=generator)
        logits = model(x_hat.repeat_interleave(m, dim=0) + noise)
        return F.cross_entropy(logits, y.repeat_interleave(m))
