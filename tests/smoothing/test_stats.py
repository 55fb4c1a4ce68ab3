import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from art_ext.ops import stats


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_lower_equals_beta_quantile_and_two_sided_interval(n, alpha):
    k = torch.arange(0, n + 1)
    lower = stats.clopper_pearson_lower(k, n, alpha)
    assert lower.dtype == torch.float64 and lower[0] == 0.0
    expected = sps.beta.ppf(alpha, k[1:].numpy(), n - k[1:].numpy() + 1)
    np.testing.assert_allclose(lower[1:].numpy(), expected, rtol=1e-12, atol=0)
    # the references take the lower end of the two-sided exact interval at level 1 - 2 alpha
    for kk in (1, n // 2, n):
        two_sided = sps.binomtest(kk, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
        assert lower[kk].item() == pytest.approx(two_sided, rel=1e-9)
    assert torch.all(lower[1:] > lower[:-1])  # strictly increasing in k


def test_all_votes_bound_is_alpha_to_the_one_over_n():
    for n in (100, 1000, 10_000, 100_000):
        lower = stats.clopper_pearson_lower(torch.tensor([n]), n, 0.001)
        assert lower.item() == pytest.approx(0.001 ** (1 / n), rel=1e-12)


def test_binomial_pvalues_match_scipy():
    pv = stats.binomial_test_pvalues(torch.tensor([60, 50, 100, 0]), torch.tensor([40, 50, 0, 0]))
    assert pv[0].item() == pytest.approx(0.0569, abs=5e-5)  # algorithms.md §1.7
    assert pv[0].item() == pytest.approx(sps.binomtest(60, 100, 0.5).pvalue, rel=1e-12)
    assert pv[1].item() == 1.0  # a tie never decides
    assert pv[2].item() == pytest.approx(2 * 0.5**100, rel=1e-9)
    assert pv[3].item() == 1.0


def test_normal_ppf_is_exact():
    p = torch.tensor([0.5, 0.975, 0.999309], dtype=torch.float64)
    out = stats.normal_ppf(p)
    assert out[0].item() == 0.0
    assert out[1].item() == pytest.approx(1.959963984540054, rel=1e-12)
    assert math.isclose(out[2].item(), sps.norm.ppf(0.999309), rel_tol=1e-14)
