"""Algorithm-specific checks: BPDA straight-through, EPGD(M=1) == PGD, SmoothAdv's objective and fixed noise,
NAttack's margin and query budget, and the randomized-defence scoring protocol."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from art_ext.attacks import (
    EPGDConfig,
    NAttackConfig,
    PGDConfig,
    SmoothAdvConfig,
    bpda,
    epgd,
    nattack,
    pgd,
    score_randomized,
    smoothadv_pgd,
)
from art_ext.attacks.epgd import noisy_cross_entropy
from art_ext.attacks.nattack import margin_loss
from art_ext.attacks.smoothadv import draw_noise, smoothadv_loss
from art_ext.ops import norms
from art_ext.smoothing import NormalizedNoise
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams


# ---- BPDA ----------------------------------------------------------------------------------------------------------
def test_bpda_value_is_defence_and_gradient_is_identity():
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    out = bpda(lambda z: torch.round(z * 4) / 4)(x)
    # same-kernel: elementwise ops only, x + (d - x) == d exactly (no reduction)
    assert torch.equal(out, torch.round(x * 4) / 4)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    # same-kernel: elementwise: the identity backward passes the weights through
    assert torch.equal(grad, weights)  # d/dx of identity: the incoming gradient unchanged (round alone gives 0)


def test_bpda_gradient_is_the_surrogates():
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = bpda(torch.sign, surrogate=torch.tanh)(x)
    assert torch.equal(out, torch.sign(x))  # same-kernel: elementwise: t + (sign - t) rounds to sign exactly
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, 1 - torch.tanh(x) ** 2, rtol=0, atol=1e-7)


def test_bpda_registers_module_defences(tiny_model):
    wrapped = nn.Sequential(bpda(nn.Dropout(0.5)), tiny_model)
    wrapped.train()
    assert wrapped[0].defence.training
    wrapped.eval()
    assert not wrapped[0].defence.training and not tiny_model.training


# ---- EPGD ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("restarts", [0, 2])
def test_epgd_one_sample_on_deterministic_model_equals_pgd(tiny_model, batch, norm, restarts):
    x, y = batch
    eps = 0.5 if norm == "l2" else 0.05
    ours = epgd(tiny_model, x, y, EPGDConfig(eps, eps / 4, sigma=0.0, max_iter=6, norm=norm, eot_samples=1,
                                             num_random_init=restarts), generator=torch.Generator().manual_seed(3))
    ref = pgd(tiny_model, x, y, PGDConfig(eps, eps / 4, 6, norm, num_random_init=restarts),
              generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, ref)  # same-kernel: sigma 0 and M = 1 run pgd's own ops on the same data in the same order


def test_epgd_gradient_is_mean_of_single_draw_gradients(tiny_model, batch):
    """The loss PGD ascends for EPGD (the mean of M one-draw losses) has the gradient of the mean of the M one-draw
    gradients taken with the same noise (algorithms.md §11.5); call c uses draws c*M .. c*M + M - 1 of each image's
    keyed stream."""
    x, y = batch
    x = x.clone().requires_grad_(True)
    keys = NoiseKeys.from_seed(5, range(x.shape[0]))
    loss = noisy_cross_entropy(0.3, keys, samples=4)
    streams = NoiseStreams(keys, x.shape[1:])
    for call in range(2):
        (g_m,) = torch.autograd.grad(loss(tiny_model, x, y).sum(), x)
        noise = 0.3 * streams.draw(4 * call, 4).transpose(0, 1)  # [4, B, ...], the same draws, in order
        singles = [torch.autograd.grad(F.cross_entropy(tiny_model(x + n), y, reduction="sum"), x)[0] for n in noise]
        # the same values summed in another order (one mean vs a mean of separate gradients): float32 tolerance
        torch.testing.assert_close(g_m, torch.stack(singles).mean(0), rtol=1e-5, atol=1e-7)


def test_normalized_noise_space_scales_per_channel():
    x = torch.zeros(2, 3, 4, 4)
    space = NormalizedNoise(mean=(0.5, 0.5, 0.5), std=(0.1, 0.2, 0.4))
    noise = draw_noise(x, 2000, 0.5, space, keys=NoiseKeys.from_seed(0, range(2)))  # [2000, 2, 3, 4, 4]
    observed = noise.transpose(0, 2).flatten(1).std(1)  # per channel, pixel units
    torch.testing.assert_close(observed, torch.tensor([0.05, 0.1, 0.2]), rtol=0.03, atol=0)  # ~48k draws each


def test_epgd_noise_space_is_the_smoothing_draw():
    """EPGD adds the noise that smoothing draws (one vocabulary for the noise space, one keyed stream per image):
    a recording model sees x + sigma * std_c * e, e the images' keyed unit samples 0, 1, ... in order."""
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    space = NormalizedNoise(mean=(0.4, 0.4, 0.4), std=(0.1, 0.2, 0.4))
    keys = NoiseKeys.from_seed(3, range(2))
    seen = []
    model = lambda z: (seen.append(z.detach().clone()), z.flatten(1)[:, :5] * 0)[1]  # noqa: E731
    noisy_cross_entropy(0.5, keys, samples=2, noise_space=space)(model, x, torch.tensor([0, 1]))
    unit = NoiseStreams(keys, x.shape[1:]).draw(0, 2)  # [B, 2, C, H, W]
    scale = 0.5 * torch.tensor(space.std).view(-1, 1, 1)  # [C, 1, 1]
    for j in range(2):  # the same elementwise kernels on the same values: bit for bit
        # same-kernel: the same elementwise ops and attack kernels on the same keyed draws
        assert torch.equal(seen[j], x + scale * unit[:, j]) and not torch.equal(seen[j], x)


