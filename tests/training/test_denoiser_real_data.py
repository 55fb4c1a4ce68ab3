"""The real-data path: CIFAR-10 files and ImageNet-style folders with a torchvision classifier (fabricated, tiny)."""

import pickle

import numpy as np
import torch
from PIL import Image
from torch import nn

from art_ext.data import load_cifar10, load_image_folder
from art_ext.data.cifar10 import MEAN, STD
from art_ext.models import Normalize
from art_ext.models.denoisers import DnCNN, MemNet
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser


def _torchvision_classifier(num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return nn.Sequential(Normalize(MEAN, STD), resnet18(weights=None, num_classes=num_classes)).eval()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_cifar10_files_with_torchvision_classifier(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (8, 3 * 32 * 32), dtype=np.uint8), b"labels": list(range(8))}
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(batch, handle)
    data = load_cifar10(tmp_path, "test")
    classifier = _torchvision_classifier(10)
    before = _snapshot(classifier)
    torch.manual_seed(0)
    denoiser = DnCNN(in_channels=3, depth=3, width=8)
    config = DenoiserTrainConfig(sigma=0.25, objective="stab", epochs=2, batch_size=4, max_shift=4)
    history = train_denoiser(denoiser, data, config, classifiers=[classifier], val=data)
    assert len(history["train_loss"]) == 2 and all(np.isfinite(history["val_loss"]))
    assert (denoiser(data.x) - data.x).abs().max() > 0  # trained off the identity
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())  # BN buffers included


def test_image_folder_with_memnet(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for name in ("n01440764", "n01443537"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_image_folder(tmp_path, resize=32, crop=32)
    assert data.x.shape == (6, 3, 32, 32)
    classifier = _torchvision_classifier(2)
    torch.manual_seed(0)
    denoiser = MemNet(in_channels=3, channels=8, num_memory_blocks=1, num_resblocks=1)
    config = DenoiserTrainConfig(sigma=0.5, objective="clf", epochs=2, batch_size=3)
    history = train_denoiser(denoiser, data, config, classifiers=[classifier])
    assert len(history["train_loss"]) == 2 and history["val_loss"] == []
    assert (denoiser(data.x) - data.x).abs().max() > 0
