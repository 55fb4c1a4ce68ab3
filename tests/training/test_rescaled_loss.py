"""Algorithm 1 of Kumar & Narayan (RescaledLossTrainConfig): Eq. 3's value, the recipe's validation, determinism,
checkpoint selection on the validation split, and that training reduces the validation loss."""

import pytest
import torch
import torch.nn.functional as F

from art_ext.data.base import LabeledImages
from art_ext.defences.normalized_noise import NormalizedReconstructor
from art_ext.models import UNet
from art_ext.testing import tiny_cnn
from art_ext.training.rescaled_loss import RescaledLossTrainConfig, rescaled_loss, train_rescaled_loss, validation

MEAN, STD = (0.3,), (0.3,)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (torch.rand(n, 1, 8, 8, generator=g) * 0.3 + (y.view(-1, 1, 1, 1) / 10.0) * 0.7).clamp(0, 1)
    return LabeledImages(x, y, tuple(str(i) for i in range(10)), "toy")


def _model(seed=0):
    torch.manual_seed(seed)
    return NormalizedReconstructor(UNet(in_channels=1, depth=1, width=4), MEAN, STD)


def test_eq3_is_lambda_times_cross_entropy_plus_mae():
    model, clf = _model().eval(), tiny_cnn(size=8)
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    noisy = x + 0.1 * torch.randn(4, 1, 8, 8)
    for lam in (0.1, 1.0):
        loss, logits = rescaled_loss(model, clf, x, y, noisy, lam)
        x_hat = model(noisy)
        assert torch.allclose(loss, lam * F.cross_entropy(clf(x_hat), y) + (x_hat - x).abs().mean())
    normalized = NormalizedReconstructor(model.network, MEAN, STD, output_space="normalized").eval()
    loss, _ = rescaled_loss(normalized, clf, x, y, noisy, 0.0)
    assert torch.allclose(loss, (normalized(noisy) - (x - 0.3) / 0.3).abs().mean())  # MAE in the output space


def test_training_is_deterministic_selects_the_best_validation_epoch_and_lowers_the_loss():
    train, val = _data(96, 0), _data(48, 1)
    clf = tiny_cnn(size=8)
    cfg = RescaledLossTrainConfig(sigma=0.5, epochs=4, batch_size=32, lr=0.05)
    before = validation(_model(), clf, val, cfg)[0]
    a, b = _model(), _model()
    hist = train_rescaled_loss(a, train, cfg, classifiers=[clf], val=val)
    train_rescaled_loss(b, train, cfg, classifiers=[clf], val=val)
    # same-kernel: two trainings with the same seed on this machine
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert hist["best_epoch"] == 1 + min(range(4), key=lambda i: hist["val_loss"][i])
    assert validation(a, clf, val, cfg)[0] == pytest.approx(min(hist["val_loss"]), rel=1e-5)
    assert min(hist["val_loss"]) < before
    assert not a.training
    assert all(p.requires_grad for p in clf.parameters()) and not clf.training  # the surrogate is left as found


def test_needs_exactly_one_surrogate_and_a_reconstructor():
    cfg = RescaledLossTrainConfig(sigma=0.5, epochs=1)
    with pytest.raises(ValueError, match="exactly one frozen surrogate classifier, got 2"):
        train_rescaled_loss(_model(), _data(8, 0), cfg, classifiers=[tiny_cnn(size=8), tiny_cnn(size=8)])
    with pytest.raises(TypeError, match="must be a NormalizedReconstructor"):
        train_rescaled_loss(UNet(in_channels=1, depth=1, width=2), _data(8, 0), cfg, classifiers=[tiny_cnn(size=8)])


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma": 0.0}, "sigma must be a finite number > 0"),
    ({"sigma": 0.5, "noise": "latent"}, "noise must be one of"),
    ({"sigma": 0.5, "lam": float("nan")}, "lam must be a finite number >= 0"),
    ({"sigma": 0.5, "lr": 0}, "lr must be a finite number > 0"),
    ({"sigma": 0.5, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
    ({"sigma": 0.5, "epochs": 0}, "epochs must be an int >= 1"),
    ({"sigma": 0.5, "batch_size": 2.0}, "batch_size must be an int >= 1"),
])
def test_config_validation_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RescaledLossTrainConfig(**kwargs)


def test_training_data_and_validation_split_are_checked_before_any_step():
    cfg = RescaledLossTrainConfig(sigma=0.5, epochs=1)
    clf, model = tiny_cnn(size=8), _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = _data(8, 0)
    other_channels = LabeledImages(torch.rand(8, 3, 8, 8), good.y, good.classes, "rgb")
    # before: the validation split was first read after a whole training epoch, and failed there
    with pytest.raises(ValueError, match=r"val.x must be \[N, 1, H, W\], got shape \(8, 3, 8, 8\)"):
        train_rescaled_loss(model, good, cfg, classifiers=[clf], val=other_channels)
    bytes_range = LabeledImages(good.x * 255, good.y, good.classes, "0-255")
    with pytest.raises(ValueError, match=r"data.x has values in \[.*\], outside the declared range \[0.0, 1.0\]"):
        train_rescaled_loss(model, bytes_range, cfg, classifiers=[clf])
    nan = good.x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"val.x contains 1 NaN or infinite values"):
        train_rescaled_loss(model, good, cfg, classifiers=[clf], val=LabeledImages(nan, good.y, good.classes, "nan"))
    with pytest.raises(TypeError, match=r"config must be a RescaledLossTrainConfig, got dict"):
        train_rescaled_loss(model, good, {"sigma": 0.5}, classifiers=[clf])  # type: ignore[arg-type]
    # same-kernel: nothing trained: the same tensors
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing trained