# ---- SmoothAdv -----------------------------------------------------------------------------------------------------
def test_smoothadv_losses_match_their_definitions(tiny_model, batch):
    x, y = batch
    noise = 0.4 * torch.randn((5, *x.shape), generator=torch.Generator().manual_seed(0))
    logits = torch.stack([tiny_model(x + n) for n in noise])  # [m, B, K]
    soft = -torch.log(logits.softmax(-1).mean(0).gather(1, y[:, None]).squeeze(1))
    mean_logits = F.cross_entropy(logits.mean(0), y, reduction="none")
    torch.testing.assert_close(smoothadv_loss(noise, "softmax")(tiny_model, x, y), soft)
    torch.testing.assert_close(smoothadv_loss(noise, "logits")(tiny_model, x, y), mean_logits)
    assert (soft - mean_logits).abs().min() > 1e-4  # the two objectives differ for m > 1 ...
    one = noise[:1]
    torch.testing.assert_close(smoothadv_loss(one, "softmax")(tiny_model, x, y),
                               smoothadv_loss(one, "logits")(tiny_model, x, y))  # ... and coincide for m = 1


def test_smoothadv_aggregates_give_different_attacks(tiny_model, batch):
    x, y = batch
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    soft = smoothadv_pgd(tiny_model, x, y, SmoothAdvConfig(0.5, sigma=0.5, num_noise=6), generator=g())
    mean_logits = smoothadv_pgd(tiny_model, x, y, SmoothAdvConfig(0.5, sigma=0.5, num_noise=6, aggregate="logits"),
                                generator=g())
    assert not torch.allclose(soft, mean_logits)


def test_smoothadv_draws_noise_once_and_default_step(tiny_model, batch):
    x, y = batch
    config = SmoothAdvConfig(0.5, sigma=0.25, max_iter=10, num_noise=4)
    assert config.eps_step == pytest.approx(2 * 0.5 / 10)
    drawn = smoothadv_pgd(tiny_model, x, y, config, generator=torch.Generator().manual_seed(9))
    keys = NoiseKeys.draw(torch.Generator().manual_seed(9), x.shape[0])  # the call's keys: one draw of the generator
    noise = draw_noise(x, 4, 0.25, keys=keys.derive("noise"))  # [4, B, ...]
    # same-kernel: the same elementwise ops and attack kernels on the same keyed draws
    assert torch.equal(drawn, smoothadv_pgd(tiny_model, x, y, config, fixed_noise=noise))
    # fixed noise makes the attack a deterministic function: with T steps of 2 eps / T it reaches the boundary
    assert (norms.lp_norm(drawn - x, "l2") > 0.45).any()


