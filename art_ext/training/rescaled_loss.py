"""Training the normalized-noise UNet with the rescaled loss: Kumar & Narayan, Algorithm 1 and Eq. 3.

For a batch of clean images x in [0, 1] with labels y: z = (x - mean) / std, delta ~ N(0, sigma_n^2 I) fresh every
batch, x_hat = U(z + delta) (the ``NormalizedReconstructor``'s output, pixels by default), and

    L = lambda * CE(f(x_hat), y) + MAE(x_target, x_hat)        (Eq. 3)

with one frozen surrogate classifier f (eval mode, no parameter gradients) and the MAE taken against the clean image
in the reconstructor's output space (pixels, or the normalized image; Sec. IV-A: "the MAE loss ground truth ... could
be x in (0, 1) or its normalized variant"). SGD with learning rate 0.1 (Sec. V-C), 20 epochs.

The "rescaled loss" is the factor lambda = 0.1 on the cross-entropy (Sec. IV-A: lambda "brings the cross-entropy loss
closer to the magnitude of the mean absolute error"); the "without rescaled loss" ablation of Table V is lambda = 1,
L = CE + MAE, everything else unchanged. (research/algorithms.md §9.1 guesses that "rescaled" refers to the MAE being
taken in normalized units; the paper's text attributes it to lambda, which is what is implemented.)

Choices the paper leaves open: plain SGD (momentum 0, the literal reading of "an SGD optimizer with a learning rate
of 0.1"; with momentum 0.9 the lambda = 1 ablation collapses on digits to a constant prediction, surrogate validation
accuracy 0.10, while momentum 0 trains it to 0.90), no weight decay, the batch size (64), and checkpoint selection on
a validation split by the validation value of L under one fixed noise draw (the paper states no selection rule).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext.data.base import LabeledImages
from art_ext.defences.normalized_noise import NOISE, NormalizedReconstructor, noise_space_for
from art_ext.ops import validation as checks
from art_ext.ops.modes import eval_mode, frozen
from art_ext.smoothing.noise import add_gaussian_noise
from art_ext.training.classifier import SplitLoader, TrainingRun
from art_ext.training.denoiser import _load_checkpoint, _save_checkpoint

log = logging.getLogger(__name__)


def _check_number(value: object, name: str, *, low: float, strict: bool) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if strict else value >= low))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")


@dataclass(frozen=True)
class RescaledLossTrainConfig:
    """Algorithm 1 of Kumar & Narayan for one noise level (a ``training.Recipe``: ``fit`` trains in place).

    Attributes:
        sigma: Noise std in the units of ``noise`` (normalized units for ``"normalized"``: pixel std is
            ``sigma * std_c``).
        noise: ``"normalized"`` (the paper: noise added after normalization) or ``"pixel"`` (Salman-style pixel noise
            into the same network, for comparisons at equal pixel sigma).
        lam: lambda of Eq. 3, the weight of the cross-entropy (0.1: the rescaled loss; 1.0: "without rescaled loss").
        epochs: Passes over the training split (20 in the paper).
        batch_size: Images per SGD step.
        lr: SGD learning rate (0.1 in the paper).
        momentum: SGD momentum (not stated in the paper; 0 = plain SGD).
        weight_decay: SGD weight decay (not stated; 0).
        select_best: Keep the epoch with the lowest validation L (needs ``val`` data); else the last epoch.
        seed: Seeds shuffling and noise (the initialization is the caller's: build the UNet under a seed).

    Examples:
        >>> RescaledLossTrainConfig(sigma=0.5).lam
        0.1
        >>> RescaledLossTrainConfig(sigma=0.5, lam=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: lam must be a finite number >= 0, got -1.0
    """

    sigma: float
    noise: str = "normalized"
    lam: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    select_best: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_number(self.sigma, "sigma", low=0.0, strict=True)
        if self.noise not in NOISE:
            raise ValueError(f"noise must be one of {NOISE}, got {self.noise!r}")
        _check_number(self.lam, "lam", low=0.0, strict=False)
        _check_number(self.lr, "lr", low=0.0, strict=True)
        _check_number(self.momentum, "momentum", low=0.0, strict=False)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        _check_number(self.weight_decay, "weight_decay", low=0.0, strict=False)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.select_best, bool):
            raise ValueError(f"select_best must be a bool, got {self.select_best!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    def fit(self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
            checkpoint: Path | None = None, verbose: bool = False) -> TrainingRun:
        """Train ``model`` (a ``NormalizedReconstructor``) on ``data("train")``, selecting on ``data("val")``, with the
        one surrogate in ``classifiers`` (the ``Recipe`` protocol; see ``train_rescaled_loss``)."""
        history = train_rescaled_loss(model, data("train"), self, classifiers=classifiers, val=data("val"),
                                      checkpoint=checkpoint, verbose=verbose)
        return TrainingRun(history["train_loss"], {"best_epoch": history["best_epoch"],
                                                   "val_surrogate_accuracy": history["val_accuracy"]})


def rescaled_loss(model: NormalizedReconstructor, classifier: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  noisy: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 on one batch: (L, logits). ``noisy`` [B, C, H, W] is the noisy *pixel* image (the noise of either space
    drawn in pixels; the reconstructor normalizes it); the MAE target is x in the reconstructor's output space."""
    x_hat = model(noisy)  # [B, C, H, W] in model.output_space
    target = x if model.output_space == "pixel" else model.normalize(x)
    logits = classifier(x_hat)  # [B, K]
    return lam * F.cross_entropy(logits, y) + F.l1_loss(x_hat, target), logits


@torch.no_grad()
def validation(model: NormalizedReconstructor, classifier: nn.Module, data: LabeledImages,
               config: RescaledLossTrainConfig, *, batch_size: int = 500) -> tuple[float, float]:
    """(mean L, surrogate accuracy of f(x_hat)) on ``data`` under one fixed noise draw (seeded from
    ``config.seed``); eval mode, modes restored."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed + 7919)  # the same noise every epoch
    space = noise_space_for(config.noise, *model.stats)
    total = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    with eval_mode(model), frozen([classifier]):
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size), strict=True):
            xb, yb = xb.to(device), yb.to(device)
            noisy = add_gaussian_noise(xb, config.sigma, generator, noise_space=space)
            loss, logits = rescaled_loss(model, classifier, xb, yb, noisy, config.lam)
            total += loss * len(yb)
            correct += (logits.argmax(1) == yb).sum()
    return float(total) / len(data), float(correct) / len(data)


def train_rescaled_loss(
    model: nn.Module, data: LabeledImages, config: RescaledLossTrainConfig, *, classifiers: Sequence[nn.Module],
    val: LabeledImages | None = None, checkpoint: str | Path | None = None, verbose: bool = False,
) -> dict:
    """Kumar & Narayan, Algorithm 1: train the reconstructor in place with Eq. 3 and leave it in eval mode.

    Args:
        model: A ``NormalizedReconstructor`` (its mean / std are the normalization of Algorithm 1).
        data: Training images [N, C, H, W] in [0, 1] and labels.
        config: The recipe.
        classifiers: Exactly one frozen surrogate f ([B, C, H, W] in ``model.output_space`` -> logits): the paper
            trains with one surrogate (ResNet18) and deploys on unseen classifiers.
        val: Validation split for checkpoint selection (never the test split).
        checkpoint: Resumable state written after every epoch; an existing file (same recipe) is resumed.
        verbose: tqdm progress bar.
    Returns:
        ``{"train_loss": [...], "val_loss": [...], "val_accuracy": float | None, "best_epoch": int}`` (1-based).
    Raises:
        TypeError / ValueError: on a model that is not a ``NormalizedReconstructor``, a config that is not a
            ``RescaledLossTrainConfig``, not exactly one classifier, or training / validation images that are not
            finite [N, C, H, W] in [0, 1] with the reconstructor's C (all checked before the first step).
    """
    if not isinstance(model, NormalizedReconstructor):
        raise TypeError(f"model must be a NormalizedReconstructor, got {type(model).__name__}")
    if len(classifiers) != 1:
        raise ValueError(f"Algorithm 1 trains with exactly one frozen surrogate classifier, got {len(classifiers)}")
    if not isinstance(config, RescaledLossTrainConfig):
        raise TypeError(f"config must be a RescaledLossTrainConfig, got {type(config).__name__}")
    for split, images in (("data", data), ("val", val)):
        if images is None:
            continue
        if images.x.dim() != 4 or images.x.shape[1] != model.mean.shape[0]:
            raise ValueError(f"{split}.x must be [N, {model.mean.shape[0]}, H, W], got shape {tuple(images.x.shape)}")
        checks.check_images(images.x, name=f"{split}.x")
    (classifier,) = classifiers
    device = next(model.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    space = noise_space_for(config.noise, *model.stats)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    train_loss: list[float] = []
    val_loss: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    start = 0
    state = _load_checkpoint(checkpoint, model, config)  # type: ignore[arg-type]
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        train_loss, val_loss, start = list(state["train_loss"]), list(state["val_loss"]), state["epoch"]
        best = state["best"]
    bar = tqdm(range(start, config.epochs), desc=f"UNet λ={config.lam:g} σ={config.sigma:g}", disable=not verbose,
               leave=False)
    with frozen([classifier]):
        for epoch in bar:
            model.train()
            order = torch.randperm(len(data), generator=generator, device=device)
            total = torch.zeros((), device=device)
            for batch in order.split(config.batch_size):
                xb = x[batch]  # [b, C, H, W]
                noisy = add_gaussian_noise(xb, config.sigma, generator, noise_space=space)  # fresh every batch
                loss, _ = rescaled_loss(model, classifier, xb, y[batch], noisy, config.lam)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(batch)
            train_loss.append(float(total) / len(data))
            if not math.isfinite(train_loss[-1]):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {train_loss[-1]}); lower lr "
                                         f"(now {config.lr})")
            if val is not None:
                val_loss.append(validation(model, classifier, val, config)[0])
                if config.select_best and (best is None or val_loss[-1] < best[0]):
                    best = (val_loss[-1], epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
            bar.set_postfix(train=f"{train_loss[-1]:.4f}", val=f"{val_loss[-1]:.4f}" if val_loss else "-")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, {
                    "phase": 0, "epoch": epoch + 1, "denoiser": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "train_loss": train_loss, "val_loss": val_loss, "best": best,
                    "config": asdict(config),
                })
    best_epoch = config.epochs
    if best is not None:
        model.load_state_dict(best[2])
        best_epoch = best[1]
        log.info("UNet λ=%g σ=%g: kept epoch %d of %d (val loss %.4f)", config.lam, config.sigma, best_epoch,
                 config.epochs, best[0])
    model.eval()
    accuracy = validation(model, classifier, val, config)[1] if val is not None else None
    return {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": accuracy, "best_epoch": best_epoch}
