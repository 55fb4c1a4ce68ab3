"""Denoiser training: objectives, frozen classifiers, black-box isolation, determinism and resume."""

import dataclasses
from pathlib import Path

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
    """The quadrant classifier with BatchNorm running mean 0.25 (hand-set, so that it classifies the toy images
    correctly; ``art_ext.testing.tiny_cnn`` is untrained and could not)."""
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
    # same-kernel: frozen weights, never updated
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
    # same-kernel: two trainings with the same seed on this machine
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), again.state_dict().values(),
                                               strict=True))

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
    # same-kernel: a resumed training replays the same steps on this machine
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(),
                                               strict=True))
    assert resumed_history == history
    other = dataclasses.replace(config, lr=5e-4)
    with pytest.raises(ValueError, match="different recipe"):
        train_denoiser(_denoiser(), data, other, classifiers=[_classifier()], val=val, checkpoint=path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": 0.0}, r"sigma must be a finite number > 0 \(pixel units\), got 0.0"),
        ({"sigma": float("nan")}, r"sigma must be a finite number > 0 \(pixel units\), got nan"),
        ({"sigma": 0.5, "objective": "denoise"},
         r"objective must be one of \('mse', 'clf', 'stab', 'stab\+mse'\), got 'denoise'"),
        ({"sigma": 0.5, "epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"sigma": 0.5, "batch_size": 2.0}, "batch_size must be an int >= 1, got 2.0"),
        ({"sigma": 0.5, "surrogate_mode": "vote"},
         r"surrogate_mode must be one of \('round_robin', 'average'\), got 'vote'"),
        ({"sigma": 0.5, "mse_epochs": 3}, "mse_epochs=3 is only meaningful with objective 'stab\\+mse'"),
        ({"sigma": 0.5, "max_shift": -1}, "max_shift must be an int >= 0, got -1"),
        ({"sigma": 0.5, "lr": -1.0}, "lr must be finite and > 0, got -1.0"),
        ({"sigma": 0.5, "mse_lr": float("inf")}, "mse_lr must be finite and > 0, got inf"),
        ({"sigma": 0.5, "weight_decay": -0.1}, "weight_decay must be finite and >= 0, got -0.1"),
    ],
)
def test_config_errors_name_the_value(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenoiserTrainConfig(**kwargs)


def test_classifier_objective_without_classifier_raises() -> None:
    with pytest.raises(ValueError, match="objective 'stab' needs at least one classifier; got none"):
        train_denoiser(_denoiser(), _toy_data(8), DenoiserTrainConfig(sigma=0.5, objective="stab"))


def test_objective_values_match_a_hand_computation() -> None:
    """Salman et al. (2020) Eqs. 4-5 on an identity denoiser, where every term is known in closed form."""
    data = _toy_data(16)
    x, y = data.x, data.y
    noisy = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    identity = nn.Identity()
    classifier = _classifier()
    # MSE (Eq. 4): mean over pixels of the squared noise the identity leaves in
    mse = dn.denoiser_loss("mse", identity, [], x, y, noisy)
    assert mse.item() == pytest.approx(float(((noisy - x) ** 2).sum()) / x.numel(), rel=1e-6)
    assert dn.denoiser_loss("mse", nn.Identity(), [], x, y, x).item() == 0.0  # a perfect denoiser
    # the quadrant classifier is right on every clean toy image, so STAB's pseudo-labels argmax f(x) are y ...
    with torch.no_grad():
        assert torch.equal(classifier(x).argmax(1), y)  # same-kernel: integer labels of a hand-set classifier
    stab = dn.denoiser_loss("stab", identity, [classifier], x, y, noisy)
    clf = dn.denoiser_loss("clf", identity, [classifier], x, y, noisy)
    with torch.no_grad():
        logits = classifier(noisy)  # [16, 4]
    by_hand = float((logits.logsumexp(1) - logits.gather(1, y[:, None])[:, 0]).mean())  # CE with targets y
    assert stab.item() == pytest.approx(by_hand, rel=1e-5) and clf.item() == pytest.approx(by_hand, rel=1e-5)
    # ... STAB (Eq. 5) never reads y, CLF does
    shuffled = (y + 1) % 4
    assert dn.denoiser_loss("stab", identity, [classifier], x, shuffled, noisy).item() == stab.item()
    assert dn.denoiser_loss("clf", identity, [classifier], x, shuffled, noisy).item() > clf.item() + 1.0
    # several classifiers ("average" surrogates): the mean of their losses
    other = _classifier()
    with torch.no_grad():
        other.scale.fill_(2.0)
    single = dn.denoiser_loss("stab", identity, [other], x, y, noisy)
    both = dn.denoiser_loss("stab", identity, [classifier, other], x, y, noisy)
    assert both.item() == pytest.approx((stab.item() + single.item()) / 2, rel=1e-6)


def test_a_crafted_training_state_runs_no_code(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "state.ckpt"
    torch.save({"config": Payload()}, path, pickle_protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        dn._load_checkpoint(path, _denoiser(), DenoiserTrainConfig(sigma=0.25, epochs=1))
    assert not marker.exists()
