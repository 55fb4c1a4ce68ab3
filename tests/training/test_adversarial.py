import pytest
import torch

from art_ext import zoo
from art_ext.data import load_digits
from art_ext.models import SmallCNN
from art_ext.training import AdversarialTrainConfig, accuracy, robust_accuracy, train_adversarial, train_classifier
from art_ext.training.classifier import TrainConfig


def test_config_validation_and_eps_ramp():
    cfg = AdversarialTrainConfig(epochs=10, eps=0.5, eps_ramp=0.3, norm=2)
    assert cfg.norm == "l2"
    assert [round(cfg.epoch_eps(e), 4) for e in range(5)] == [0.125, 0.25, 0.375, 0.5, 0.5]
    assert AdversarialTrainConfig(epochs=4, eps=0.1, eps_ramp=0.0).epoch_eps(0) == 0.1
    for bad in ({"eps": 0.0}, {"eps_ramp": 1.0}, {"attack_steps": 0}, {"step_factor": -1.0}, {"norm": "l1"}):
        with pytest.raises(ValueError):
            AdversarialTrainConfig(**bad)


def test_adversarial_training_is_deterministic():
    torch.set_num_threads(1)
    data, val = load_digits("train").head(100), load_digits("val").head(20)
    cfg = AdversarialTrainConfig(epochs=1, batch_size=50, max_shift=1, eps=0.5, attack_steps=2, eps_ramp=0.0,
                                 val_attack_steps=2, seed=3)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SmallCNN(width=4)
        train_adversarial(model, data, cfg, val=val)
        states.append(model.state_dict())
    # same-kernel: two trainings with the same seed on this machine
    assert all(torch.equal(a, b) for a, b in zip(states[0].values(), states[1].values(), strict=True))


@pytest.mark.slow
def test_tiny_adversarial_training_keeps_best_val_epoch_and_beats_standard_training_under_attack():
    torch.set_num_threads(1)
    data, val = load_digits("train").head(400), load_digits("val").head(100)
    recipe = dict(epochs=5, batch_size=50, lr=5e-3, max_shift=0, seed=0)
    at_cfg = AdversarialTrainConfig(**recipe, eps=0.5, norm="l2", attack_steps=3, eps_ramp=0.2, val_attack_steps=5)
    torch.manual_seed(0)
    model = SmallCNN(width=8)
    result = train_adversarial(model, data, at_cfg, val=val)
    assert not model.training
    assert result["val_robust"][0] is None and all(v is not None for v in result["val_robust"][1:])  # ramp epoch
    kept = max(v for v in result["val_robust"] if v is not None)
    assert result["val_robust"][result["best_epoch"]] == kept
    attack = at_cfg.attack(0.5, 5)
    assert robust_accuracy(model, val, attack, generator=torch.Generator().manual_seed(1)) == kept  # best weights
    torch.manual_seed(0)
    standard = SmallCNN(width=8)
    train_classifier(standard, data, TrainConfig(**recipe))
    assert accuracy(model, val) > 0.6
    robust_at = robust_accuracy(model, val, attack, generator=torch.Generator().manual_seed(1))
    robust_std = robust_accuracy(standard, val, attack, generator=torch.Generator().manual_seed(1))
    assert robust_at > robust_std + 0.15  # measured 0.60 vs 0.29


def test_early_stopping_needs_validation_data():
    with pytest.raises(ValueError, match="validation split"):
        train_adversarial(SmallCNN(width=4), load_digits("train").head(10), AdversarialTrainConfig(epochs=1))


def test_pgd_zoo_entries_are_registered_additively():
    l2, linf = zoo.get_entry("digits_cnn_pgd_l2"), zoo.get_entry("digits_cnn_pgd_linf")
    assert isinstance(l2.train, AdversarialTrainConfig) and (l2.train.norm, l2.train.eps) == ("l2", 0.5)
    assert (linf.train.norm, linf.train.eps) == ("linf", 0.1)
    assert zoo.get_entry("digits_cnn").fingerprint() == "27a4d87b4c5c"  # existing recipes untouched
    assert l2.fingerprint() != zoo.get_entry("digits_cnn").fingerprint()
