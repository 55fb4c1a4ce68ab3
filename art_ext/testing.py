"""Tiny deterministic models with known answers, for tests and examples (public, like advertorch's test utils)."""

from __future__ import annotations

import torch
from torch import nn


class LinearToy(nn.Module):
    """Two-class linear classifier f(x) = 1[w . x + b > 0] on flattened inputs, as logits [0, w . x + b].

    Its Gaussian-smoothed classifier is itself, with p_A = Phi(|w . x + b| / (sigma ||w||)), so the exact L2 robustness
    radius of the smoothed classifier is the distance to the hyperplane, |w . x + b| / ||w|| (the tight case of Cohen
    et al., 2019, Thm. 1).
    """

    w: torch.Tensor

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.register_buffer("w", w.flatten().to(torch.float64))
        self.b = float(b)
        self.eval()  # a fixed function, ready to be smoothed

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).to(torch.float64) @ self.w + self.b  # [B]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.score(x)
        return torch.stack([torch.zeros_like(z), z], dim=1).to(x.dtype)  # [B, 2]

    def true_radius(self, x: torch.Tensor) -> torch.Tensor:
        """Exact L2 distance of each x to the decision boundary (float64 [B])."""
        return self.score(x).abs() / self.w.norm()

    def true_class(self, x: torch.Tensor) -> torch.Tensor:
        return (self.score(x) > 0).long()


class ScriptedVotes(nn.Module):
    """Returns the scripted class of each successive sample it sees, ignoring the input: lets a test fix the exact
    vote counts CERTIFY sees (n0 selection votes first, then n estimation votes)."""

    votes: torch.Tensor

    def __init__(self, votes: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("votes", votes.long())
        self.num_classes = num_classes
        self.position = 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        self.batch_sizes.append(m)
        chunk = self.votes[self.position : self.position + m]
        if chunk.shape[0] != m:
            raise RuntimeError(f"ScriptedVotes ran out of votes at position {self.position}")
        self.position += m
        return nn.functional.one_hot(chunk, self.num_classes).to(x.dtype)


def tiny_cnn(
    *, in_channels: int = 1, size: int = 8, num_classes: int = 10, batchnorm: bool = False, seed: int = 0
) -> nn.Module:
    """Conv(in -> 4, 3x3) [+ BatchNorm2d] + ReLU + Linear to ``num_classes``, weights fixed by ``seed``, eval mode.

    The one small convolutional toy of the test suite (untrained; the global RNG is left untouched).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 4, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(4))
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(4 * size * size, num_classes)]
        model = nn.Sequential(*layers)
    return model.eval()


def tiny_images(n: int, *, in_channels: int = 1, size: int = 8, seed: int = 1) -> torch.Tensor:
    """``n`` uniform random images [n, C, size, size] in [0, 1] from a seeded generator."""
    return torch.rand(n, in_channels, size, size, generator=torch.Generator().manual_seed(seed))


class CallRecorder(nn.Module):
    """Wraps a module and records the batch size of every call (to count the forward passes a method spends)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batch_sizes: list[int] = []

    @property
    def samples(self) -> int:
        return sum(self.batch_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner(x)


def art_classifier(model: nn.Module, *, input_shape: tuple[int, ...] = (1, 8, 8), nb_classes: int = 10,
                   clip_values: tuple[float, float] | None = (0.0, 1.0), **kwargs: object):
    """An ART ``PyTorchClassifier`` (cross-entropy loss, CPU) around ``model``; ``kwargs`` go to ART unchanged."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model, nn.CrossEntropyLoss(), input_shape, nb_classes, clip_values=clip_values,
                             device_type="cpu", **kwargs)


def linear_problem(
    margins_over_sigma: list[float], sigma: float = 0.25, d: int = 16
) -> tuple[LinearToy, torch.Tensor]:
    """A ``LinearToy`` through the centre of the box and images [len(margins), 1, 4, 4] at the given signed distances
    from its hyperplane, in units of ``sigma`` (so p_A = Phi(|margin|) and the true radius is |margin| * sigma)."""
    if d != 16:
        raise ValueError(f"linear_problem lays the images out as 1x4x4, so d must be 16, got {d}")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    centre = torch.full((d,), 0.5, dtype=torch.float64)
    model = LinearToy(w, float(-(centre @ w)))  # the hyperplane passes through the centre of the box
    unit = w / w.norm()
    x = torch.stack([centre + m * sigma * unit for m in margins_over_sigma]).float().view(-1, 1, 4, 4)
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"margins {margins_over_sigma} at sigma {sigma} leave the [0, 1] box")
    return model, x


def write_cifar10_root(root, per_batch: int = 4, seed: int = 0) -> dict:
    """A tiny CIFAR-10 root in torchvision's pickle format (``<root>/cifar-10-batches-py``: five training batches and
    ``test_batch`` of ``per_batch`` random uint8 images each). Returns ``{file name: (data [n, 3072], labels)}``."""
    import pickle
    from pathlib import Path

    import numpy as np

    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        written[name] = (data, labels)
    return written
