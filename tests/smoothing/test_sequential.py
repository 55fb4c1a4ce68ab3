"""Sequential CERTIFY: equal to fixed-n CERTIFY with one look, forward passes as counted, stopping rule, soundness.

Soundness is checked on ``LinearToy``, whose smoothed classifier is itself with p_A = Phi(margin) and exact radius
margin * sigma: a certificate larger than that, or a wrong label, happens only when the lower bound fails at the
stopping look, with probability <= alpha per image whatever the stopping rule did, independently across images and
seeds. Thresholds are binomial quantiles at a false-failure rate of 1e-4 per test.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from art_ext import ABSTAIN, Certificates, certify, certify_sequential
from art_ext.smoothing.sequential import (
    DEFAULT_FINAL_ALPHA_SHARE,
    DEFAULT_TOP_ALPHA_SHARE,
    _look_alphas,
    _mixture_bounds,
    _predictive_success,
    _top_look,
    geometric_looks,
)
from art_ext.testing import CallRecorder, ScriptedVotes, linear_problem, tiny_cnn, tiny_images

FALSE_FAILURE = 1e-4


def scripted(n0_votes, votes, **kwargs):
    base = ScriptedVotes(torch.cat([torch.as_tensor(n0_votes), torch.as_tensor(votes)]).long(), 3).eval()
    args = dict(sigma=0.5, alpha=0.001, num_classes=3, batch_size=1000, n0=len(n0_votes))
    args.update(kwargs)
    return certify_sequential(base, torch.full((1, 1, 2, 2), 0.5), **args), base


# ---------------------------------------------------------------- equal to CERTIFY when the stopping rule is off


@pytest.mark.parametrize("batch_size", [37, 4096])
def test_one_look_with_all_of_alpha_is_fixed_n_certify(batch_size):
    model = tiny_cnn(batchnorm=True)
    x = tiny_images(5)
    kwargs = dict(n0=20, sigma=0.5, alpha=0.01, num_classes=10, batch_size=batch_size)
    fixed = certify(model, x, n=700, generator=torch.Generator().manual_seed(3), **kwargs)
    seq = certify_sequential(model, x, n_max=700, looks=(700,), radii=[0.25, 0.5],
                             generator=torch.Generator().manual_seed(3), **kwargs)
    # same-kernel: integer counts: the same draws and batches
    assert torch.equal(seq.counts_selection, fixed.counts_selection)
    # same-kernel: integer counts: the same draws and batches
    assert torch.equal(seq.counts_estimation, fixed.counts_estimation)
    # same-kernel: the same counts, then the same radius formula
    assert torch.equal(seq.label, fixed.label) and torch.equal(seq.radius, fixed.radius)
    assert torch.equal(seq.p_a_lower, fixed.p_a_lower)  # same-kernel: the same counts, then the same bound
    assert seq.num_samples.tolist() == [720] * 5 and fixed.num_samples is None
    assert (seq.label != ABSTAIN).any() and (seq.label == ABSTAIN).any()  # both branches compared


def test_one_look_equals_certify_on_the_linear_toy_with_normalized_noise():
    from art_ext import NormalizedNoise

    model, x = linear_problem([0.3, 1.0, 2.5, -1.2])
    space = NormalizedNoise(mean=(0.5,), std=(0.5,))
    kwargs = dict(n0=50, sigma=0.4, alpha=0.001, num_classes=2, batch_size=999, noise_space=space)
    fixed = certify(model, x, n=5000, generator=torch.Generator().manual_seed(1), **kwargs)
    seq = certify_sequential(model, x, n_max=5000, looks=[5000], radii=[0.1], method="staged_cp",
                             generator=torch.Generator().manual_seed(1), **kwargs)
    # same-kernel: the same draws, batches and counts, then the same radius formula
    assert torch.equal(seq.radius, fixed.radius) and torch.equal(seq.label, fixed.label)
    # same-kernel: the same counts, then the same radius formula
    assert torch.equal(seq.radius_noise_space, fixed.radius_noise_space)
    # same-kernel: integer counts: the same draws and batches
    assert torch.equal(seq.counts_estimation, fixed.counts_estimation)


# ---------------------------------------------------------------- forward passes


@pytest.mark.parametrize("method", ["staged_cp", "mixture_cs"])
def test_num_samples_are_the_forward_passes_each_image_received(method):
    model, x = linear_problem([0.05, 0.6, 1.1, 3.0, -2.2])
    kwargs = dict(sigma=0.25, alpha=0.001, radii=[0.25, 0.5, 0.75], n0=30, n_max=20_000, num_classes=2,
                  batch_size=1000, method=method)
    for i in range(len(x)):  # one image per call: its recorder sees exactly its passes
        recorder = CallRecorder(model).eval()
        certs = certify_sequential(recorder, x[i : i + 1], generator=torch.Generator().manual_seed(i), **kwargs)
        assert certs.num_samples.tolist() == [recorder.samples]
        assert int(certs.counts_estimation.sum()) == recorder.samples - 30
    recorder = CallRecorder(model).eval()
    certs = certify_sequential(recorder, x, generator=torch.Generator().manual_seed(9), **kwargs)
    looks = set(geometric_looks(20_000))
    if method == "staged_cp":  # the default schedule adds the top look, where unanimous votes certify r = 0.75
        looks.add(_top_look(method, sps.norm.cdf(3.0), DEFAULT_TOP_ALPHA_SHARE * 0.001))
    assert int(certs.num_samples.sum()) == recorder.samples
    assert (certs.counts_estimation.sum(dim=1) == certs.num_samples - 30).all()
    assert all(n - 30 in looks for n in certs.num_samples.tolist())
    # images settle at different looks and finished images drop out of the device batches
    assert len(set(certs.num_samples.tolist())) >= 3
    assert recorder.samples < len(x) * (30 + 20_000) / 2
    assert max(recorder.batch_sizes) <= 1000


def test_device_batches_pack_the_running_images():
    recorder = CallRecorder(tiny_cnn()).eval()
    certs = certify_sequential(recorder, tiny_images(8), sigma=0.25, alpha=0.01, radii=[0.25], n0=10, n_max=2000,
                               num_classes=10, batch_size=512, looks=geometric_looks(2000),
                               generator=torch.Generator().manual_seed(0))
    assert int(certs.num_samples.sum()) == recorder.samples
    # the first look (64 draws for each of 8 images) fills one full batch of 512, not eight batches of 64
    assert recorder.batch_sizes[1] == 512


# ---------------------------------------------------------------- stopping rule on scripted votes


def test_unanimous_votes_stop_at_the_top_look():
    n_max, alpha, sigma = 10_000, 0.001, 0.5
    level = sps.norm.cdf(1.0 / sigma)  # radius 1.0 at sigma 0.5: the highest grid radius
    alpha_top = DEFAULT_TOP_ALPHA_SHARE * alpha
    top_look = math.ceil(math.log(alpha_top) / math.log(level))  # all-votes Clopper-Pearson bound alpha^(1/t)
    schedule = sorted({*geometric_looks(n_max), top_look})
    alphas = _look_alphas(schedule, alpha, DEFAULT_FINAL_ALPHA_SHARE, top_look, DEFAULT_TOP_ALPHA_SHARE)
    assert alphas.sum() == pytest.approx(alpha, rel=1e-12) and alphas[schedule.index(top_look)] == alpha_top
    # no earlier look certifies radius 1.0 with its share of alpha: the image stops exactly at the top look
    assert all(a ** (1 / t) < level for t, a in zip(schedule, alphas, strict=True) if t < top_look)
    certs, base = scripted(torch.ones(10), torch.ones(n_max), sigma=sigma, alpha=alpha, radii=[0.25, 0.5, 1.0],
                           n_max=n_max)
    assert certs.num_samples.item() == 10 + top_look == base.position
    assert certs.label.item() == 1 and certs.radius.item() >= 1.0
    assert certs.p_a_lower.item() == pytest.approx(alpha_top ** (1 / top_look), rel=1e-12)
    # without a top look the same votes run on to a later look of the geometric schedule
    plain, _ = scripted(torch.ones(10), torch.ones(n_max), sigma=sigma, alpha=alpha, radii=[0.25, 0.5, 1.0],
                        n_max=n_max, top_alpha_share=0.0)
    assert plain.num_samples.item() > certs.num_samples.item() and plain.radius.item() >= 1.0


def test_look_alphas_sum_to_alpha():
    assert _look_alphas((100,), 0.01, 0.75).tolist() == [0.01]
    spread = _look_alphas((10, 20, 30, 40), 0.01, 0.75)
    assert spread.tolist() == pytest.approx([0.01 * 0.25 / 3] * 3 + [0.0075])
    with_top = _look_alphas((10, 20, 30, 40), 0.01, 0.75, top_look=20, top_share=0.2)
    assert with_top.tolist() == pytest.approx([0.00025, 0.002, 0.00025, 0.0075])
    only_top = _look_alphas((20, 40), 0.01, 0.75, top_look=20, top_share=0.2)  # no other look: the rest goes last
    assert only_top.tolist() == pytest.approx([0.002, 0.008])


@pytest.mark.parametrize("misses, votes, left, allowed",
                         [(0, 500, 1000, 2), (3, 6097, 3900, 3), (12, 988, 9000, 150), (5, 95, 0, 7)])
def test_predictive_success_is_the_posterior_mean_of_the_binomial_chance(misses, votes, left, allowed):
    from scipy import integrate

    def integrand(q):
        return sps.binom.cdf(allowed - misses, left, q) * sps.beta.pdf(q, 0.5 + misses, 0.5 + votes)

    want = integrate.quad(integrand, 0, 1, limit=200, points=[1e-4, 1e-2])[0]
    got = _predictive_success(np.array([misses]), np.array([votes]), left, np.array([allowed]))[0]
    assert got == pytest.approx(want, abs=1e-6)


def test_predictive_success_is_zero_once_too_many_draws_missed():
    assert _predictive_success(np.array([4]), np.array([96]), 900, np.array([3]))[0] == 0.0  # already too many misses


def test_low_votes_stop_early_and_abstain():
    votes = (torch.arange(10_000) % 10 < 3).long()  # 30% for the selected class 1
    certs, base = scripted(torch.ones(10), votes, radii=[0.0, 0.5], n_max=10_000)
    assert certs.label.item() == ABSTAIN and certs.radius.item() == 0.0
    assert certs.num_samples.item() <= 10 + 144 and base.position == certs.num_samples.item()


def test_votes_between_grid_levels_stop_when_the_next_level_is_out_of_reach():
    # 90% votes: radius 0.25 (level 0.69) is reached, radius 1.0 (level 0.977) is not and never will be
    votes = (torch.arange(10_000) % 10 != 0).long()
    certs, _ = scripted(torch.ones(10), votes, radii=[0.25, 1.0], n_max=10_000)
    assert certs.label.item() == 1 and 0.25 <= certs.radius.item() < 1.0
    assert certs.num_samples.item() < 1000


def test_a_level_that_n_max_cannot_certify_stops_the_image_before_n_max():
    # 12 failures per 10,000 votes (p_A = 0.9988 > Phi(3) = 0.99865): radius 0.5 at sigma 0.25 (level Phi(2)) is
    # certified early; radius 0.75 (level Phi(3)) is below p_A, yet n_max = 10,000 draws could never certify it
    # (fixed-n CERTIFY on the same votes stops short of it: that takes at most 3 failures), so the image stops at
    # the first look after its 4th miss (draw 2,900), not at n_max
    votes = torch.ones(10_000, dtype=torch.long)
    votes[torch.arange(12) * 833 + 400] = 0
    kwargs = dict(sigma=0.25, radii=[0.5, 0.75], n_max=10_000)
    certs, base = scripted(torch.ones(10), votes, **kwargs)
    fixed, _ = scripted(torch.ones(10), votes, looks=(10_000,), **kwargs)
    assert fixed.label.item() == 1 and 0.5 <= fixed.radius.item() < 0.75  # n_max itself cannot reach 0.75
    assert certs.label.item() == 1 and 0.5 <= certs.radius.item() < 0.75
    assert certs.num_samples.item() == base.position <= 10 + 3300
    # a rule that stops only once an upper bound on p_A is below the level could not stop it: p_A is above the level
    assert votes.double().mean().item() > sps.norm.cdf(3.0)


def test_futility_trades_draws_only():
    votes = torch.ones(10_000, dtype=torch.long)
    votes[torch.arange(12) * 833 + 400] = 0
    kwargs = dict(sigma=0.25, radii=[0.5, 0.75], n_max=10_000)
    loose, _ = scripted(torch.ones(10), votes, futility=0.5, **kwargs)
    default, _ = scripted(torch.ones(10), votes, **kwargs)
    off, _ = scripted(torch.ones(10), votes, futility=0.0, **kwargs)
    assert loose.num_samples.item() < default.num_samples.item() < off.num_samples.item() == 10 + 10_000
    assert loose.label.item() == default.label.item() == off.label.item() == 1


def test_unreachable_grid_radii_are_named_and_skipped():
    with pytest.warns(RuntimeWarning, match=r"radii \[5.0\] can never be certified"):
        certs, _ = scripted(torch.ones(10), torch.ones(10_000), radii=[0.5, 5.0], n_max=10_000)
    assert certs.radius.item() >= 0.5 and certs.num_samples.item() < 500  # it did not chase radius 5 to n_max


def test_n_max_that_can_never_certify_warns_and_abstains():
    with pytest.warns(RuntimeWarning, match="can never certify"):
        certs, _ = scripted(torch.ones(5), torch.ones(8), radii=[0.5], n_max=8, looks=(4, 8))
    assert certs.label.item() == ABSTAIN and certs.num_samples.item() == 5 + 4


def test_same_seed_same_certificates_and_cat_keeps_num_samples():
    model, x = linear_problem([0.2, 1.0, 2.0])
    kwargs = dict(sigma=0.25, alpha=0.01, radii=[0.25, 0.5], n0=20, n_max=5000, num_classes=2, batch_size=333)
    a = certify_sequential(model, x, generator=torch.Generator().manual_seed(4), **kwargs)
    b = certify_sequential(model, x, generator=torch.Generator().manual_seed(4), **kwargs)
    # same-kernel: the same call twice, same seed
    assert torch.equal(a.radius, b.radius) and torch.equal(a.num_samples, b.num_samples)
    both = Certificates.cat([a, b])
    assert both.num_samples.tolist() == a.num_samples.tolist() * 2 and both.n == 5000
    with pytest.raises(ValueError, match="only some have num_samples"):
        Certificates.cat([a, certify(model, x, n0=20, n=5000, sigma=0.25, alpha=0.01, num_classes=2,
                                     batch_size=333)])


# ---------------------------------------------------------------- the confidence sequence


@pytest.mark.parametrize("k, t", [(0, 10), (3, 10), (10, 10), (480, 500), (9990, 10_000), (10_000, 10_000)])
def test_mixture_bounds_are_the_ends_of_the_confidence_set(k, t):
    alpha = 0.001
    lower, upper = _mixture_bounds(np.array([float(k)]), t, alpha)
    p = np.linspace(1e-9, 1 - 1e-9, 2_000_001)
    log_m = (sps.betabinom.logpmf(k, t, 0.5, 0.5) - sps.binom.logpmf(k, t, p))  # log M_t(p): mixture / point lik.
    inside = p[log_m < math.log(1 / alpha)]
    assert lower[0] <= inside.min() + 1e-12 and inside.min() - lower[0] < 1e-6
    assert upper[0] >= inside.max() - 1e-12 and upper[0] - inside.max() < 1e-6


def test_mixture_cs_all_votes_cap_is_looser_than_fixed_n():
    certs, _ = scripted(torch.ones(10), torch.ones(10_000), radii=[10.0], n_max=10_000, method="mixture_cs",
                        looks=(10_000,))
    fixed, _ = scripted(torch.ones(10), torch.ones(10_000), radii=[10.0], n_max=10_000, looks=(10_000,))
    assert certs.radius.item() / 0.5 == pytest.approx(3.034, abs=0.001)
    assert fixed.radius.item() / 0.5 == pytest.approx(3.199, abs=0.001)


# ---------------------------------------------------------------- input errors, before any sampling


@pytest.mark.parametrize("change, error, match", [
    (dict(radii=[]), ValueError, "radii must be a non-empty"),
    (dict(radii=[0.5, -0.1]), ValueError, "radii must be a non-empty sequence of finite"),
    (dict(radii=[float("nan")]), ValueError, "radii"),
    (dict(radii=0.5), TypeError, "radii must be a sequence"),
    (dict(method="cohen"), ValueError, "method must be one of"),
    (dict(looks=(100, 50, 1000)), ValueError, "strictly increasing"),
    (dict(looks=(100, 500)), ValueError, "last look must be n_max=1000"),
    (dict(looks=(0, 1000)), ValueError, "ints >= 1"),
    (dict(looks=(10.0, 1000)), ValueError, "ints >= 1"),
    (dict(looks=[]), TypeError, "non-empty sequence"),
    (dict(final_alpha_share=0.0), ValueError, "final_alpha_share must be a number in"),
    (dict(final_alpha_share=1.0), ValueError, "leave no alpha for the other looks"),
    (dict(final_alpha_share=0.7, top_alpha_share=0.3), ValueError, "leave no alpha for the other looks"),
    (dict(final_alpha_share=0.5, method="mixture_cs"), ValueError, "spends alpha once"),
    (dict(top_alpha_share=0.1, method="mixture_cs"), ValueError, "spends alpha once"),
    (dict(top_alpha_share=1.0), ValueError, r"top_alpha_share must be a number in \[0, 1\)"),
    (dict(top_alpha_share=0.1, looks=(100, 1000)), ValueError, "places a look of its own"),
    (dict(futility=1.0), ValueError, r"futility .* must be a number in \[0, 1\)"),
    (dict(futility=-0.1), ValueError, "futility"),
    (dict(futility=True), ValueError, "futility"),
    (dict(n_max=0), ValueError, "n_max must be >= 1"),
    (dict(n0=0), ValueError, "n0 must be >= 1"),
    (dict(alpha=1.0), ValueError, "alpha must be in the open interval"),
    (dict(sigma=-0.1), ValueError, "sigma must be finite"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(num_classes=1), ValueError, "num_classes must be an int >= 2"),
    (dict(x=torch.full((1, 1, 4, 4), 1.5)), ValueError, "outside the declared range"),
])
def test_bad_inputs_are_refused_before_sampling(change, error, match):
    recorder = CallRecorder(tiny_cnn()).eval()
    kwargs = dict(x=tiny_images(2), sigma=0.25, alpha=0.001, radii=[0.25, 0.5], n0=10, n_max=1000, num_classes=10,
                  batch_size=100)
    kwargs.update(change)
    with pytest.raises(error, match=match):
        certify_sequential(recorder, **kwargs)
    assert recorder.batch_sizes == []


def test_a_base_that_is_not_a_fixed_function_is_refused():
    model = tiny_cnn(batchnorm=True).train()
    with pytest.raises(ValueError, match="training mode"):
        certify_sequential(model, tiny_images(1), sigma=0.25, alpha=0.001, radii=[0.5], n0=10, n_max=100,
                           num_classes=10, batch_size=100)
    assert model.training  # untouched


def test_nonfinite_logits_are_reported():
    class Broken(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 2)
            out[:, 1] = float("nan")
            return out

    with pytest.raises(ValueError, match="NaN or infinite logits"):
        certify_sequential(Broken().eval(), tiny_images(1), sigma=0.25, alpha=0.001, radii=[0.5], n0=10,
                           n_max=100, num_classes=2, batch_size=100)


# ---------------------------------------------------------------- soundness


SOUNDNESS_MARGINS = [1.03, 2.02, 1.01, 2.01, 3.01, -1.02, 0.04]


def soundness_failures(method, trials, *, sigma=0.25, alpha=0.05, default_looks=False, margins=SOUNDNESS_MARGINS):
    """(radii above the true radius, wrong labels, stopping times [trials, images]) over ``trials`` seeds.

    Adversarial stopping: p_A just above the grid levels (margins 1, 2, 3 in sigma units are the radii 0.25, 0.5,
    0.75), so the running bound hovers near a level and the stopping rule keeps looking; plus one image near 1/2."""
    model, x = linear_problem(margins, sigma)
    true_radius, true_class = model.true_radius(x), model.true_class(x)
    violations = wrong = 0
    stops = []
    for seed in range(trials):
        certs = certify_sequential(model, x, sigma=sigma, alpha=alpha, radii=[0.25, 0.5, 0.75], n0=32,
                                   n_max=4000, num_classes=2, batch_size=8192, method=method,
                                   looks=None if default_looks else geometric_looks(4000, first=16, ratio=1.5),
                                   generator=torch.Generator().manual_seed(seed))
        certified = certs.label != ABSTAIN
        violations += int(((certs.radius > true_radius) & certified).sum())
        wrong += int((certified & (certs.label != true_class)).sum())
        stops.append(certs.num_samples)
    return violations, wrong, torch.stack(stops)


@pytest.mark.statistical
@pytest.mark.filterwarnings("ignore:radii \\[0.75\\] can never be certified")
@pytest.mark.parametrize("method", ["staged_cp", "mixture_cs"])
def test_radius_above_the_true_radius_or_wrong_label_at_most_alpha_often(method):
    alpha, trials = 0.05, 80
    violations, wrong, stops = soundness_failures(method, trials, alpha=alpha)
    limit = sps.binom.ppf(1 - FALSE_FAILURE, trials * len(SOUNDNESS_MARGINS), alpha)
    assert violations <= limit, f"{violations} radii above the true radius (allowed {limit:.0f})"
    assert wrong <= limit
    assert (stops.float().std(dim=0) > 0).sum() >= 3  # the stopping times did vary across seeds


@pytest.mark.statistical
def test_the_default_schedule_with_its_top_look_is_sound():
    alpha, trials = 0.05, 80
    margins = [*SOUNDNESS_MARGINS, 3.6]  # 3.6: no miss in 3,410 draws about half of the time
    violations, wrong, stops = soundness_failures("staged_cp", trials, alpha=alpha, default_looks=True,
                                                  margins=margins)
    limit = sps.binom.ppf(1 - FALSE_FAILURE, trials * len(margins), alpha)
    assert violations <= limit, f"{violations} radii above the true radius (allowed {limit:.0f})"
    assert wrong <= limit
    assert (stops == 32 + 3410).sum() >= 10  # images did stop at the top look


@pytest.mark.statistical
def test_the_soundness_check_catches_a_bound_that_ignores_the_looks(monkeypatch):
    """The same procedure with all of alpha spent at every look (no union bound): the check above fails."""
    import art_ext.smoothing.sequential as sequential

    monkeypatch.setattr(sequential, "_look_alphas", lambda schedule, alpha, *args: np.full(len(schedule), alpha))
    alpha, trials = 0.05, 80
    violations, _, _ = soundness_failures("staged_cp", trials, alpha=alpha)
    assert violations > sps.binom.ppf(1 - FALSE_FAILURE, trials * len(SOUNDNESS_MARGINS), alpha)