def test_smoothadv_rejects_misshaped_noise(tiny_model, batch):
    x, y = batch
    with pytest.raises(ValueError, match=r"fixed_noise must have shape .*\[m, 6, 1, 8, 8\], got \(6, 1, 8, 8\)"):
        smoothadv_pgd(tiny_model, x, y, SmoothAdvConfig(0.5, sigma=0.25), fixed_noise=torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"fixed_noise is given but config.noise is 'fresh'"):
        smoothadv_pgd(tiny_model, x, y, SmoothAdvConfig(0.5, sigma=0.25, noise="fresh"),
                      fixed_noise=torch.zeros(2, *x.shape))


# ---- NAttack -------------------------------------------------------------------------------------------------------
def test_margin_loss_is_per_candidate():
    log_probs = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]]))
    y = torch.tensor([0, 0, 0])
    expected = torch.log(torch.tensor([0.7 / 0.2, 0.5 / 0.4, 0.0 + 1e-30]))  # last one is clipped to 0
    torch.testing.assert_close(margin_loss(log_probs, y, targeted=False), expected.clamp(0, 1000))
    # targeted toward class 2: max_{c != 2} log p_c - log p_2, clipped at 0
    torch.testing.assert_close(margin_loss(log_probs, torch.tensor([2, 2, 2]), targeted=True),
                               torch.log(torch.tensor([7.0, 1.25, 0.6])).clamp(0, 1000))


def test_nattack_l2_sphere_option_puts_candidates_on_the_sphere():
    from art_ext.attacks.nattack import _project

    x = torch.full((3, 1, 4, 4), 0.5)
    w = torch.atanh(torch.full_like(x, 0.2))  # image 0.6, |delta| = 0.1 * 4 = 0.4
    ball = _project(x, w, NAttackConfig(1.0, norm="l2"), __import__("art_ext.types").types.Bounds())
    sphere = _project(x, w, NAttackConfig(1.0, norm="l2", l2_sphere=True), __import__("art_ext.types").types.Bounds())
    torch.testing.assert_close(norms.lp_norm(ball - x, "l2"), torch.full((3,), 0.4))
    torch.testing.assert_close(norms.lp_norm(sphere - x, "l2"), torch.full((3,), 1.0))


