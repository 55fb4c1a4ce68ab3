"""Shared fixtures of the attack tests: a tiny deterministic CNN on 8x8 images and seeded generators."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_model(seed: int = 0) -> nn.Module:
    """Conv(1->4) + ReLU + Linear to 5 classes, fixed weights from ``seed``; eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    return model.eval()


@pytest.fixture
def tiny_model() -> nn.Module:
    return make_tiny_model()


@pytest.fixture
def batch(tiny_model) -> tuple[torch.Tensor, torch.Tensor]:
    """Six random 1x8x8 images labelled with the tiny model's predictions (so every clean point is 'correct')."""
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return x, tiny_model(x).argmax(1)


@pytest.fixture
def make_model():
    return make_tiny_model
