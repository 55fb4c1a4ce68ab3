"""Properties every attack must have: threat model respected, eps=0 is the identity, seeded runs repeat, targeted
runs move toward the target, invalid parameters are refused with errors naming the value."""

from __future__ import annotations

import pytest
import torch

from art_ext.attacks import (
    EPGDConfig,
    NAttackConfig,
    PGDConfig,
    SmoothAdvConfig,
    bpda_pgd,
    epgd,
    nattack,
    pgd,
    sane_config,
    smoothadv_pgd,
    table_v_config,
)
from art_ext.ops import norms


def _quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 4) / 4


def run_attack(name: str, model, x, y, *, eps: float, norm: str, targeted: bool = False, seed: int = 0,
               steps: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    step = 2.5 * eps / steps if eps > 0 else 0.1
    if name == "pgd":
        return pgd(model, x, y, PGDConfig(eps, step, steps, norm, targeted, num_random_init=1), generator=g)
    if name == "bpda_pgd":
        return bpda_pgd(model, x, y, PGDConfig(eps, step, steps, norm, targeted), defence=_quantise, generator=g)
    if name == "epgd":
        config = EPGDConfig(eps, step, sigma=0.1, max_iter=steps, norm=norm, targeted=targeted, eot_samples=3)
        return epgd(model, x, y, config, generator=g)
    if name == "smoothadv":
        config = SmoothAdvConfig(eps, sigma=0.1, max_iter=steps, norm=norm, targeted=targeted, num_noise=3)
        return smoothadv_pgd(model, x, y, config, generator=g)
    if name == "nattack":
        config = NAttackConfig(eps, max_iter=12, norm=norm, pop_size=20, targeted=targeted, check_every=3)
        return nattack(model, x, y, config, generator=g).x_adv
    raise AssertionError(name)


ATTACKS = ["pgd", "bpda_pgd", "epgd", "smoothadv", "nattack"]


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("name", ATTACKS)
def test_output_in_ball_and_box(name, norm, tiny_model, batch):
    x, y = batch
    eps = 0.6 if norm == "l2" else 0.1
    x_adv = run_attack(name, tiny_model, x, y, eps=eps, norm=norm)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert (norms.lp_norm(x_adv - x, norm) <= eps + 1e-5).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # same-kernel: asserts a difference (the attack moved)
    assert not torch.equal(x_adv, x)  # it did move


@pytest.mark.parametrize("name", ATTACKS)
def test_eps_zero_returns_x(name, tiny_model, batch):
    x, y = batch
    # same-kernel: eps = 0 projects delta to delta * 0, so x + 0 == x exactly
    assert torch.equal(run_attack(name, tiny_model, x, y, eps=0.0, norm="l2"), x)


@pytest.mark.parametrize("name", ATTACKS)
def test_same_seed_same_output(name, tiny_model, batch):
    x, y = batch
    a = run_attack(name, tiny_model, x, y, eps=0.5, norm="l2", seed=7)
    b = run_attack(name, tiny_model, x, y, eps=0.5, norm="l2", seed=7)
    assert torch.equal(a, b)  # same-kernel: the same call twice, same seed; the second check asserts a difference
    if name in ("epgd", "smoothadv", "nattack", "pgd"):  # these consume randomness: another seed differs
        c = run_attack(name, tiny_model, x, y, eps=0.5, norm="l2", seed=8)
        assert not torch.equal(a, c)  # same-kernel: asserts a difference (another seed)


@pytest.mark.parametrize("name", ATTACKS)
def test_targeted_moves_toward_target(name, tiny_model, batch):
    x, _ = batch
    target = (tiny_model(x).argmax(1) + 1) % 5  # never the clean prediction
    x_adv = run_attack(name, tiny_model, x, target, eps=3.0, norm="l2", targeted=True, steps=20)
    with torch.no_grad():
        before = tiny_model(x).log_softmax(1).gather(1, target[:, None])
        after = tiny_model(x_adv).log_softmax(1).gather(1, target[:, None])
    assert (after > before).float().mean() >= 5 / 6
    assert (tiny_model(x_adv).argmax(1) == target).sum() >= 3  # at least half reach the target


def test_table_v_preset_warns_and_sane_preset_reaches_eps():
    with pytest.warns(RuntimeWarning, match=r"20 \* 0.01 = 0.2 < eps = 0.5"):
        config = table_v_config()
    assert (config.eps, config.eps_step, config.max_iter, config.norm) == (0.5, 0.01, 20, "l2")
    sane = sane_config()
    assert sane.max_iter * sane.eps_step >= sane.eps and sane.eps_step == pytest.approx(0.0625)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: PGDConfig(eps=-0.1, eps_step=0.1), r"eps .*-0\.1"),
        (lambda: PGDConfig(eps=0.1, eps_step=0.1, norm=1), r"norm 1"),
        (lambda: EPGDConfig(eps=0.1, eps_step=0.1, sigma=-1.0), r"sigma .*-1\.0"),
        (lambda: EPGDConfig(eps=0.1, eps_step=0.1, sigma=0.1, eot_samples=0), r"eot_samples .*0"),
        (lambda: SmoothAdvConfig(eps=0.1, sigma=0.1, noise="once"), r"noise must be one of .*'once'"),
        (lambda: SmoothAdvConfig(eps=0.1, sigma=0.1, aggregate="mean"), r"aggregate .*'mean'"),
        (lambda: SmoothAdvConfig(eps=0.1, sigma=0.1, num_noise=0), r"num_noise .*0"),
        (lambda: SmoothAdvConfig(eps=0.1, sigma=0.1, max_iter=2.5), r"max_iter .*2\.5"),
        (lambda: NAttackConfig(eps=0.1, pop_size=1), r"pop_size .*1"),
        (lambda: NAttackConfig(eps=0.1, sigma=0.0), r"sigma .*0\.0"),
        (lambda: NAttackConfig(eps=0.1, max_queries=0), r"max_queries .*0"),
        (lambda: NAttackConfig(eps=0.1, l2_sphere=True), r"l2_sphere.*'linf'"),
    ],
)
def test_invalid_parameters_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_noise_space_must_be_a_noise_space():
    with pytest.raises(TypeError, match=r"noise_space must be PixelNoise\(\), NormalizedNoise.* got tuple"):
        EPGDConfig(eps=0.1, eps_step=0.1, sigma=0.1, noise_space=(0.2, 0.3))
    with pytest.raises(TypeError, match=r"noise_space must be .* got str"):
        SmoothAdvConfig(eps=0.1, sigma=0.1, noise_space="normalized")