@pytest.mark.slow
def test_nattack_lowers_digits_accuracy_within_budget():
    from art_ext import zoo
    from art_ext.data import digits

    model = zoo.load("digits_cnn").module
    data = digits.load_digits("test").head(24)
    budget = 1000
    config = NAttackConfig(eps=0.15, max_iter=100, pop_size=50, max_queries=budget, check_every=2)
    result = nattack(model, data.x, data.y, config, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = (model(data.x).argmax(1) == data.y).float().mean()
        adv = (model(result.x_adv).argmax(1) == data.y).float().mean()
    assert clean >= 0.95 and adv <= clean - 0.5
    assert (result.queries <= budget).all()
    logits = model(result.x_adv)  # [24, 10], one batch; the attack checked success on sub-batches
    top2 = logits.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 1e-4  # a batch of another size may round a near-tie the other way
    assert int(clear.sum()) >= 20
    # same-kernel: bools; the rows whose top two logits are within 1e-4 are left out (argmax of two batchings)
    assert torch.equal(result.success[clear], (logits.argmax(1) != data.y)[clear])  # success = deployed decision


def test_nattack_failures_spend_their_whole_budget_and_never_more():
    from art_ext import zoo
    from art_ext.data import digits

    model = zoo.load("digits_cnn").module
    data = digits.load_digits("test").head(8)
    budget = 200
    config = NAttackConfig(eps=0.02, max_iter=100, pop_size=50, max_queries=budget, check_every=2)  # too small to win
    result = nattack(model, data.x, data.y, config, generator=torch.Generator().manual_seed(0))
    assert (result.queries <= budget).all()
    failed = ~result.success
    assert failed.sum() >= 6 and (result.queries[failed] > budget - 50 - 2).all()  # failures used their whole budget


def test_nattack_counts_queries_exactly(tiny_model, batch):
    x, y = batch
    config = NAttackConfig(eps=1e-4, max_iter=7, pop_size=10, check_every=3)  # too small to succeed
    result = nattack(tiny_model, x, y, config, generator=torch.Generator().manual_seed(0))
    # 1 clean check + 7 populations of 10 + checks after iterations 3, 6 and 7
    assert not result.success.any()
    assert result.queries.tolist() == [1 + 70 + 3] * 6
    capped = nattack(tiny_model, x, y, NAttackConfig(eps=1e-4, max_iter=7, pop_size=10, check_every=3,
                                                      max_queries=35), generator=torch.Generator().manual_seed(0))
    # 1 + 10 + 10 + 10 (+ check at iteration 3) = 32; a 4th population would need 32 + 10 + 1 > 35
    assert capped.queries.tolist() == [32] * 6


# ---- protocol ------------------------------------------------------------------------------------------------------
class _CoinModel(nn.Module):
    """Predicts the label column y_true with probability p per call, class (y+1) % 5 otherwise."""

    def __init__(self, labels: torch.Tensor, p: float, seed: int) -> None:
        super().__init__()
        self.labels, self.p = labels, p
        self.generator = torch.Generator().manual_seed(seed)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        keep = torch.rand(x.shape[0], generator=self.generator) < self.p
        return torch.where(keep, self.labels, (self.labels + 1) % 5)


def test_protocol_mean_and_worst_case_and_mode_restore():
    n, k, p = 400, 5, 0.8
    labels = torch.arange(n) % 5
    model = _CoinModel(labels, p, seed=0).train()
    score = score_randomized(model, torch.zeros(n, 1, 2, 2), labels, draws=k, batch_size=n)
    assert score.correct.shape == (n, k) and score.draws == k
    # binomial checks, each with false-failure rate < 1e-4 (|z| < 4)
    se_mean = math.sqrt(p * (1 - p) / (n * k))
    assert abs(score.mean_accuracy - p) < 4 * se_mean
    worst = p**k
    assert abs(score.worst_case_accuracy - worst) < 4 * math.sqrt(worst * (1 - worst) / n)
    assert model.modes == [False] * k and model.training  # eval while scoring, train flag restored


def test_protocol_on_deterministic_model_and_abstain(tiny_model, batch):
    x, y = batch
    score = score_randomized(tiny_model, x, y, draws=3)
    assert score.mean_accuracy == score.worst_case_accuracy == 1.0
    abstain = score_randomized(lambda z: torch.full((z.shape[0],), -1), x, y, draws=2)
    assert abstain.mean_accuracy == 0.0
    with pytest.raises(ValueError, match="draws must be >= 1, got 0"):
        score_randomized(tiny_model, x, y, draws=0)


class _InputRecorder(nn.Module):
    """Records every input batch; logits are 0 * x plus a constant, so the gradient is exactly zero and the iterate
    stays at x: every recorded row minus x is then the noise drawn for it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(z.detach().clone())
        return 0.0 * z.flatten(1)[:, :3] + torch.tensor([1.0, 0.0, 0.0])


@pytest.mark.parametrize("schedule", ["fixed", "fresh"])
def test_smoothadv_fixed_reuses_and_fresh_redraws_the_noise(schedule):
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    m, steps, sigma = 3, 4, 0.25
    recorder = _InputRecorder()
    config = SmoothAdvConfig(0.5, sigma=sigma, max_iter=steps, num_noise=m, noise=schedule)
    smoothadv_pgd(recorder, x, y, config, generator=torch.Generator().manual_seed(7))
    assert len(recorder.seen) == steps  # one batch of m * B noisy copies per step
    draws = [(z.view(m, *x.shape) - x) for z in recorder.seen]  # [m, B, ...] per step
    keys = NoiseKeys.draw(torch.Generator().manual_seed(7), x.shape[0]).derive("noise")
    if schedule == "fixed":
        expected = [draw_noise(x, m, sigma, keys=keys)] * steps  # draws 0 .. m-1, reused
    else:
        expected = [draw_noise(x, m, sigma, keys=keys, start=t * m) for t in range(steps)]  # draws t*m .. t*m+m-1
    for got, want in zip(draws, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    distinct = {tuple(d.flatten()[:4].tolist()) for d in draws}
    assert len(distinct) == (1 if schedule == "fixed" else steps)
