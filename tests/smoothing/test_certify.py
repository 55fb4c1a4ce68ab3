"""CERTIFY / PREDICT against exact vote counts (algorithms.md §1.7 table) and scipy reference values."""

import pytest
import torch
from scipy import stats as sps

from art_ext import ABSTAIN, SmoothedClassifier, certify, predict
from art_ext.testing import ScriptedVotes

# algorithms.md §1.7 (alpha = 0.001): N, all-votes p_A_lower, max radius / sigma, min n_A that does not abstain
TABLE = [(100, 0.93325, 1.5005, 66), (1000, 0.99312, 2.4633, 550), (10_000, 0.999309, 3.1986, 5156),
         (100_000, 0.9999309, 3.8115, 50490)]


def scripted_certify(n0_votes, n_votes, *, sigma=0.5, alpha=0.001, num_classes=3, batch_size=997):
    votes = torch.cat([torch.as_tensor(n0_votes), torch.as_tensor(n_votes)])
    base = ScriptedVotes(votes, num_classes).eval()
    x = torch.full((1, 1, 2, 2), 0.5)
    certs = certify(base, x, n0=len(n0_votes), n=len(n_votes), sigma=sigma, alpha=alpha, num_classes=num_classes,
                    batch_size=batch_size)
    return certs, base


@pytest.mark.parametrize("n, p_all, max_radius_over_sigma, min_votes", TABLE)
def test_certify_reproduces_caps_and_abstain_threshold(n, p_all, max_radius_over_sigma, min_votes):
    sigma = 0.5
    selection = torch.ones(100, dtype=torch.long)  # class 1 selected
    all_votes, _ = scripted_certify(selection, torch.ones(n, dtype=torch.long), sigma=sigma)
    assert all_votes.label.item() == 1
    assert all_votes.p_a_lower.item() == pytest.approx(p_all, abs=5e-6 if n < 10_000 else 5e-7)
    assert all_votes.radius.item() / sigma == pytest.approx(max_radius_over_sigma, abs=5e-4)
    assert all_votes.radius.dtype == torch.float64

    just_enough = torch.cat([torch.ones(min_votes), torch.zeros(n - min_votes)]).long()
    certs, _ = scripted_certify(selection, just_enough, sigma=sigma)
    assert certs.label.item() == 1 and certs.p_a_lower.item() >= 0.5
    expected = sigma * sps.norm.ppf(sps.beta.ppf(0.001, min_votes, n - min_votes + 1))
    assert certs.radius.item() == pytest.approx(expected, rel=1e-12)

    one_short = torch.cat([torch.ones(min_votes - 1), torch.zeros(n - min_votes + 1)]).long()
    certs, _ = scripted_certify(selection, one_short, sigma=sigma)
    assert certs.label.item() == ABSTAIN and certs.radius.item() == 0.0 and certs.p_a_lower.item() < 0.5


def test_selection_and_estimation_use_separate_draws():
    # selection votes say class 2, estimation votes say class 0: the certificate is for class 2 and fails
    certs, base = scripted_certify(torch.full((50,), 2), torch.zeros(1000, dtype=torch.long))
    assert certs.counts_selection[0].tolist() == [0, 0, 50]
    assert certs.counts_estimation[0].tolist() == [1000, 0, 0]
    assert certs.label.item() == ABSTAIN
    assert base.position == 1050  # exactly n0 + n samples, none reused


def test_selection_ties_go_to_lowest_class():
    certs, _ = scripted_certify(torch.tensor([2, 1, 2, 1]), torch.ones(200, dtype=torch.long))
    assert certs.label.item() == 1


