"""Deterministic DDPM training of a small diffusion model (Ho, Jain & Abbeel 2020, arXiv:2006.11239, Alg. 1, the
"simple" epsilon loss, Eq. 14), for the diffusion denoiser of ``art_ext.defences.DiffusionDenoiser``.

The model sees [0, 1] images mapped to [-1, 1] (the diffusers / DDPM convention, ``data_range=(-1, 1)`` of the
denoiser) and is trained on every timestep of its schedule, so one trained model serves every sigma.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext._optional import require
from art_ext.training.classifier import (
    SplitLoader,
    TrainingRun,
    adam_one_cycle,
    random_shift,
    take_step,
)

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """A deterministic DDPM (epsilon-prediction) recipe; ``fit`` implements the ``training.Recipe`` protocol.

    Attributes:
        epochs: Passes over the training set. batch_size: Images per step.
        lr: Peak learning rate of Adam under a one-cycle schedule. weight_decay: Adam weight decay.
        num_train_timesteps: T. beta_schedule: ``"linear"`` (betas 1e-4 .. 0.02 at T = 1000, as DDPM) or
            ``"squaredcos_cap_v2"`` (Nichol & Dhariwal's cosine schedule).
        max_shift: Random translation of each image by up to this many pixels (zero padding).
        seed: Seeds the shuffling, shifts, timesteps and noise.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    max_shift: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_train_timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")

    def scheduler(self) -> Any:
        """The diffusers ``DDPMScheduler`` of this schedule (epsilon prediction); needs ``art_ext[diffusion]``."""
        diffusers = require("diffusers")
        return diffusers.DDPMScheduler(num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule,
                                       prediction_type="epsilon")

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """Train ``model`` (diffusers ``UNet2DModel`` convention) in place on ``data("train")``; eval mode after.

        Not resumable: ``checkpoint`` is left alone. Returns the mean epsilon-MSE of each epoch.
        """
        if len(classifiers):
            raise ValueError(f"DiffusionTrainConfig trains a diffusion model on images alone and takes no guiding "
                             f"classifiers; got {len(classifiers)}")
        train = data("train")
        device = next(model.parameters()).device
        x = train.x.to(device)  # [N, C, H, W] in [0, 1]
        abar = self.scheduler().alphas_cumprod.to(device=device, dtype=x.dtype)  # [T]
        generator = torch.Generator(device=device).manual_seed(self.seed)
        optimizer, schedule = adam_one_cycle(
            model.parameters(), lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs, examples=len(train),
            batch_size=self.batch_size,
        )
        history = []
        model.train()
        for _ in tqdm(range(self.epochs), desc="ddpm", disable=not verbose, leave=False):
            order = torch.randperm(len(train), generator=generator, device=device)
            total = torch.zeros((), device=device)
            for batch in order.split(self.batch_size):
                y0 = 2 * random_shift(x[batch], self.max_shift, generator) - 1  # [b, C, H, W] in [-1, 1]
                t = torch.randint(0, self.num_train_timesteps, (len(batch),), generator=generator, device=device)
                eps = torch.randn(y0.shape, generator=generator, device=device, dtype=y0.dtype)
                a = abar[t].view(-1, 1, 1, 1)  # [b, 1, 1, 1]
                x_t = a.sqrt() * y0 + (1 - a).sqrt() * eps  # q(x_t | x_0), Ho et al. Eq. 4
                out = model(x_t, t)
                pred = out.sample if hasattr(out, "sample") else out
                loss = F.mse_loss(pred, eps)  # L_simple, Eq. 14
                take_step(loss, optimizer, schedule)
                total += loss.detach() * len(batch)
            history.append(float(total) / len(train))
        model.eval()
        return TrainingRun(history)
