"""Supervised training of a classifier, optionally with Gaussian noise augmentation (Cohen et al., 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext.data.base import LabeledImages
from art_ext.ops.modes import eval_mode

#: ``data(split)`` returns the named split (``"train"``, ``"val"``) of the dataset a recipe trains on
SplitLoader = Callable[[str], LabeledImages]


@dataclass(frozen=True)
class TrainingRun:
    """What a recipe's ``fit`` reports.

    Attributes:
        history: Mean training loss of each epoch of the (main) training phase.
        facts: Recipe-specific facts to record with the trained weights (e.g. the early-stopping epoch).
    """

    history: list[float]
    facts: dict[str, Any] = field(default_factory=dict)


class Recipe(Protocol):
    """A deterministic training recipe: ``fit`` trains ``model`` in place and leaves it in eval mode.

    ``classifiers`` are the frozen classifiers guiding a denoiser's objective (empty for classifier recipes);
    ``checkpoint`` is a file the recipe may use to make an interrupted run resumable (recipes that cannot resume
    leave it alone). The zoo (``art_ext.zoo``) trains every entry through this one method.
    """

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun: ...


def refuse_classifiers(recipe: object, classifiers: Sequence[nn.Module]) -> None:
    """Classifier recipes train without guiding classifiers: refuse any (they would otherwise be ignored)."""
    if len(classifiers):
        raise ValueError(
            f"{type(recipe).__name__} trains a classifier on labels and takes no guiding classifiers; "
            f"got {len(classifiers)}"
        )


@dataclass(frozen=True)
class TrainConfig:
    """A deterministic training recipe.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Peak learning rate of Adam under a one-cycle schedule.
        weight_decay: Adam weight decay.
        noise_sigma: Gaussian augmentation x + N(0, sigma^2) in pixel units with fresh noise every batch, no clipping
            (Cohen et al., 2019, arXiv:1902.02918v2, Sec. 4, as locuslab/smoothing train.py); 0 disables it.
        max_shift: Random translation of each image by up to this many pixels (zero padding); 0 disables it.
        seed: Seeds the initialization, shuffling, shifts and noise.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    noise_sigma: float = 0.0
    max_shift: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if not (self.noise_sigma >= 0 and math.isfinite(self.noise_sigma)):
            raise ValueError(f"noise_sigma must be finite and >= 0, got {self.noise_sigma}")
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """Train ``model`` in place on ``data("train")`` with ``train_classifier`` (the ``Recipe`` protocol).

        Not resumable: ``checkpoint`` is left alone and an interrupted run restarts from scratch.

        Examples:
            >>> from art_ext.data import load_digits
            >>> from art_ext.models import SmallCNN
            >>> run = TrainConfig(epochs=1).fit(SmallCNN(width=4), lambda split: load_digits(split).head(64))
            >>> len(run.history)
            1
        """
        refuse_classifiers(self, classifiers)
        return TrainingRun(train_classifier(model, data("train"), self, verbose=verbose))


@dataclass(frozen=True)
class FineTune:
    """Adapts a fine-tuning recipe with ``apply(model, train, *, verbose) -> history`` (e.g.
    ``training.noise_injection.NoiseInjectionConfig``) to the ``Recipe`` protocol.

    Attributes:
        hook: The fine-tuning recipe; it fine-tunes the weights the model already holds on ``data("train")``.
    """

    hook: Any

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """Fine-tune ``model`` in place (not resumable: ``checkpoint`` is left alone)."""
        refuse_classifiers(self.hook, classifiers)
        return TrainingRun(self.hook.apply(model, data("train"), verbose=verbose))


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random offset in [-max_shift, max_shift]^2, filling with zeros."""
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)  # [B, C, H + 2s, W + 2s]
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def adam_one_cycle(
    parameters, *, lr: float, weight_decay: float, epochs: int, examples: int, batch_size: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam with a one-cycle learning-rate schedule peaking at ``lr`` over ``epochs`` passes of ``examples`` images
    in batches of ``batch_size`` (the recipe of every art_ext trainer)."""
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    total_steps = epochs * math.ceil(examples / batch_size)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)


def take_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule: object) -> None:
    """One optimizer step on ``loss`` followed by one learning-rate schedule step (shared by every trainer)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()  # type: ignore[attr-defined]


def train_classifier(
    model: nn.Module, data: LabeledImages, config: TrainConfig, *, verbose: bool = False
) -> list[float]:
    """Train ``model`` in place on ``data`` (on the model's device) and leave it in eval mode.

    Returns:
        The mean training loss of each epoch.
    """
    device = next(model.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer, schedule = adam_one_cycle(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, epochs=config.epochs,
        examples=len(data), batch_size=config.batch_size,
    )
    history = []
    model.train()
    for _ in tqdm(range(config.epochs), desc="train", disable=not verbose, leave=False):
        order = torch.randperm(len(data), generator=generator, device=device)
        total = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            inputs = random_shift(x[batch], config.max_shift, generator)
            if config.noise_sigma > 0:
                noise = torch.randn(inputs.shape, generator=generator, device=device, dtype=inputs.dtype)
                inputs = inputs + config.noise_sigma * noise  # fresh noise every batch, no clipping
            loss = F.cross_entropy(model(inputs), y[batch])
            take_step(loss, optimizer, schedule)
            total += loss.detach() * len(batch)
        history.append(float(total) / len(data))
    model.eval()
    return history


@torch.inference_mode()
def accuracy(
    model: nn.Module, data: LabeledImages, *, sigma: float = 0.0, batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """Top-1 accuracy of ``model`` (evaluated in eval mode, mode restored) on ``data``, optionally under one draw
    of Gaussian noise N(0, sigma^2) per image."""
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model):
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size), strict=True):
            xb, yb = xb.to(device), yb.to(device)
            if sigma > 0:
                xb = xb + sigma * torch.randn(xb.shape, generator=generator, device=device, dtype=xb.dtype)
            correct += (model(xb).argmax(1) == yb).sum()
    return float(correct) / len(data)
