"""Each certified-training loss against a hand computation (research/certified_training.md §1-5 toys), and the
properties that make it that method (SmoothAdv's eps-ball, MACER's vanishing hinge, SmoothMix's indicator, ...)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from art_ext.training.certified import (
    ConsistencyTraining,
    GaussianAugmentation,
    MACERTraining,
    SmoothAdvTraining,
    SmoothMixTraining,
    certified_loss,
    consistency_terms,
    macer_terms,
    mixup_target,
    smoothadv_attack,
    smoothmix_path,
    soft_smoothed_nll,
)

# float32 toys: the reference values were computed in float64; 1e-6 relative covers float32 rounding of softmax/log
TOL = dict(rtol=1e-6, atol=1e-6)


class RowLogits(nn.Module):
    """Ignores its input: row r of the output is ``table[r]`` (so every noisy copy gets hand-chosen logits)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[: x.shape[0]] + 0.0 * x.flatten(1).sum(1, keepdim=True)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_augmentation_is_cross_entropy_on_one_noisy_copy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2, generator=gen(1)), torch.tensor([0, 1, 2, 0, 1])
    loss = certified_loss(model, x, y, GaussianAugmentation(0.5), generator=gen(7))
    noise = 0.5 * torch.randn(x.shape, generator=gen(7))  # the same single draw
    # same-kernel: the same forward on the same noisy tensor
    assert torch.equal(loss, F.cross_entropy(model(x + noise), y))


# ----------------------------------------------------------------------------------------------------------- SmoothAdv
def test_soft_smoothed_nll_matches_the_hand_value() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # two copies of one example
    assert soft_smoothed_nll(logits, torch.tensor([0]), 2).item() == pytest.approx(0.9313302, rel=1e-6)
    assert F.cross_entropy(logits, torch.tensor([0, 0])).item() == pytest.approx(1.0514447, rel=1e-6)
    one = torch.tensor([[0.3, -0.2, 1.0]])  # m = 1: -log softmax_y = CE
    expected = F.cross_entropy(one, torch.tensor([2]))[None]
    torch.testing.assert_close(soft_smoothed_nll(one, torch.tensor([2]), 1), expected, **TOL)


def test_smoothadv_update_is_the_mean_cross_entropy_of_the_m_copies() -> None:
    model = RowLogits(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    loss = certified_loss(model.train(), torch.full((1, 1, 2, 2), 0.5), torch.tensor([0]),
                          SmoothAdvTraining(0.25, eps=0.5, num_steps=3, num_noise_vec=2), generator=gen())
    assert loss.item() == pytest.approx(1.0514447, rel=1e-6)


def test_smoothadv_attack_on_a_linear_model_moves_exactly_eps_along_the_weight_difference() -> None:
    # binary linear model, zero noise: grad_x CE is parallel to (w_1 - w_0) at every point, so T >= 2 steps of 2 eps / T
    # end at x + eps * u (the second step overshoots and is projected back); x = 0.5 keeps the box inactive
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.1, -0.2, 0.3, 0.0], [-0.1, 0.2, 0.0, 0.1]]))
        model[1].bias.zero_()
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.tensor([0])
    direction = (model[1].weight[1] - model[1].weight[0]).detach()
    expected = x + 0.2 * (direction / direction.norm()).view(1, 1, 2, 2)
    for steps in (2, 5):
        x_hat = smoothadv_attack(model, x, y, torch.zeros(2, 1, 2, 2), eps=0.2, num_steps=steps)
        torch.testing.assert_close(x_hat, expected, **TOL)


def test_smoothadv_attack_stays_in_the_eps_ball_and_the_box_and_restores_the_model(tiny_cnn) -> None:
    tiny_cnn.train()
    x = torch.rand(6, 1, 8, 8, generator=gen(2))
    x[0] = 0.0  # box binds
    y = torch.arange(6) % 10
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    for eps in (0.1, 1.0, 4.0):
        noise = 0.25 * torch.randn(18, 1, 8, 8, generator=gen(3))
        x_hat = smoothadv_attack(tiny_cnn, x, y, noise, eps=eps, num_steps=4, generator=gen(4))
        assert float((x_hat - x).flatten(1).norm(dim=1).max()) <= eps * (1 + 1e-6)
        assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
        assert float((x_hat - x).flatten(1).norm(dim=1).max()) > 0  # it moved
    assert tiny_cnn.training and [p.requires_grad for p in tiny_cnn.parameters()] == flags


