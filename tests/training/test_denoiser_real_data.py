"""The real-data path: CIFAR-10 files and ImageNet-style folders with a torchvision classifier (fabricated, tiny)."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from art_ext.data import load_cifar10, load_image_folder
from art_ext.data.cifar10 import MEAN, STD
from art_ext.models import Normalize
from art_ext.models.denoisers import DnCNN, MemNet
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser, validation_loss


def _torchvision_classifier(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return nn.Sequential(Normalize(MEAN, STD), resnet18(weights=None, num_classes=num_classes)).eval()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _train_twice(build, data, config, classifier, **kwargs):
    """Two runs from the same initialization: (denoiser, history) of the first, and whether the second equals it."""
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        denoiser = build()
        history = train_denoiser(denoiser, data, config, classifiers=[classifier], **kwargs)
        runs.append((denoiser, history))
    (first, history), (second, again) = runs
    # same-kernel: two trainings with the same seed on this machine
    same = history == again and all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                                       second.state_dict().values(), strict=True))
    return first, history, same


def test_cifar10_files_with_torchvision_classifier(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (8, 3 * 32 * 32), dtype=np.uint8), b"labels": list(range(8))}
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(batch, handle)
    data = load_cifar10(tmp_path, "test")
    # the files' bytes, by hand: rows of 3072 = 3 planes of 32 x 32, divided by 255
    # same-kernel: the same bytes / 255, elementwise
    assert torch.equal(data.x, torch.from_numpy(batch[b"data"]).reshape(8, 3, 32, 32).float() / 255)
    assert data.y.tolist() == list(range(8))
    classifier = _torchvision_classifier(10)
    before = _snapshot(classifier)
    config = DenoiserTrainConfig(sigma=0.25, objective="stab", epochs=2, batch_size=4, max_shift=4)
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in _dncnn().state_dict().items()}
    denoiser, history, same = _train_twice(_dncnn, data, config, classifier, val=data)
    assert same  # deterministic on 3-channel data with a torchvision classifier
    assert len(history["train_loss"]) == len(history["val_loss"]) == 2
    # the kept weights are the best validation epoch's: their validation loss is the minimum of the history
    assert validation_loss(denoiser, data, config, [classifier]) == pytest.approx(min(history["val_loss"]), rel=1e-6)
    # same-kernel: asserts a difference (it trained); the classifier is frozen
    assert any(not torch.equal(initial[k], v) for k, v in denoiser.state_dict().items())  # it was trained
    # same-kernel: frozen classifier, never updated
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())  # BN buffers included


def _dncnn() -> nn.Module:
    return DnCNN(in_channels=3, depth=3, width=8)


def _memnet() -> nn.Module:
    return MemNet(in_channels=3, channels=8, num_memory_blocks=1, num_resblocks=1)


def test_image_folder_with_memnet(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for name in ("n01440764", "n01443537"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_image_folder(tmp_path, resize=32, crop=32)
    assert data.x.shape == (6, 3, 32, 32) and 0.0 <= float(data.x.min()) and float(data.x.max()) <= 1.0
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1] and data.classes == ("n01440764", "n01443537")  # sorted folders
    classifier = _torchvision_classifier(2)
    before = _snapshot(classifier)
    config = DenoiserTrainConfig(sigma=0.5, objective="clf", epochs=2, batch_size=3)
    torch.manual_seed(0)
    denoiser = _memnet()
    initial = {k: v.clone() for k, v in denoiser.state_dict().items()}
    history = train_denoiser(denoiser, data, config, classifiers=[classifier])
    assert len(history["train_loss"]) == 2 and history["val_loss"] == []  # no val split: the last epoch is kept
    # same-kernel: asserts a difference (it trained); the classifier is frozen
    assert any(not torch.equal(initial[k], v) for k, v in denoiser.state_dict().items())
    # same-kernel: frozen classifier, never updated
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())
