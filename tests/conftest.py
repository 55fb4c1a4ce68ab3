import sys
from pathlib import Path

import pytest
import torch

from art_ext import testing

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def tiny_cnn() -> torch.nn.Module:
    """The shared toy ``art_ext.testing.tiny_cnn`` with BatchNorm (eval mode), 10 classes, on 1x8x8 inputs."""
    return testing.tiny_cnn(batchnorm=True)
