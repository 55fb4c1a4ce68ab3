"""PGD adversarial training (Madry et al., 2018) with early stopping on a validation split (Rice et al., 2020)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext.attacks.pgd import PGDConfig, pgd
from art_ext.data.base import LabeledImages
from art_ext.ops import norms
from art_ext.ops.modes import eval_mode
from art_ext.training.classifier import (
    SplitLoader,
    TrainConfig,
    TrainingRun,
    adam_one_cycle,
    random_shift,
    refuse_classifiers,
    take_step,
)
from art_ext.types import Norm


@dataclass(frozen=True)
class AdversarialTrainConfig(TrainConfig):
    """A deterministic PGD adversarial-training recipe (``TrainConfig`` fields plus the threat model).

    Attributes:
        eps: Radius of the training threat model in pixel units (> 0).
        norm: ``"l2"`` or ``"linf"`` (ART's 2 / np.inf / "inf" accepted).
        attack_steps: PGD iterations used to craft each training batch (>= 1).
        step_factor: Step size = step_factor * eps / attack_steps (2.5 as in Madry et al.'s 2.5 eps / steps rule).
        eps_ramp: Fraction of the epochs over which eps grows linearly from ~0 to ``eps`` (0 = full eps at once).
        val_attack_steps: PGD iterations of the per-epoch validation attack used for early stopping.
        early_stopping: Keep the weights of the epoch with the best PGD accuracy on the validation split (Rice et
            al., 2020), evaluated only once eps has reached its final value; False keeps the last epoch.
    """

    eps: float = 0.5
    norm: Norm = "l2"
    attack_steps: int = 7
    step_factor: float = 2.5
    eps_ramp: float = 0.3
    val_attack_steps: int = 10
    early_stopping: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be finite and > 0 (pixel units), got {self.eps!r}")
        for name in ("attack_steps", "val_attack_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (math.isfinite(self.step_factor) and self.step_factor > 0):
            raise ValueError(f"step_factor must be finite and > 0, got {self.step_factor!r}")
        if not 0.0 <= self.eps_ramp < 1.0:
            raise ValueError(f"eps_ramp must be in [0, 1), got {self.eps_ramp!r}")

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """PGD-train ``model`` in place on ``data("train")``, early-stopped on ``data("val")`` (``Recipe``
        protocol; not resumable: ``checkpoint`` is left alone).

        Returns:
            The per-epoch adversarial loss, and as facts ``best_epoch`` (0-based, the epoch kept) and
            ``val_robust_accuracy`` (per-epoch val PGD accuracy, None during the eps ramp).
        """
        refuse_classifiers(self, classifiers)
        result = train_adversarial(model, data("train"), self, val=data("val"), verbose=verbose)
        return TrainingRun(
            result["history"],  # type: ignore[arg-type]
            {"best_epoch": result["best_epoch"], "val_robust_accuracy": result["val_robust"]},
        )

    def epoch_eps(self, epoch: int) -> float:
        """Training radius of epoch ``epoch`` (0-based): linear ramp over the first ``eps_ramp`` of the epochs."""
        ramp_epochs = math.ceil(self.eps_ramp * self.epochs)
        if epoch >= ramp_epochs:
            return self.eps
        return self.eps * (epoch + 1) / (ramp_epochs + 1)

    def attack(self, eps: float, steps: int) -> PGDConfig:
        return PGDConfig(eps=eps, eps_step=self.step_factor * eps / steps, max_iter=steps, norm=self.norm)


def robust_accuracy(
    model: nn.Module, data: LabeledImages, config: PGDConfig, *, batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> float:
    """Accuracy of ``model`` on PGD examples crafted against it in eval mode (mode restored afterwards)."""
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model):
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size), strict=True):
            xb, yb = xb.to(device), yb.to(device)
            x_adv = pgd(model, xb, yb, config, generator=generator)  # [b, C, H, W]
            with torch.no_grad():
                correct += (model(x_adv).argmax(1) == yb).sum()
    return float(correct) / len(data)


def train_adversarial(
    model: nn.Module, data: LabeledImages, config: AdversarialTrainConfig, *, val: LabeledImages | None = None,
    verbose: bool = False,
) -> dict[str, object]:
    """Train ``model`` in place with PGD adversarial training and leave it in eval mode.

    Implements the min-max objective of Madry et al. (2018, arXiv:1706.06083v4, Eq. 2.1): each batch is replaced by
    PGD examples (``art_ext.attacks.pgd.pgd``, the project's one PGD loop) crafted against the current weights, and
    the cross-entropy on them is minimized with Adam under a one-cycle schedule. Early stopping as Rice et al. (2020,
    arXiv:2002.11569v2, Sec. 3): after every epoch at full eps, PGD accuracy on ``val`` is measured and the best
    epoch's weights are kept.

    Deviations:
        Adversarial examples are crafted in eval mode (BatchNorm uses running statistics, as the deployed model
        would) and the update then runs in train mode; Madry et al. craft in train mode. eps is ramped up over the
        first ``eps_ramp`` of the epochs, which stabilizes training of this small BatchNorm CNN. Random shifts
        (``max_shift``) are applied before the attack. Adam + one-cycle instead of SGD with piecewise decay.

    Args:
        model: Classifier on [0, 1] inputs; trained on the device of its parameters.
        data: Training split. val: Validation split for early stopping (required when ``config.early_stopping``).
    Returns:
        ``{"history": per-epoch mean adversarial loss, "val_robust": per-epoch val PGD accuracy (None before the ramp
        ends), "best_epoch": the epoch kept (0-based)}``.
    """
    if config.early_stopping and val is None:
        raise ValueError("early_stopping=True needs a validation split: pass val=load_digits('val') or similar")
    device = next(model.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer, schedule = adam_one_cycle(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, epochs=config.epochs,
        examples=len(data), batch_size=config.batch_size,
    )
    history: list[float] = []
    val_robust: list[float | None] = []
    best_state, best_acc, best_epoch = None, -1.0, config.epochs - 1
    val_attack = config.attack(config.eps, config.val_attack_steps)
    for epoch in tqdm(range(config.epochs), desc="adv-train", disable=not verbose, leave=False):
        eps = config.epoch_eps(epoch)
        attack = config.attack(eps, config.attack_steps)
        order = torch.randperm(len(data), generator=generator, device=device)
        total = torch.zeros((), device=device)
        for batch in order.split(config.batch_size):
            inputs = random_shift(x[batch], config.max_shift, generator)  # [b, C, H, W]
            model.eval()  # craft against the deployed (running-statistics) model
            inputs = pgd(model, inputs, y[batch], attack, generator=generator)
            model.train()
            loss = F.cross_entropy(model(inputs), y[batch])
            take_step(loss, optimizer, schedule)
            total += loss.detach() * len(batch)
        history.append(float(total) / len(data))
        model.eval()
        if config.early_stopping and eps == config.eps:
            val_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
            acc = robust_accuracy(model, val, val_attack, generator=val_gen)  # type: ignore[arg-type]
            val_robust.append(acc)
            if acc > best_acc:
                best_state, best_acc, best_epoch = copy.deepcopy(model.state_dict()), acc, epoch
        else:
            val_robust.append(None)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "val_robust": val_robust, "best_epoch": best_epoch}
