"""Noise-injection fine-tuning (+ EPGD mix) and its zoo hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext import zoo
from art_ext.data.base import LabeledImages
from art_ext.training import noise_injection
from art_ext.training.noise_injection import NoiseInjectionConfig, noise_injection_finetune


def tiny_data() -> LabeledImages:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x = (0.3 + 0.4 * y.view(-1, 1, 1, 1) + 0.1 * torch.randn(32, 1, 6, 6, generator=g)).clamp(0, 1)
    return LabeledImages(x, y, ("a", "b"), "toy")


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 36, 2))


@pytest.mark.slow  # ~5 s on a loaded 2-core box (mostly first-use optimizer/autograd setup)
def test_finetune_is_deterministic_trains_and_calls_the_one_epgd(monkeypatch) -> None:
    calls = []
    real_epgd = noise_injection.epgd

    def spy(model, x, y, config, **kw):
        calls.append((config.eot_samples, config.max_iter, config.sigma, any(m.training for m in model.modules())))
        return real_epgd(model, x, y, config, **kw)

    monkeypatch.setattr(noise_injection, "epgd", spy)
    cfg = NoiseInjectionConfig(sigma=0.2, epochs=2, batch_size=16, lr=1e-2, adversarial_weight=0.5, eps=0.05,
                               eps_step=0.02, max_iter=2, eot_samples=3, seed=4)
    models = [tiny_model(), tiny_model()]
    before = [p.clone() for p in models[0].parameters()]
    histories = [noise_injection_finetune(m, tiny_data(), cfg) for m in models]
    assert histories[0] == histories[1] and all(torch.isfinite(torch.tensor(h)).all() for h in histories)
    # same-kernel: two trainings with the same seed on this machine; the last check asserts a difference
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True))
    # same-kernel: asserts a difference (it trained)
    assert any(not torch.equal(a, b) for a, b in zip(before, models[0].parameters(), strict=True))
    assert not any(m.training for m in models[0].modules())  # left in eval mode
    # art_ext.attacks.epgd: eot_samples noisy passes at the training sigma, generated in eval mode; 2 batches x
    # 2 epochs x 2 runs
    assert calls == [(3, 2, 0.2, False)] * 8


def test_noise_only_finetune_skips_the_attack(monkeypatch) -> None:
    monkeypatch.setattr(noise_injection, "epgd", lambda *a, **k: pytest.fail("no attack expected with w = 0"))
    history = noise_injection_finetune(tiny_model(), tiny_data(), NoiseInjectionConfig(sigma=0.2, epochs=1))
    assert len(history) == 1


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="adversarial_weight must be in"):
        NoiseInjectionConfig(sigma=0.2, adversarial_weight=1.5)
    with pytest.raises(ValueError, match="sigma"):
        NoiseInjectionConfig(sigma=0.0)
    with pytest.raises(ValueError, match="eot_samples"):
        NoiseInjectionConfig(sigma=0.2, eot_samples=0)


def test_zoo_finetuned_entry_is_additive() -> None:
    # the foundation entries keep their fingerprints (their cached weights stay valid)
    assert zoo.get_entry("digits_cnn").fingerprint() == "27a4d87b4c5c"
    assert zoo.get_entry("digits_cnn_noise025").fingerprint() == "dae567f567f2"
    entry = zoo.get_entry("digits_cnn_cni")
    assert entry.parent == "digits_cnn_noise025" and entry.finetune.sigma == 0.25
    assert entry.fingerprint() not in {zoo.get_entry(n).fingerprint() for n in zoo.names() if n != entry.name}