def test_smoothadv_warmup_grows_eps_by_epoch_and_the_update_uses_the_attack_noise(tiny_cnn) -> None:
    config = SmoothAdvTraining(0.25, eps=1.0, num_steps=2, num_noise_vec=2, warmup=4)
    assert [config.epoch_eps(e) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    seen: list[torch.Tensor] = []
    handle = tiny_cnn.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    x, y = torch.rand(3, 1, 8, 8, generator=gen(5)), torch.tensor([1, 2, 3])
    certified_loss(tiny_cnn.train(), x, y, config, generator=gen(6), epoch=0)
    handle.remove()
    # same-kernel: the label-range probe forwards the first image itself, a copy of the same tensor
    assert torch.equal(seen[0], x[:1])
    seen = seen[1:]
    assert len(seen) == config.num_steps + 1  # T attack forwards, then the update
    noise_attack = seen[0] - x.repeat_interleave(2, dim=0)  # the first attack forward is at x itself
    first_update = seen[-1]
    x_hat = (first_update - noise_attack).view(3, 2, 1, 8, 8)[:, 0]
    # subtraction of the same noise: equal up to float rounding of (x + n) - n
    torch.testing.assert_close(first_update - x_hat.repeat_interleave(2, dim=0), noise_attack, rtol=0, atol=1e-6)
    assert float((x_hat - x).flatten(1).norm(dim=1).max()) <= config.epoch_eps(0) * (1 + 1e-5)


# --------------------------------------------------------------------------------------------------------------- MACER
def test_macer_loss_matches_the_hand_value() -> None:
    # constant logits u for every copy (noise has no effect): F_hat = softmax(u), z_hat = softmax(16 u)
    u = torch.tensor([0.2, 0.1, 0.0])
    model = RowLogits(u.expand(32, 3))
    loss = certified_loss(model.train(), torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 2]),
                          MACERTraining(0.25, beta=16, gamma=8, lbd=12, num_noise_vec=16), generator=gen())
    assert loss.item() == pytest.approx(5.719711, rel=1e-6)  # ART 1.20.1's fit gives the same on this toy
    classification, hinge = macer_terms(u.expand(32, 3), torch.tensor([0, 2]), num_noise_vec=16, sigma=0.25, beta=16,
                                        gamma=8)
    torch.testing.assert_close(classification, torch.tensor([1.0019428, 1.2019428]), **TOL)
    torch.testing.assert_close(hinge, torch.tensor([0.7696280, 0.0]), **TOL)  # example 2 is misclassified: no hinge


def test_macer_hinge_vanishes_beyond_gamma_and_for_saturated_outputs_without_nan_gradients() -> None:
    u = torch.tensor([0.2, 0.1, 0.0]).expand(16, 3)
    _, hinge = macer_terms(u, torch.tensor([0]), num_noise_vec=16, sigma=0.25, beta=16, gamma=1.8)  # xi = 1.843
    assert hinge.item() == 0.0
    _, hinge = macer_terms(u, torch.tensor([0]), num_noise_vec=16, sigma=0.25, beta=16, gamma=1.9)
    assert hinge.item() == pytest.approx(0.125 * (1.9 - 1.8429759), rel=1e-4)
    saturated = torch.tensor([[40.0, 0.0, 0.0], [0.2, 0.1, 0.0]]).repeat_interleave(4, dim=0).requires_grad_(True)
    classification, hinge = macer_terms(saturated, torch.tensor([0, 0]), num_noise_vec=4, sigma=0.5, beta=16,
                                        gamma=8)
    assert hinge[0].item() == 0.0 and hinge[1].item() > 0  # z_hat_y == 1 in float32: dropped
    (classification.mean() + 12 * hinge.mean()).backward()
    assert torch.isfinite(saturated.grad).all()


