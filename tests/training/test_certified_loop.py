"""``certified_loss`` / ``train_certified_epochs``: input checks before any work, determinism at a fixed seed, the
chunked optimizer steps, mode restoration, and that a few epochs of each method lower its loss on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.data import load_digits
from art_ext.training import certified as ct
from art_ext.training.certified import (
    ConsistencyTraining,
    GaussianAugmentation,
    MACERTraining,
    SmoothAdvTraining,
    SmoothMixTraining,
    certified_loss,
    train_certified_epochs,
)
from art_ext.training.certified.loop import steps_per_epoch

METHODS = [
    GaussianAugmentation(0.25),
    SmoothAdvTraining(0.25, eps=0.5, num_steps=2, num_noise_vec=2, warmup=2),
    MACERTraining(0.25, num_noise_vec=4),
    SmoothMixTraining(0.25, eta=1.0, num_steps=2, num_noise_vec=2, warmup=2),
    ConsistencyTraining(0.25, num_noise_vec=2, lbd=5.0),
]


class CountingModel(nn.Module):
    """A linear classifier on 1x16x16 digits that counts its forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 10))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def tiny_cnn_16() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(64, 10))


@pytest.fixture(scope="module")
def digits():
    data = load_digits("train").head(96)
    return data.x, data.y


def train(method, digits, seed: int, *, epochs: int = 1, model_seed: int = 0):
    torch.manual_seed(model_seed)
    model = tiny_cnn_16()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = train_certified_epochs(model, *digits, method, optimizer=optimizer, batch_size=32, nb_epochs=epochs,
                                     generator=torch.Generator().manual_seed(seed))
    return model, history


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_training_is_deterministic_at_a_fixed_seed(method, digits) -> None:
    torch.set_num_threads(1)
    (a, history_a), (b, history_b), (c, _) = (train(method, digits, 0), train(method, digits, 0),
                                              train(method, digits, 1))
    # same-kernel: two trainings with the same seed, thread count and data on this machine
    assert history_a == history_b
    # same-kernel: as above, the weights of the same two trainings
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    # same-kernel: an inequality; another seed trains other weights
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_a_few_epochs_lower_the_loss(method, digits) -> None:
    torch.set_num_threads(1)
    _, history = train(method, digits, 0, epochs=6)
    assert len(history) == 6 and all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < 0.8 * history[0], history


def test_every_example_is_used_and_each_chunk_takes_a_step(digits) -> None:
    model = CountingModel()
    steps = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[override]
            steps.append(1)
            return super().step(closure)

    x, y = digits[0][:10], digits[1][:10]
    method = ConsistencyTraining(0.25, num_noise_vec=3)
    train_certified_epochs(model, x, y, method, optimizer=Recording(model.parameters(), lr=0.01), batch_size=4,
                           nb_epochs=1, generator=torch.Generator().manual_seed(0))
    # batches of 4, 4, 2 -> chunks (2, 1, 1), (2, 1, 1), (1, 1): 8 steps, none empty
    assert len(steps) == 8 == steps_per_epoch(10, 4, method)
    assert steps_per_epoch(10, 4, GaussianAugmentation(0.25)) == 3


