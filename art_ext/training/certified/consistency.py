"""Consistency regularization (Jeong & Shin, NeurIPS 2020, arXiv:2006.04062, Sec. 3; reference
jh-jeong/smoothing-consistency consistency.py:34-66, train_consistency.py:156-165). Not in ART.

With m >= 2 noise draws per example and F_hat(x) = (1/m) sum_i softmax(f(x + delta_i)) (not detached: the gradient
flows through the target and the entropy, as in the reference),

    (CR-1)  L = mean_{b,i} CE(f(x_b + delta_i), y_b)
                + mean_b [ lambda * (1/m) sum_i KL(F_hat(x_b) || softmax(f(x_b + delta_i))) + eta * H(F_hat(x_b)) ]

with H(p) = -sum_c p_c log max(p_c, 1e-20). lambda pulls the m noisy predictions towards their mean; eta > 0 keeps
that mean from becoming uniform. One forward of the B * m copies in train mode. The label CR-1 is this project's
(the paper's equation numbers could not be checked against its text); it is the paper's objective restated from the
reference code that produced its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.training.certified._common import CertifiedMethod, check_int, check_real, noisy_copies, soft_smoothed


def consistency_terms(logits: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean KL [B], entropy [B])`` of CR-1 from the logits [B * m, K] of the m copies (row b * m + i)."""
    mean_probs = soft_smoothed(logits, m)  # [B, K]
    target = mean_probs.repeat_interleave(m, dim=0)  # [B * m, K]
    kl = F.kl_div(logits.log_softmax(1), target, reduction="none").sum(1).view(-1, m).mean(1)  # [B]
    entropy = -(mean_probs * mean_probs.clamp_min(1e-20).log()).sum(1)  # [B]
    return kl, entropy


@dataclass(frozen=True)
class ConsistencyTraining(CertifiedMethod):
    """Consistency regularization (CR-1) at ``sigma``. Each loader batch is cut into ``num_noise_vec`` chunks, each
    with its own optimizer step (train_consistency.py:115-176).

    Attributes:
        sigma: Noise std in pixel units (> 0).
        num_noise_vec: Noise draws m per example (>= 2; the paper uses 2).
        lbd: lambda, the weight of the consistency (KL) term (>= 0); the paper's CIFAR-10 models use 20 at sigma 0.25
            and 10 at sigma 0.5 / 1.0.
        eta: Weight of the entropy term (>= 0; the paper's 0.5).

    Examples:
        >>> ConsistencyTraining(0.5).num_noise_vec, ConsistencyTraining(0.5).eta
        (2, 0.5)
        >>> ConsistencyTraining(0.5, num_noise_vec=1)
        Traceback (most recent call last):
        ...
        ValueError: num_noise_vec must be an int >= 2, got 1
    """

    sigma: float
    num_noise_vec: int = 2
    lbd: float = 10.0
    eta: float = 0.5

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma")
        check_int(self.num_noise_vec, "num_noise_vec", low=2)
        check_real(self.lbd, "lbd", strict=False)
        check_real(self.eta, "eta", strict=False)

    @property
    def chunks(self) -> int:
        return self.num_noise_vec

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None,
             epoch: int) -> torch.Tensor:
        """CR-1 from one forward of the B * m noisy copies in the model's own (train) mode."""
        m = self.num_noise_vec
        inputs, noise = noisy_copies(x, m, self.sigma, generator)
        logits = model(inputs + noise)
        kl, entropy = consistency_terms(logits, m)
        return F.cross_entropy(logits, y.repeat_interleave(m)) + (self.lbd * kl + self.eta * entropy).mean()
