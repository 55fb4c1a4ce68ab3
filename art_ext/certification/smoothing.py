"""Cohen et al. PREDICT and CERTIFY for Gaussian randomized smoothing, batched over images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from art_ext.certification.sampling import LogitsFn, _sample_counts, validate_sampling_args
from art_ext.ops import stats, validation
from art_ext.types import ABSTAIN


class CertifiedLabels:
    """Label bookkeeping shared by certificate containers: a ``label`` tensor [B] with ``ABSTAIN`` = -1."""

    label: torch.Tensor

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def abstained(self) -> torch.Tensor:
        """bool [B]: where no certificate was issued."""
        return self.label == ABSTAIN

    def correct(self, labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """bool [B]: certified with the true label (abstentions count as wrong)."""
        y = torch.as_tensor(labels, device=self.label.device).long()
        return (self.label == y) & ~self.abstained


@dataclass(frozen=True)
class Certificates(CertifiedLabels):
    """Result of CERTIFY for a batch of B images (all tensors on the device of the input).

    Attributes:
        label: int64 [B], the smoothed prediction, ``ABSTAIN`` (-1) where p_a_lower < 1/2.
        radius: float64 [B], certified L2 radius in pixel units (0 where abstained), full precision.
        p_a_lower: float64 [B], one-sided (1 - alpha) Clopper-Pearson lower bound on p_A.
        counts_selection: int64 [B, K], the n0 selection votes.
        counts_estimation: int64 [B, K], the n estimation votes.
        sigma, n0, n, alpha: the parameters used.
    """

    label: torch.Tensor
    radius: torch.Tensor
    p_a_lower: torch.Tensor
    counts_selection: torch.Tensor
    counts_estimation: torch.Tensor
    sigma: float
    n0: int
    n: int
    alpha: float


    @staticmethod
    def cat(parts: Sequence["Certificates"]) -> "Certificates":
        """Concatenate certificates computed with the same parameters."""
        if not parts:
            raise ValueError("Certificates.cat needs at least one Certificates object")
        params = {(p.sigma, p.n0, p.n, p.alpha) for p in parts}
        if len(params) != 1:
            raise ValueError(f"cannot concatenate certificates with different (sigma, n0, n, alpha): {sorted(params)}")
        first = parts[0]
        return Certificates(
            label=torch.cat([p.label for p in parts]),
            radius=torch.cat([p.radius for p in parts]),
            p_a_lower=torch.cat([p.p_a_lower for p in parts]),
            counts_selection=torch.cat([p.counts_selection for p in parts]),
            counts_estimation=torch.cat([p.counts_estimation for p in parts]),
            sigma=first.sigma,
            n0=first.n0,
            n=first.n,
            alpha=first.alpha,
        )


def certify(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n0: int,
    n: int,
    sigma: float,
    alpha: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> Certificates:
    """CERTIFY of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Alg. "certify", Thm. 1 with p_B = 1 - p_A).

    1. Select c_A = argmax of the counts of ``n0`` draws (ties -> lowest class index).
    2. Count votes for c_A over ``n`` fresh draws, independent of the selection draws.
    3. p_A_lower = one-sided (1 - alpha) Clopper-Pearson bound; if p_A_lower < 1/2 abstain (label -1, radius 0),
       else radius = sigma * Phi^-1(p_A_lower).

    Guarantee:
        For each image, with probability >= 1 - alpha over the noise draws, the result either abstains or the
        smoothed classifier g satisfies g(x + d) = label for every ||d||_2 < radius (pixel units).

    Args:
        base: Base classifier in eval mode, [m, C, H, W] in [0, 1] -> logits [m, K'] with K' <= num_classes.
        x: Images [B, C, H, W] in [0, 1].
        n0: Selection draws per image (>= 1). n: Estimation draws per image (>= 1).
        sigma: Noise standard deviation, pixel units (> 0). alpha: Failure probability in (0, 1).
        num_classes: K >= 2. batch_size: Noisy samples per forward pass.
        generator: Noise source on the device of ``x``.
    Returns:
        ``Certificates`` for the B images.
    Deviations:
        The reference code (locuslab/smoothing@78a4d949 core.py) abstains when p_A_lower < 1/2 and certifies radius 0
        at equality; this is kept (the paper says "> 1/2"; the difference has measure zero). Radii are kept in float64
        rather than printed with 3 significant digits, which can round up.
    """
    validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size, generator=generator)
    validation.check_positive_int(n0, "n0")
    validation.check_positive_int(n, "n")
    alpha = validation.check_alpha(alpha)
    validation.warn_if_never_certifies(n, alpha)
    sigma = float(sigma)

    counts_selection = _sample_counts(base, x, n0, sigma, num_classes, batch_size, generator)  # [B, K]
    c_hat = counts_selection.argmax(dim=1)  # [B]; first maximum on ties
    counts_estimation = _sample_counts(base, x, n, sigma, num_classes, batch_size, generator)  # fresh draws
    n_a = counts_estimation.gather(1, c_hat[:, None]).squeeze(1)  # [B]
    p_a_lower = stats.clopper_pearson_lower(n_a, n, alpha)  # [B] float64
    certified = p_a_lower >= 0.5
    radius = torch.where(certified, sigma * stats.normal_ppf(p_a_lower), torch.zeros_like(p_a_lower))
    label = torch.where(certified, c_hat, torch.full_like(c_hat, ABSTAIN))
    return Certificates(label, radius, p_a_lower, counts_selection, counts_estimation, sigma, n0, n, alpha)


def predict(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n: int,
    sigma: float,
    alpha: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PREDICT of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Alg. "predict", Prop. 1).

    Counts ``n`` draws, takes the top two classes n_A >= n_B and returns c_A when the two-sided exact binomial
    test of n_A ~ Bin(n_A + n_B, 1/2) has p-value <= alpha, else ``ABSTAIN``.

    Guarantee:
        For each image, the probability of returning a class other than g(x) is at most alpha.

    Returns:
        int64 [B] labels with ``ABSTAIN`` (-1) where the test cannot decide, on the device of ``x``.
    """
    validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size, generator=generator)
    validation.check_positive_int(n, "n")
    alpha = validation.check_alpha(alpha)
    counts = _sample_counts(base, x, n, float(sigma), num_classes, batch_size, generator)  # [B, K]
    top2 = counts.topk(2, dim=1).values  # [B, 2], n_A >= n_B
    pvalues = stats.binomial_test_pvalues(top2[:, 0], top2[:, 1])  # [B]
    c_a = counts.argmax(dim=1)
    return torch.where(pvalues <= alpha, c_a, torch.full_like(c_a, ABSTAIN))
