"""Exact binomial statistics used by randomized-smoothing certificates (SciPy, float64)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def clopper_pearson_lower(successes: torch.Tensor, trials: int, alpha: float) -> torch.Tensor:
    """One-sided (1 - alpha) Clopper-Pearson lower confidence bound on a binomial proportion.

    Equals ``Beta.ppf(alpha; k, n - k + 1)`` for k > 0 and 0 for k = 0 (Clopper & Pearson, 1934); this is the lower end
    of the two-sided interval at level 1 - 2 alpha that locuslab/smoothing obtains through statsmodels.

    Args:
        successes: Integer counts k, any shape, 0 <= k <= trials.
        trials: Number of trials n >= 1.
        alpha: Failure probability in (0, 1).
    Returns:
        float64 tensor of lower bounds, same shape and device as ``successes``.
    """
    k = successes.detach().to("cpu", torch.float64).numpy()
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(alpha, k, trials - k + 1)
    lower = np.where(k > 0, lower, 0.0)
    return torch.as_tensor(lower, dtype=torch.float64, device=successes.device)


def normal_ppf(p: torch.Tensor) -> torch.Tensor:
    """Inverse standard normal CDF Phi^-1 in float64 (SciPy's ndtri, exact to machine precision)."""
    values = stats.norm.ppf(p.detach().to("cpu", torch.float64).numpy())
    return torch.as_tensor(values, dtype=torch.float64, device=p.device)


def binomial_test_pvalues(n_a: torch.Tensor, n_b: torch.Tensor) -> torch.Tensor:
    """Two-sided exact binomial test of n_a ~ Bin(n_a + n_b, 1/2), one p-value per element (float64).

    Uses ``scipy.stats.binomtest`` (``binom_test``, which the reference code calls, was removed in SciPy 1.12).
    """
    a = n_a.detach().cpu().tolist()
    b = n_b.detach().cpu().tolist()
    pvalues = [
        stats.binomtest(int(ka), int(ka + kb), 0.5).pvalue if ka + kb > 0 else 1.0 for ka, kb in zip(a, b, strict=True)
    ]
    return torch.tensor(pvalues, dtype=torch.float64, device=n_a.device)