def test_macer_groups_the_copies_of_each_example() -> None:
    # logits are the input itself: with tiny noise, F_hat of example b must be softmax(x_b), never a mix of examples
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3))
    x = torch.tensor([[0.9, 0.0, 0.0], [0.0, 0.0, 0.9]]).view(2, 1, 1, 3)
    y = torch.tensor([0, 2])
    loss = certified_loss(model, x, y, MACERTraining(1e-6, lbd=0.0, num_noise_vec=4), generator=gen())
    expected = F.cross_entropy(x.flatten(1), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_macer_deferral_switches_the_hinge_on_at_the_given_epoch() -> None:
    model = RowLogits(torch.tensor([0.2, 0.1, 0.0]).expand(16, 3))
    x, y = torch.full((1, 1, 2, 2), 0.5), torch.tensor([0])
    config = MACERTraining(0.25, num_noise_vec=16, deferred_epochs=2)
    early = certified_loss(model, x, y, config, generator=gen(), epoch=1)
    late = certified_loss(model, x, y, config, generator=gen(), epoch=2)
    assert early.item() == pytest.approx(-math.log(0.3671654), rel=1e-6)
    assert late.item() == pytest.approx(early.item() + 12 * 0.7696280, rel=1e-6)


# ----------------------------------------------------------------------------------------------------------- SmoothMix
def test_smoothmix_target_and_kl_match_the_hand_values() -> None:
    target = mixup_target(torch.tensor([[0.3940292, 0.3940292, 0.2119416]]), torch.tensor([0.25]))
    torch.testing.assert_close(target, torch.tensor([[0.3788553, 0.3788553, 0.2422895]]), **TOL)
    assert float(target.sum()) == pytest.approx(1.0, abs=1e-6)
    kl = F.kl_div(torch.tensor([[0.5, 0.2, 0.0]]).log_softmax(1), target, reduction="sum")
    # the hand value is rounded to 7 decimals from an F_hat that is itself rounded: 5e-7 absolute covers both
    assert kl.item() == pytest.approx(0.0091783, abs=5e-7)


def test_smoothmix_without_correct_examples_is_the_clean_cross_entropy() -> None:
    # every copy predicts class 0, labels are 1: the indicator is 0 and L is the CE term exactly
    table = torch.tensor([[2.0, 0.0, 0.5]]).expand(8, 3)
    model = RowLogits(table)
    x, y = torch.rand(4, 1, 2, 2, generator=gen(1)), torch.ones(4, dtype=torch.long)
    loss = certified_loss(model, x, y, SmoothMixTraining(0.25, eta=5.0, num_steps=2, num_noise_vec=2),
                          generator=gen())
    # same-kernel: the CE of the same logits rows in the same order
    assert torch.equal(loss, F.cross_entropy(table, y.repeat_interleave(2)))


def test_smoothmix_path_bounds_and_clean_side(tiny_cnn) -> None:
    x, y = torch.rand(4, 1, 8, 8, generator=gen(2)) * 0.5 + 0.25, torch.tensor([0, 1, 2, 3])
    noise = 0.5 * torch.randn(8, 1, 8, 8, generator=gen(3))
    x_s, x_a = smoothmix_path(tiny_cnn, x, y, noise, step_size=0.3, num_steps=4, mix_step=0, maxnorm=None,
                              maxnorm_s=0.0)
    assert torch.equal(x_s, x)  # same-kernel: mix_step 0 keeps x itself (a copy)
    assert float((x_a - x).flatten(1).norm(dim=1).max()) <= 4 * 0.3 * (1 + 1e-6)
    assert 0.0 <= float(x_a.min()) and float(x_a.max()) <= 1.0
    x_s, x_a = smoothmix_path(tiny_cnn, x, y, noise, step_size=0.3, num_steps=4, mix_step=1, maxnorm=0.5,
                              maxnorm_s=0.1)
    assert float((x_a - x).flatten(1).norm(dim=1).max()) <= 0.5 * (1 + 1e-6)
    assert float((x_s - x).flatten(1).norm(dim=1).max()) <= 0.1 * (1 + 1e-6)
    one_step, _ = smoothmix_path(tiny_cnn, x, y, noise, step_size=0.3, num_steps=1, mix_step=1, maxnorm=None,
                                 maxnorm_s=10.0)
    # the first step moves by alpha (the box does not bind at x in [0.25, 0.75] for a 0.3 step)
    torch.testing.assert_close((one_step - x).flatten(1).norm(dim=1), torch.full((4,), 0.3), rtol=1e-5, atol=0)


def test_smoothmix_config_resolves_step_and_bounds_and_warmup_scales_eta() -> None:
    config = SmoothMixTraining(0.5, eta=2.0, mix_step=1, num_steps=4, warmup=2)
    assert (config.step_size, config.maxnorm_s) == (1.0, 1.0)
    model = RowLogits(torch.tensor([[2.0, 0.0, 0.5]]).expand(4, 3))  # correct for label 0
    x, y = torch.full((4, 1, 2, 2), 0.5), torch.zeros(4, dtype=torch.long)
    ce = F.cross_entropy(model.table.detach(), y)
    half = certified_loss(model, x, y, config, generator=gen(), epoch=0) - ce
    full = certified_loss(model, x, y, config, generator=gen(), epoch=1) - ce
    # same noise and lambda (same seed); the mixup term is weighted by 1/2 at epoch 0 and by 1 from epoch 1
    assert half.item() > 0 and full.item() == pytest.approx(2 * half.item(), rel=1e-5)


# --------------------------------------------------------------------------------------------------------- consistency
def test_consistency_loss_matches_the_hand_value() -> None:
    model = RowLogits(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    loss = certified_loss(model, torch.full((1, 1, 2, 2), 0.5), torch.tensor([0]),
                          ConsistencyTraining(0.25, lbd=10.0, eta=0.5), generator=gen())
    assert loss.item() == pytest.approx(2.5293963, rel=1e-6)
    kl, entropy = consistency_terms(model.table.detach(), 2)
    assert kl.item() == pytest.approx(0.0946573, rel=1e-5) and entropy.item() == pytest.approx(1.0627582, rel=1e-6)


def test_consistency_terms_vanish_for_equal_copies_and_the_target_is_not_detached() -> None:
    equal = torch.tensor([[0.3, -1.0, 2.0]]).repeat(3, 1)
    kl, _ = consistency_terms(equal, 3)
    assert kl.abs().item() < 1e-7
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    kl, _ = consistency_terms(logits, 2)
    (grad,) = torch.autograd.grad(kl.sum(), logits)
    target = logits.softmax(1).mean(0, keepdim=True).detach().expand(2, 3)
    detached = F.kl_div(logits.log_softmax(1), target, reduction="none").sum(1).mean()
    (grad_detached,) = torch.autograd.grad(detached, logits)
    assert not torch.allclose(grad, grad_detached, atol=1e-4)  # the gradient also flows through F_hat


# ------------------------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("make, message", [
    (lambda: GaussianAugmentation(float("nan")), "sigma must be a finite number > 0"),
    (lambda: GaussianAugmentation(True), "sigma must be a finite number > 0"),
    (lambda: SmoothAdvTraining(0.25, eps=0), "eps must be a finite number > 0"),
    (lambda: SmoothAdvTraining(0.25, num_noise_vec=0), "num_noise_vec must be an int >= 1"),
    (lambda: SmoothAdvTraining(0.25, warmup=1.5), "warmup must be an int >= 1"),
    (lambda: MACERTraining(0.25, beta=0), "beta must be a finite number > 0"),
    (lambda: MACERTraining(0.25, lbd=-1), "lbd must be a finite number >= 0"),
    (lambda: MACERTraining(0.25, deferred_epochs=-1), "deferred_epochs must be an int >= 0"),
    (lambda: SmoothMixTraining(0.25, eta=float("inf")), "eta must be a finite number >= 0"),
    (lambda: SmoothMixTraining(0.25, step_size=0.0), "step_size must be a finite number > 0"),
    (lambda: SmoothMixTraining(0.25, maxnorm=-1.0), "maxnorm must be a finite number > 0"),
    (lambda: SmoothMixTraining(0.25, mix_step=-1), "mix_step must be an int in [0, num_steps=10]"),
    (lambda: ConsistencyTraining(0.25, num_noise_vec=1), "num_noise_vec must be an int >= 2"),
    (lambda: ConsistencyTraining(0.25, eta=-0.5), "eta must be a finite number >= 0"),
])
def test_bad_configs_raise_one_line_errors(make, message) -> None:
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_configs_are_frozen() -> None:
    config = MACERTraining(0.25)
    with pytest.raises(AttributeError):
        config.sigma = 0.5  # type: ignore[misc]
