"""Fine-tuning under Gaussian noise injection, optionally mixed with EPGD adversarial examples (CNI-I+W idea).

Implements the fine-tuning of Nemcovsky et al., "Smoothed Inference for Improving Adversarial Robustness"
(arXiv:1911.07198v2, Sec. 4.1, Eqs. 21 and 23): training the base under the smoothing noise minimizes an upper
bound on the 0-1 loss of the prediction-smoothed classifier (Eq. 21), and mixing in adversarial examples targets
that loss under attack (Eq. 23).

Deviations:
    * Eq. 23 draws a Bernoulli(q) switch per example; like the reference training loop (yanemcovsky/SIAM@947630e
      train.py) the expectation is used instead: loss = (1 - w) CE(f(x + eta), y) + w CE(f(x_adv + eta'), y).
    * Noise is input noise only, in pixel space (SIAM also injects learned weight noise, and adds input noise after
      normalization).
    * Adversarial examples are EPGD (Sec. 4.2): ``art_ext.attacks.epgd`` with ``eot_samples`` pixel-noise draws per
      step at the training sigma, generated with the model in eval mode (BatchNorm running statistics are not
      updated by the attack), with a random start and a fresh gradient every step (SIAM never clears the input
      gradient between steps).
    * Adam with cosine decay instead of SGD with step milestones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext.attacks.epgd import EPGDConfig, epgd
from art_ext.data.base import LabeledImages
from art_ext.ops import validation
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.noise import GaussianNoise
from art_ext.training.classifier import random_shift, take_step
from art_ext.types import Norm


@dataclass(frozen=True)
class NoiseInjectionConfig:
    """A deterministic fine-tuning recipe.

    Attributes:
        sigma: Gaussian noise std in pixel units (> 0): the smoothing sigma to be used at inference.
        epochs: Passes over the training set (>= 1).
        batch_size: Images per step (>= 1).
        lr: Initial Adam learning rate (cosine-decayed to 0).
        adversarial_weight: w in [0, 1], the weight of the adversarial term (0: noise injection only).
        eps, eps_step, max_iter, norm: EPGD threat model and steps (ART names), used when w > 0.
        eot_samples: Noise draws averaged per EPGD gradient (1 is PGD through one noisy pass).
        max_shift: Random translation augmentation in pixels.
        seed: Seeds shuffling, shifts, noise and attack starts.
    """

    sigma: float
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4
    adversarial_weight: float = 0.0
    eps: float = 0.1
    eps_step: float = 0.025
    max_iter: int = 7
    norm: Norm = "linf"
    eot_samples: int = 8
    max_shift: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        validation.check_sigma(self.sigma)
        for name in ("epochs", "batch_size"):
            validation.check_positive_int(getattr(self, name), name)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, got {self.lr!r}")
        if not 0.0 <= self.adversarial_weight <= 1.0:
            raise ValueError(f"adversarial_weight must be in [0, 1], got {self.adversarial_weight!r}")
        if isinstance(self.max_shift, bool) or not isinstance(self.max_shift, int) or self.max_shift < 0:
            raise ValueError(f"max_shift must be an int >= 0, got {self.max_shift!r}")
        self.attack_config()  # validates eps, eps_step, max_iter, norm, eot_samples

    def attack_config(self) -> EPGDConfig:
        return EPGDConfig(self.eps, self.eps_step, sigma=self.sigma, max_iter=self.max_iter, norm=self.norm,
                          num_random_init=1, eot_samples=self.eot_samples)

    def apply(self, model: nn.Module, data: LabeledImages, *, verbose: bool = False) -> list[float]:
        """Fine-tune ``model`` in place with this recipe (the zoo's fine-tuning hook)."""
        return noise_injection_finetune(model, data, self, verbose=verbose)


def noise_injection_finetune(
    model: nn.Module, data: LabeledImages, config: NoiseInjectionConfig, *, verbose: bool = False
) -> list[float]:
    """Fine-tune ``model`` in place on ``data`` under noise injection (+ EPGD examples), leave it in eval mode.

    Args:
        model: Classifier on [0, 1] pixels (normalization inside), on the device it should train on.
        data: Training images and labels.
        config: The recipe.
        verbose: Show a progress bar.
    Returns:
        The mean training loss of each epoch.
    """
    device = next(model.parameters()).device
    x_all, y_all = data.x.to(device), data.y.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    noisy_model = nn.Sequential(GaussianNoise(config.sigma, generator=generator), model)  # training under noise
    attack = config.attack_config()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(data) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    w = config.adversarial_weight
    history: list[float] = []
    for _ in tqdm(range(config.epochs), desc="noise-injection fine-tune", disable=not verbose, leave=False):
        order = torch.randperm(len(data), generator=generator, device=device)
        total = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            x = random_shift(x_all[batch], config.max_shift, generator)  # [b, C, H, W]
            y = y_all[batch]
            if w > 0:
                with eval_mode(model):
                    x_adv = epgd(model, x, y, attack, generator=generator)  # EPGD (Sec. 4.2), same generator
            model.train()
            loss = F.cross_entropy(noisy_model(x), y)  # noise injection at the smoothing sigma (Eq. 21)
            if w > 0:
                loss = (1 - w) * loss + w * F.cross_entropy(noisy_model(x_adv), y)  # Eq. 23 in expectation
            take_step(loss, optimizer, schedule)
            total += loss.detach() * len(batch)
        history.append(float(total) / len(data))
    model.eval()
    return history

