"""MACER: maximizing the certified radius of the soft smoothed classifier (Zhai et al., ICLR 2020,
arXiv:2001.02378, Sec. 3 and Algorithm 1; reference RuntianZ/macer macer.py:29-68).

With k noise draws per example, z_hat(x) = (1/k) sum_i softmax(beta * f(x + delta_i)) (inverse temperature beta),
y_hat = argmax z_hat and xi(x, y) = Phi^-1(z_hat_y) - Phi^-1(max_{c != y} z_hat_c), (sigma / 2) * xi is the soft
smoothed classifier's certified radius. The loss of a batch of B examples is

    (M-1)  L = (1/B) sum_b [ -log(F_hat(x_b)_{y_b} + 1e-10)
                             + lambda * (sigma / 2) * max(gamma - xi_b, 0) * 1[y_hat_b = y_b] * 1[xi_b finite] ]

with F_hat the plain (beta = 1) soft smoothed classifier: the classification term, then the hinge on the radius
over the correctly classified examples. The reference implements the hinge by keeping examples with xi <= gamma;
examples whose z_hat saturates to exactly 0 or 1 in floating point (xi infinite) are dropped, here without NaN
gradients (the dropped entries are replaced before Phi^-1). The denominator is the whole batch B. Labels M-1 is this
project's (the paper's equation numbers could not be checked against its text); it is Algorithm 1's loss restated
from the reference code that produced the paper's numbers.

Deviations from ART 1.20.1's ``PyTorchMACER`` (research/certified_training.md §3.3): the k copies are grouped with
``repeat_interleave`` (ART's ``repeat(...).view`` mixes examples for inputs that are not 4-D), noise in pixel space;
``deferred_epochs`` (lambda = 0 for the first epochs, Jeong & Shin's ``--deferred``) is an art_ext option, off by
default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from art_ext.training.certified._common import CertifiedMethod, check_int, check_real, noisy_copies, soft_smoothed


def macer_terms(
    logits: torch.Tensor, y: torch.Tensor, *, num_noise_vec: int, sigma: float, beta: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two per-example terms of M-1 from the logits of the noisy copies: ``(classification [B], hinge [B])``,
    hinge = (sigma / 2) * max(gamma - xi, 0) on correctly classified examples with finite xi, else 0.

    Args:
        logits: [B * k, K], row b * k + i the i-th copy of example b.
        y: Labels [B].
    """
    k = num_noise_vec
    classification = -(soft_smoothed(logits, k).gather(1, y[:, None]).squeeze(1) + 1e-10).log()
    z = soft_smoothed(beta * logits, k)  # [B, K]
    top2, index = z.topk(2, dim=1)
    p1, p2 = top2[:, 0], top2[:, 1]
    finite = (p1 < 1) & (p2 > 0)  # Phi^-1 is finite on (0, 1)
    safe_p1 = torch.where(finite, p1, torch.full_like(p1, 0.75))  # placeholders keep the gradient finite (it is 0)
    safe_p2 = torch.where(finite, p2, torch.full_like(p2, 0.25))
    xi = torch.special.ndtri(safe_p1) - torch.special.ndtri(safe_p2)
    active = finite & (index[:, 0] == y) & (xi <= gamma)
    hinge = torch.where(active, (sigma / 2) * (gamma - xi), torch.zeros_like(xi))
    return classification, hinge


@dataclass(frozen=True)
class MACERTraining(CertifiedMethod):
    """MACER (M-1) at ``sigma``; ART's defaults (and the paper's CIFAR-10 values) beta 16, gamma 8, lambda 12, k 16.

    Attributes:
        sigma: Noise std in pixel units (> 0).
        beta: Inverse temperature of the robustness term (> 0).
        gamma: Hinge threshold on xi (> 0): examples with xi >= gamma add nothing.
        lbd: lambda, the weight of the robustness term (>= 0); ART's ``lmbda``.
        num_noise_vec: Noise draws k per example (>= 1); ART's ``gaussian_samples``.
        deferred_epochs: lambda is 0 during the first ``deferred_epochs`` epochs (>= 0; 0 = never deferred).

    Examples:
        >>> MACERTraining(0.25).lbd, MACERTraining(0.25).num_noise_vec
        (12.0, 16)
        >>> MACERTraining(0.25, deferred_epochs=5).epoch_lbd(4), MACERTraining(0.25, deferred_epochs=5).epoch_lbd(5)
        (0.0, 12.0)
        >>> MACERTraining(0.25, gamma=-1)
        Traceback (most recent call last):
        ...
        ValueError: gamma must be a finite number > 0, got -1
    """

    sigma: float
    beta: float = 16.0
    gamma: float = 8.0
    lbd: float = 12.0
    num_noise_vec: int = 16
    deferred_epochs: int = 0

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma")
        check_real(self.beta, "beta")
        check_real(self.gamma, "gamma")
        check_real(self.lbd, "lbd", strict=False)
        check_int(self.num_noise_vec, "num_noise_vec")
        check_int(self.deferred_epochs, "deferred_epochs", low=0)

    def epoch_lbd(self, epoch: int) -> float:
        """lambda at 0-based ``epoch``: 0 while ``epoch < deferred_epochs``."""
        return 0.0 if epoch < self.deferred_epochs else float(self.lbd)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        """M-1 from one forward of the B * k noisy copies in the model's own (train) mode."""
        inputs, noise = noisy_copies(x, self.num_noise_vec, self.sigma, generator)
        classification, hinge = macer_terms(model(inputs + noise), y, num_noise_vec=self.num_noise_vec,
                                            sigma=self.sigma, beta=self.beta, gamma=self.gamma)
        return classification.mean() + self.epoch_lbd(epoch) * hinge.mean()
