"""Shared fixtures of the estimator tests: a small BatchNorm CNN on 8x8 digits, trained here in a few seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from art_ext.data import load_digits
from art_ext.models.classifiers import Normalize
from art_ext.ops.modes import torch_threads

SIGMA = 0.25


def train_digits_cnn(*, epochs: int = 15, sigma: float = SIGMA, seed: int = 0) -> nn.Module:
    """Normalize + Conv(1->8) + BatchNorm + ReLU + MaxPool + Linear on 8x8 digits, trained with Gaussian noise
    augmentation (std ``sigma``) on the "train" split; one thread and fixed seeds, so the weights are reproducible.
    About 96% clean and 88% noisy (sigma 0.25) test accuracy; ~4 s on one core."""
    data = load_digits("train", resolution=8)
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = nn.Sequential(
            Normalize((0.3,), (0.3,)), nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
        for _ in range(epochs):
            order = torch.randperm(len(data.x), generator=generator)
            for start in range(0, len(order), 128):
                idx = order[start : start + 128]
                noisy = data.x[idx] + sigma * torch.randn(data.x[idx].shape, generator=generator)
                loss = nn.functional.cross_entropy(model(noisy), data.y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def digits_cnn() -> nn.Module:
    """The trained model (eval mode, parameters frozen). Tests must not modify it."""
    return train_digits_cnn()


@pytest.fixture(scope="session")
def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits("test", resolution=8)
    return data.x, data.y


@pytest.fixture(scope="session")
def digits_clean() -> torch.Tensor:
    """Adaptation images for BN adaptation: the "val" split (disjoint from the test points)."""
    return load_digits("val", resolution=8).x