def test_scheduler_steps_once_per_epoch_and_start_epoch_drives_the_warmup(digits) -> None:
    model = CountingModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_certified_epochs(model, *digits, GaussianAugmentation(0.25), optimizer=optimizer, batch_size=48,
                           nb_epochs=3, scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    seen = []
    config = SmoothAdvTraining(0.25, eps=1.0, num_steps=1, warmup=4)
    original = config.epoch_eps
    object.__setattr__(config, "epoch_eps", lambda epoch: seen.append(epoch) or original(epoch))
    train_certified_epochs(model, digits[0][:4], digits[1][:4], config, optimizer=optimizer, batch_size=4,
                           nb_epochs=2, start_epoch=5)
    assert seen == [5, 6]


def test_modes_are_restored_also_on_error(digits) -> None:
    model = tiny_cnn_16().eval()
    model[1].train()  # a mixed state must come back as it was
    flags = [m.training for m in model.modules()]
    train_certified_epochs(model, *digits, GaussianAugmentation(0.5), optimizer=torch.optim.SGD(model.parameters(),
                           lr=1e-3), batch_size=48, nb_epochs=1)
    assert [m.training for m in model.modules()] == flags

    class Failing(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[override]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_certified_epochs(model, *digits, GaussianAugmentation(0.5), optimizer=Failing(model.parameters(),
                               lr=1e-3), batch_size=48, nb_epochs=1)
    assert [m.training for m in model.modules()] == flags


def test_diverging_training_is_reported(digits) -> None:
    model = CountingModel()
    with pytest.raises(FloatingPointError, match="diverged at epoch 0"):
        train_certified_epochs(model, *digits, GaussianAugmentation(0.25), batch_size=8, nb_epochs=1,
                               optimizer=torch.optim.SGD(model.parameters(), lr=float("inf")))


def bad_inputs(x: torch.Tensor, y: torch.Tensor):
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return [
        (dict(x=x * 255), ValueError, "outside the declared range [0.0, 1.0]"),
        (dict(x=nan), ValueError, "x contains 1 NaN or infinite values"),
        (dict(x=x[:, 0]), ValueError, "x must be 4-D [B, C, H, W]"),
        (dict(y=y.float()), ValueError, "y must be an int64 tensor of class indices [N]"),
        (dict(y=torch.nn.functional.one_hot(y, 10)), ValueError, "one-hot labels: pass y.argmax(1)"),
        (dict(y=y[:-1]), ValueError, "x has 96 images but y has 95 labels"),
        (dict(y=y - 5), ValueError, "y has a negative label"),
        (dict(y=y.numpy()), TypeError, "y must be a torch.Tensor"),
        (dict(method="macer"), TypeError, "method must be one of GaussianAugmentation, SmoothAdvTraining"),
        (dict(generator=0), TypeError, "generator must be a torch.Generator or None"),
    ]


@pytest.mark.parametrize("index", range(10))
def test_bad_inputs_fail_before_any_work(index, digits) -> None:
    x, y = digits
    change, error, message = bad_inputs(x, y)[index]
    model = CountingModel()
    before = [p.detach().clone() for p in model.parameters()]
    args = dict(x=x, y=y, method=GaussianAugmentation(0.25), generator=None) | change
    with pytest.raises(error) as err:
        certified_loss(model, args["x"], args["y"], args["method"], generator=args["generator"])
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(error) as err:
        train_certified_epochs(model, args["x"], args["y"], args["method"], generator=args["generator"],
                               optimizer=torch.optim.SGD(model.parameters(), lr=0.1), batch_size=8, nb_epochs=1)
    assert message in str(err.value)
    assert model.calls == 0  # no forward at all
    # same-kernel: untouched parameters are the same tensors' values
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("change, error, message", [
    (dict(batch_size=0), ValueError, "batch_size must be an int >= 1"),
    (dict(nb_epochs=0), ValueError, "nb_epochs must be an int >= 1"),
    (dict(start_epoch=-1), ValueError, "start_epoch must be an int >= 0"),
    (dict(optimizer="sgd"), TypeError, "optimizer must be a torch.optim.Optimizer"),
    (dict(scheduler=3), TypeError, "scheduler must have a step() method"),
])
def test_bad_loop_arguments_fail_before_any_work(change, error, message, digits) -> None:
    model = CountingModel()
    kwargs = dict(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), batch_size=8, nb_epochs=1) | change
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_certified_epochs(model, *digits, GaussianAugmentation(0.25), **kwargs)
    assert model.calls == 0


def test_labels_beyond_the_model_outputs_and_bad_models_are_refused(digits) -> None:
    x, y = digits
    model = CountingModel()
    with pytest.raises(ValueError, match="y has label 10 but the model has 10 outputs"):
        train_certified_epochs(model, x, y + 1, GaussianAugmentation(0.25), batch_size=8, nb_epochs=1,
                               optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.calls == 1  # only the probe forward of one image
    with pytest.raises(ValueError, match="y has label 10 but the model has 10 outputs"):
        certified_loss(model, x, y + 1, GaussianAugmentation(0.25), generator=None)
    assert model.calls == 2
    mixed = CountingModel()
    mixed.net[1].bias = nn.Parameter(mixed.net[1].bias.detach().double())  # float32 weight, float64 bias
    with pytest.raises(ValueError, match="has parameters of several floating dtypes"):
        certified_loss(mixed, x, y, GaussianAugmentation(0.25), generator=None)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        certified_loss(lambda t: t, x, y, GaussianAugmentation(0.25), generator=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        certified_loss(model, x, y, GaussianAugmentation(0.25), generator=None, epoch=-1)


def test_public_names_are_exported_from_training() -> None:
    from art_ext import training

    for name in ("GaussianAugmentation", "SmoothAdvTraining", "MACERTraining", "SmoothMixTraining",
                 "ConsistencyTraining", "certified_loss", "train_certified_epochs"):
        assert getattr(training, name) is getattr(ct, name)


def test_images_are_cast_once_to_the_model_dtype(digits) -> None:
    """float64 images on a float32 model train as their float32 cast (the entry points' one cast), and a float64
    model takes float32 images the same way."""
    x, y = digits
    for model_dtype, image_dtype in ((torch.float32, torch.float64), (torch.float64, torch.float32)):
        model = CountingModel().to(model_dtype)
        losses = [certified_loss(model, x.to(dtype), y, GaussianAugmentation(0.25),
                                 generator=torch.Generator().manual_seed(0)) for dtype in (image_dtype, model_dtype)]
        assert losses[0].dtype == model_dtype
        # same-kernel: the cast happens before any work, so both calls run the same kernels on the same tensors
        assert torch.equal(losses[0], losses[1])
