"""Denoiser training: objectives, frozen classifiers, black-box isolation, determinism and resume."""

import dataclasses

import pytest
import torch
from torch import nn

from art_ext.data.base import LabeledImages
from art_ext.models.denoisers import DnCNN
from art_ext.training import denoiser as dn
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser, validation_loss


def _toy_data(n: int = 64, seed: int = 0) -> LabeledImages:
    """Smooth 1x8x8 images of 4 classes: a bright quadrant per class plus a little texture."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4] += 0.8
    return LabeledImages(x.clamp(0, 1), y, ("a", "b", "c", "d"), "toy")


class QuadrantClassifier(nn.Module):
    """A fixed classifier (with BatchNorm, to catch train-mode use): logits = scaled mean of each quadrant."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x).flatten(1)) * self.scale  # [B, 4]: quadrants in row-major order


def _classifier() -> nn.Module:
    model = QuadrantClassifier()
    model.bn.running_mean.fill_(0.25)
    return model.eval()


def _denoiser() -> nn.Module:
    torch.manual_seed(0)
    return DnCNN(in_channels=1, depth=3, width=8)


@pytest.mark.parametrize("objective", ["mse", "clf", "stab", "stab+mse"])
def test_each_objective_decreases_its_loss(objective: str) -> None:
    data, val = _toy_data(64, 0), _toy_data(64, 1)
    extra = {"mse_epochs": 3} if objective == "stab+mse" else {}
    config = DenoiserTrainConfig(sigma=0.5, objective=objective, epochs=6, batch_size=16, lr=3e-3, max_shift=0,
                                 **extra)
    classifiers = [] if objective == "mse" else [_classifier()]
    model = _denoiser()
    before = validation_loss(model, val, config, classifiers)
    history = train_denoiser(model, data, config, classifiers=classifiers, val=val)
    after = validation_loss(model, val, config, classifiers)
    assert after < 0.8 * before, (before, after)
    assert min(history["val_loss"]) == pytest.approx(after)  # the kept checkpoint is the best validation epoch
    assert not model.training
    if objective == "stab+mse":  # sequential: an MSE phase first, then STAB
        assert len(history["mse_train_loss"]) == 3 and len(history["train_loss"]) == 6


def test_stab_uses_classifier_in_eval_mode_and_never_updates_it() -> None:
    data = _toy_data(32)
    classifier = _classifier().train()  # left in train mode by the caller: training must still use eval mode
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    modes: list[bool] = []
    classifier.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    bn_modes: list[bool] = []
    classifier.bn.register_forward_pre_hook(lambda module, args: bn_modes.append(module.training))
    config = DenoiserTrainConfig(sigma=0.5, objective="stab", epochs=2, batch_size=8, max_shift=0)
    train_denoiser(_denoiser(), data, config, classifiers=[classifier], val=data)
    assert modes and not any(modes) and not any(bn_modes)
    after = classifier.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers untouched
    assert all(p.grad is None and p.requires_grad for p in classifier.parameters())
    assert classifier.training  # the caller's mode is restored


class Spy(nn.Module):
    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log, self.inner = name, log, _classifier()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return self.inner(x)


@pytest.mark.parametrize("mode", ["round_robin", "average"])
def test_black_box_uses_only_surrogates(mode: str) -> None:
    log: list[str] = []
    target = Spy("target", log)
    surrogates = [Spy("a", log), Spy("b", log)]
    data = _toy_data(32)
    config = DenoiserTrainConfig(sigma=0.5, objective="stab", epochs=1, batch_size=8, max_shift=0,
                                 surrogate_mode=mode, select_best=False)
    train_denoiser(_denoiser(), data, config, classifiers=surrogates)
    assert "target" not in log
    # stab calls a classifier twice per batch (clean pseudo-label, denoised logits); 4 batches
    if mode == "round_robin":
        assert log == ["a", "a", "b", "b", "a", "a", "b", "b"]
    else:
        assert log == ["a", "a", "b", "b"] * 4
    assert target.inner is not None  # the target exists but is never handed to training


def test_deterministic_and_resumable(tmp_path, monkeypatch) -> None:
    data, val = _toy_data(32, 0), _toy_data(32, 1)
    config = DenoiserTrainConfig(sigma=0.5, objective="stab+mse", mse_epochs=2, epochs=3, batch_size=8)
    reference = _denoiser()
    history = train_denoiser(reference, data, config, classifiers=[_classifier()], val=val)
    again = _denoiser()
    train_denoiser(again, data, config, classifiers=[_classifier()], val=val)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), again.state_dict().values()))

    class Killed(Exception):
        pass

    original, calls = dn._save_checkpoint, []

    def save_then_die(path, state):  # simulate a kill right after the 4th checkpoint (inside the STAB phase)
        original(path, state)
        calls.append(state.get("epoch"))
        if len(calls) == 4:
            raise Killed

    monkeypatch.setattr(dn, "_save_checkpoint", save_then_die)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(Killed):
        train_denoiser(_denoiser(), data, config, classifiers=[_classifier()], val=val, checkpoint=path)
    monkeypatch.setattr(dn, "_save_checkpoint", original)
    resumed = _denoiser()
    resumed_history = train_denoiser(resumed, data, config, classifiers=[_classifier()], val=val, checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))
    assert resumed_history == history
    other = dataclasses.replace(config, lr=5e-4)
    with pytest.raises(ValueError, match="different recipe"):
        train_denoiser(_denoiser(), data, other, classifiers=[_classifier()], val=val, checkpoint=path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": 0.5, "objective": "denoise"}, "objective"),
        ({"sigma": 0.5, "epochs": 0}, "epochs"),
        ({"sigma": 0.5, "surrogate_mode": "vote"}, "surrogate_mode"),
        ({"sigma": 0.5, "mse_epochs": 3}, "mse_epochs"),
        ({"sigma": 0.5, "lr": -1.0}, "lr"),
    ],
)
def test_config_errors_name_the_value(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenoiserTrainConfig(**kwargs)


def test_classifier_objective_without_classifier_raises() -> None:
    with pytest.raises(ValueError, match="needs at least one classifier"):
        train_denoiser(_denoiser(), _toy_data(8), DenoiserTrainConfig(sigma=0.5, objective="stab"))


def test_config_is_a_frozen_dataclass() -> None:
    config = DenoiserTrainConfig(sigma=0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sigma = 1.0  # type: ignore[misc]
