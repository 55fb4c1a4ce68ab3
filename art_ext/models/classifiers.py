"""Small image classifiers that take [0, 1] pixels: normalization is their first layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel (x - mean) / std as a layer, so noise and attacks stay in pixel space in front of it."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std need equal lengths and std > 0, got mean={mean}, std={std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks of widths (w, 2w, 2w) with 2x2 max-pools, adaptive 2x2 average pool, FC 128, FC K.

    With w = 16 on 1x16x16 inputs: 32k parameters, 0.5 MMAC per image.
    """

    def __init__(
        self, *, in_channels: int = 1, num_classes: int = 10, width: int = 16,
        mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,),
    ) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            Normalize(mean, std),
            *_conv_bn_relu(in_channels, w), nn.MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * w, 128), nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNet(nn.Module):
    """LeNet-5-style CNN without BatchNorm (5x5 convs 6 and 16 channels, FC 120, 84, K): a different architecture
    family, used as a surrogate or an unseen target."""

    def __init__(
        self, *, in_channels: int = 1, num_classes: int = 10,
        mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,),
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Normalize(mean, std),
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(16 * 16, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Two hidden layers of ``hidden`` units on flattened pixels: no convolution at all."""

    def __init__(
        self, *, in_features: int = 256, num_classes: int = 10, hidden: int = 256,
        mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,),
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Normalize(mean, std), nn.Flatten(),
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"small_cnn": SmallCNN, "lenet": LeNet, "mlp": MLP}