def test_predict_binomial_test_and_tie_abstain():
    x = torch.full((1, 1, 2, 2), 0.5)
    # 60 vs 40: p = 0.0569 -> decides at alpha 0.1, abstains at alpha 0.05
    votes = torch.cat([torch.zeros(60), torch.ones(40)]).long()
    assert predict(ScriptedVotes(votes, 3).eval(), x, n=100, sigma=0.1, alpha=0.1, num_classes=3,
                   batch_size=64).item() == 0
    assert predict(ScriptedVotes(votes, 3).eval(), x, n=100, sigma=0.1, alpha=0.05, num_classes=3,
                   batch_size=64).item() == ABSTAIN
    tie = torch.cat([torch.zeros(50), torch.full((50,), 2)]).long()
    assert predict(ScriptedVotes(tie, 3).eval(), x, n=100, sigma=0.1, alpha=0.5, num_classes=3,
                   batch_size=64).item() == ABSTAIN
    # the test uses only the top two classes: 30 / 20 with 50 votes spread on a third class
    spread = torch.cat([torch.zeros(30), torch.ones(20), torch.full((50,), 2)]).long()
    # counts: class 2 = 50, class 0 = 30 -> binomtest(50, 80)
    label = predict(ScriptedVotes(spread, 3).eval(), x, n=100, sigma=0.1, alpha=0.05, num_classes=3, batch_size=64)
    assert sps.binomtest(50, 80, 0.5).pvalue <= 0.05 and label.item() == 2


def test_same_seed_same_certificates_and_wrapper_equals_functions(tiny_cnn, gen):
    x = torch.rand(3, 1, 8, 8, generator=gen)
    kwargs = dict(n0=20, n=300, sigma=0.3, alpha=0.01, num_classes=10, batch_size=128)
    a = certify(tiny_cnn, x, generator=torch.Generator().manual_seed(5), **kwargs)
    b = certify(tiny_cnn, x, generator=torch.Generator().manual_seed(5), **kwargs)
    c = certify(tiny_cnn, x, generator=torch.Generator().manual_seed(6), **kwargs)
    # same-kernel: the same call twice, same seed; counts are integers; one check asserts a difference
    assert torch.equal(a.label, b.label) and torch.equal(a.radius, b.radius)
    assert torch.equal(a.counts_estimation, b.counts_estimation)  # same-kernel: integer counts, the same call twice
    assert not torch.equal(a.counts_estimation, c.counts_estimation)  # same-kernel: asserts a difference (another seed)
    smoothed = SmoothedClassifier(tiny_cnn, 0.3, num_classes=10)
    w = smoothed.certify(x, n0=20, n=300, alpha=0.01, batch_size=128, generator=torch.Generator().manual_seed(5))
    # same-kernel: the class calls the same certify on the same draws and batches
    assert torch.equal(w.radius, a.radius) and torch.equal(w.label, a.label)
    p1 = predict(tiny_cnn, x, n=300, sigma=0.3, alpha=0.01, num_classes=10, batch_size=128,
                 generator=torch.Generator().manual_seed(1))
    p2 = smoothed.predict(x, n=300, alpha=0.01, batch_size=128, generator=torch.Generator().manual_seed(1))
    assert torch.equal(p1, p2)  # same-kernel: integer labels; the class calls the same predict
    assert a.sigma.tolist() == [0.3] * 3 and a.sigma.dtype == torch.float64
    assert (a.n0, a.n, a.alpha, a.sigmas) == (20, 300, 0.01, (0.3,)) and len(a) == 3


def test_certificates_cat_and_correct():
    certs, _ = scripted_certify(torch.ones(10, dtype=torch.long), torch.ones(100, dtype=torch.long))
    both = type(certs).cat([certs, certs])
    assert both.label.tolist() == [1, 1] and both.counts_estimation.shape == (2, 3)
    assert both.correct([1, 0]).tolist() == [True, False]
    other, _ = scripted_certify(torch.ones(10, dtype=torch.long), torch.ones(100, dtype=torch.long), sigma=0.25)
    mixed = type(certs).cat([certs, other])  # per-example sigma: certificates at different sigmas concatenate
    assert mixed.sigma.tolist() == [float(certs.sigma[0]), 0.25] and mixed.sigmas == tuple(sorted(mixed.sigma.tolist()))
    longer, _ = scripted_certify(torch.ones(10, dtype=torch.long), torch.ones(200, dtype=torch.long))
    with pytest.raises(ValueError, match="different"):
        type(certs).cat([certs, longer])
