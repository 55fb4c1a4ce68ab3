"""The zoo's certified-training recipe: ``CertifiedTrainConfig``, a ``TrainConfig`` (same epochs, batch size, Adam
one-cycle schedule, random shifts and seed as the zoo's Gaussian-augmentation entries) whose loss is a certified
training method's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from art_ext.data.base import LabeledImages
from art_ext.ops import validation as checks
from art_ext.training.certified._common import CertifiedMethod
from art_ext.training.certified.loop import METHOD_NAMES, run_epoch, steps_per_epoch
from art_ext.training.classifier import SplitLoader, TrainConfig, TrainingRun, random_shift, refuse_classifiers


@dataclass(frozen=True)
class CertifiedTrainConfig(TrainConfig):
    """``TrainConfig`` with a certified-training ``method`` in place of plain (or noise-augmented) cross-entropy.

    The optimizer is Adam under a one-cycle schedule stepped after every optimizer step (the multi-noise methods
    take ``method.chunks`` steps per batch, so the schedule spans ``epochs * steps_per_epoch`` steps); each loader
    batch is randomly shifted by up to ``max_shift`` pixels before the method sees it. ``noise_sigma`` is set to
    ``method.sigma`` (the zoo reads the training sigma from it); it adds no noise of its own.

    Attributes:
        method: ``GaussianAugmentation``, ``SmoothAdvTraining``, ``MACERTraining``, ``SmoothMixTraining`` or
            ``ConsistencyTraining`` (required).

    Examples:
        >>> from art_ext.data import load_digits
        >>> from art_ext.models import SmallCNN
        >>> from art_ext.training.certified import MACERTraining
        >>> config = CertifiedTrainConfig(epochs=1, method=MACERTraining(0.25, num_noise_vec=2))
        >>> config.noise_sigma
        0.25
        >>> run = config.fit(SmallCNN(width=4), lambda split: load_digits(split).head(32))
        >>> len(run.history), run.facts["method"]
        (1, 'MACERTraining')
    """

    method: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.method, CertifiedMethod):
            raise TypeError(f"method must be one of {', '.join(METHOD_NAMES)}, got {type(self.method).__name__}")
        if self.noise_sigma == 0:
            object.__setattr__(self, "noise_sigma", float(self.method.sigma))
        elif self.noise_sigma != self.method.sigma:
            raise ValueError(f"noise_sigma ({self.noise_sigma}) must equal method.sigma ({self.method.sigma}) or be "
                             f"left at 0")

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """Train ``model`` in place on ``data("train")`` (``Recipe`` protocol; not resumable: ``checkpoint`` is left
        alone) and leave it in eval mode. Facts: the method's name and the optimizer steps per epoch."""
        refuse_classifiers(self, classifiers)
        train = data("train")
        history = train_certified(model, train, self, verbose=verbose)
        return TrainingRun(history, {"method": type(self.method).__name__,
                                     "steps_per_epoch": steps_per_epoch(len(train), self.batch_size, self.method)})


def train_certified(
    model: nn.Module, data: LabeledImages, config: CertifiedTrainConfig, *, verbose: bool = False
) -> list[float]:
    """Train ``model`` in place with ``config`` on ``data`` (on the model's device); returns per-epoch mean losses and
    leaves the model in eval mode."""
    if not isinstance(config, CertifiedTrainConfig):
        raise TypeError(f"config must be a CertifiedTrainConfig, got {type(config).__name__}")
    checks.check_images(data.x, name="data.x")
    device = next(model.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    method: CertifiedMethod = config.method
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total_steps = config.epochs * steps_per_epoch(len(x), config.batch_size, method)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    history = []
    model.train()
    bar = tqdm(range(config.epochs), desc=type(method).__name__, disable=not verbose, leave=False)
    for epoch in bar:
        history.append(run_epoch(
            model, x, y, method, optimizer=optimizer, batch_size=config.batch_size, generator=generator, epoch=epoch,
            augment=lambda images: random_shift(images, config.max_shift, generator), after_step=schedule.step,
        ))
        if not math.isfinite(history[-1]):
            break
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history
