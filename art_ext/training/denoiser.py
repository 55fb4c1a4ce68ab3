"""Training a Gaussian denoiser for denoised smoothing: MSE, CLF, STAB and STAB+MSE, white-box or black-box.

Implements Sec. 2.3 of Salman, Sun, Yang, Kapoor & Kolter (2020, "Denoised Smoothing: A Provable Defense for
Pretrained Classifiers", arXiv:2003.01908v2): for one noise level sigma and clean images x in [0, 1],
delta ~ N(0, sigma^2 I) fresh every batch,

* ``mse``  (Eq. 4):  || D(x + delta) - x ||^2 (mean over pixels), no classifier needed;
* ``clf``  (App. E): CE(f(D(x + delta)), y) with the true labels y;
* ``stab`` (Eq. 5):  CE(f(D(x + delta)), argmax f(x)), the classifier's own clean prediction as the target;
* ``stab+mse``: the STAB objective fine-tuning an MSE-trained denoiser (sequential "pretraining + fine-tuning",
  not a summed loss).

The classifiers f are frozen: evaluated in eval mode, their parameters get no gradient and are never updated.
White-box: ``classifiers=[target]``. Black-box: ``classifiers=[surrogate, ...]``; the target is simply never given
to this module, and checkpoint selection uses the surrogates on a validation split.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_ext.data.base import LabeledImages
from art_ext.ops.modes import eval_mode, frozen
from art_ext.training.classifier import SplitLoader, TrainingRun, adam_one_cycle, random_shift, take_step

log = logging.getLogger(__name__)

OBJECTIVES = ("mse", "clf", "stab", "stab+mse")
SURROGATE_MODES = ("round_robin", "average")


@dataclass(frozen=True)
class DenoiserTrainConfig:
    """A deterministic denoiser training recipe for one noise level.

    Attributes:
        sigma: Noise standard deviation in pixel units (the sigma the denoiser will be certified with).
        objective: ``"mse"``, ``"clf"``, ``"stab"`` or ``"stab+mse"`` (see the module docstring).
        epochs: Passes over the training set with the main objective (the STAB phase for ``stab+mse``).
        batch_size: Images per step.
        lr: Peak learning rate of Adam under a one-cycle schedule (STAB phase for ``stab+mse``).
        weight_decay: Adam weight decay (1e-4 in the reference).
        mse_epochs: ``stab+mse`` only: epochs of MSE pre-training before the STAB phase; 0 means the denoiser
            passed in is already MSE-trained (e.g. a zoo MSE denoiser) and only the STAB phase runs.
        mse_lr: Peak learning rate of the MSE pre-training phase.
        surrogate_mode: With several classifiers: ``"round_robin"`` (batch i uses classifier i mod k, as the
            reference's multi-classifier script) or ``"average"`` (mean loss over all classifiers every batch).
        max_shift: Random translation augmentation in pixels (0 disables it).
        select_best: Keep the epoch with the lowest validation loss (needs ``val`` data); else the last epoch.
        seed: Seeds shuffling, shifts and noise (initialisation is the caller's: build the denoiser under a seed).
    """

    sigma: float
    objective: str = "mse"
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    mse_epochs: int = 0
    mse_lr: float = 1e-3
    surrogate_mode: str = "round_robin"
    max_shift: int = 1
    select_best: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0 (pixel units), got {self.sigma!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.surrogate_mode not in SURROGATE_MODES:
            raise ValueError(f"surrogate_mode must be one of {SURROGATE_MODES}, got {self.surrogate_mode!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("mse_epochs", "max_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.mse_epochs and self.objective != "stab+mse":
            raise ValueError(f"mse_epochs={self.mse_epochs} is only meaningful with objective 'stab+mse'")
        for name in ("lr", "mse_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")

    def fit(
        self, model: nn.Module, data: SplitLoader, *, classifiers: Sequence[nn.Module] = (),
        checkpoint: Path | None = None, verbose: bool = False,
    ) -> TrainingRun:
        """Train the denoiser ``model`` in place on ``data("train")`` with checkpoint selection on ``data("val")``,
        resumable through ``checkpoint`` (the ``Recipe`` protocol; see ``train_denoiser``).

        Returns:
            The per-epoch training loss of the main phase (no facts).
        """
        history = train_denoiser(
            model, data("train"), self, classifiers=classifiers, val=data("val"), checkpoint=checkpoint,
            verbose=verbose,
        )
        return TrainingRun(history["train_loss"])

    @property
    def needs_classifier(self) -> bool:
        return self.objective != "mse"

    @property
    def loss_name(self) -> str:
        """The loss of the main phase: ``stab+mse`` fine-tunes with ``stab``."""
        return "stab" if self.objective == "stab+mse" else self.objective


def denoiser_loss(
    loss_name: str, denoiser: nn.Module, classifiers: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor,
    noisy: torch.Tensor,
) -> torch.Tensor:
    """Mean loss of one batch. ``noisy`` = x + delta [B, C, H, W]; ``classifiers`` are averaged (one for
    round-robin)."""
    denoised = denoiser(noisy)  # [B, C, H, W]
    if loss_name == "mse":
        return F.mse_loss(denoised, x)  # Eq. 4, mean over pixels
    total = denoised.new_zeros(())
    for classifier in classifiers:
        if loss_name == "stab":
            with torch.no_grad():
                target = classifier(x).argmax(dim=1)  # [B], f(x): pseudo-labels from the clean image (Eq. 5)
        else:
            target = y  # CLF: true labels
        total = total + F.cross_entropy(classifier(denoised), target)
    return total / len(classifiers)


@torch.no_grad()
def validation_loss(
    denoiser: nn.Module, data: LabeledImages, config: DenoiserTrainConfig, classifiers: Sequence[nn.Module], *,
    loss_name: str | None = None, batch_size: int = 500,
) -> float:
    """Mean loss on ``data`` under a fixed noise draw (seeded from ``config.seed``), averaged over classifiers;
    the denoiser is evaluated in eval mode (mode restored)."""
    device = next(denoiser.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed + 7919)  # same noise every epoch
    total = torch.zeros((), device=device)
    with eval_mode(denoiser), frozen(classifiers):
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size), strict=True):
            xb, yb = xb.to(device), yb.to(device)
            noisy = xb + config.sigma * torch.randn(xb.shape, generator=generator, device=device, dtype=xb.dtype)
            total += denoiser_loss(loss_name or config.loss_name, denoiser, classifiers, xb, yb, noisy) * len(yb)
    return float(total) / len(data)  # one host sync


def train_denoiser(
    denoiser: nn.Module,
    data: LabeledImages,
    config: DenoiserTrainConfig,
    *,
    classifiers: Sequence[nn.Module] = (),
    val: LabeledImages | None = None,
    checkpoint: str | Path | None = None,
    verbose: bool = False,
) -> dict[str, list[float]]:
    """Train ``denoiser`` in place for noise level ``config.sigma`` and leave it in eval mode.

    Implements the MSE, STAB, CLF and STAB+MSE objectives of Salman et al. (2020, arXiv:2003.01908v2, Eqs. 4-5,
    Sec. 2.3, App. E); see the module docstring.

    Args:
        denoiser: [B, C, H, W] -> [B, C, H, W] in pixel units; trained on its own device.
        data: Training images ``x`` [N, C, H, W] in [0, 1] (any size: digits, CIFAR-10, an ImageNet folder) and
            labels (used by ``clf`` only).
        config: The recipe.
        classifiers: Frozen classifiers guiding ``clf`` / ``stab`` / ``stab+mse`` ([0, 1] pixels -> logits,
            normalization inside, e.g. a zoo model or ``nn.Sequential(Normalize(mean, std), torchvision_model)``).
            One classifier = white-box; surrogates = black-box (the target must not be among them). They are used
            in eval mode with gradients disabled for their parameters; their state is never changed.
        val: Validation split for checkpoint selection (never the test split); selection uses the same
            classifiers, so a black-box run never touches the target.
        checkpoint: File for a resumable training state, written after every epoch; an existing file is loaded and
            training continues from it (bit-identical to an uninterrupted run on the same device and threads). A
            finished run leaves its final state there, so calling again returns at once with the same weights.
        verbose: Show a tqdm progress bar.
    Returns:
        ``{"train_loss": [...], "val_loss": [...]}`` per epoch of the main phase (val empty without ``val``);
        ``stab+mse`` with ``mse_epochs > 0`` adds ``"mse_train_loss"`` / ``"mse_val_loss"``.
    Raises:
        ValueError: on an objective that needs a classifier but got none, or data of the wrong shape.

    Deviations:
        * Adam under a one-cycle schedule instead of the reference's StepLR(30, 0.1) over 90 epochs (runs here are
          tens of epochs); weight decay 1e-4 as the reference.
        * The best checkpoint is selected on a validation split with the objective's own loss (under one fixed noise
          draw), not on the test set with the target classifier as the reference's scripts do (leakage).
        * Black-box ``"average"`` mode (the mean loss over all surrogates per batch) is an option next to the
          reference's round-robin.
    """
    if config.needs_classifier and not classifiers:
        raise ValueError(f"objective {config.objective!r} needs at least one classifier; got none")
    if data.x.dim() != 4:
        raise ValueError(f"data.x must be [N, C, H, W], got shape {tuple(data.x.shape)}")
    classifiers = list(classifiers)
    history: dict[str, list[float]] = {}
    state = _load_checkpoint(checkpoint, denoiser, config)
    phases = []
    if config.objective == "stab+mse" and config.mse_epochs > 0:
        phases.append(("mse", config.mse_epochs, config.mse_lr, "mse_"))
    phases.append((config.loss_name, config.epochs, config.lr, ""))
    for index, (loss_name, epochs, lr, prefix) in enumerate(phases):
        # a state saved inside this phase resumes it; a "phase done" marker (no epoch) starts the next one fresh
        phase_state = state if state is not None and state["phase"] == index and "epoch" in state else None
        if state is not None and state["phase"] > index:
            history.update(state["history_done"])
            continue
        history.update(
            _train_phase(
                denoiser, data, config, classifiers if loss_name != "mse" else [], loss_name, epochs, lr, prefix,
                val, checkpoint, index, phase_state, history, verbose,
            )
        )
    denoiser.eval()
    return history


def _train_phase(
    denoiser: nn.Module, data: LabeledImages, config: DenoiserTrainConfig, classifiers: list[nn.Module],
    loss_name: str, epochs: int, lr: float, prefix: str, val: LabeledImages | None, checkpoint: str | Path | None,
    phase: int, state: dict | None, history_before: dict[str, list[float]], verbose: bool,
) -> dict[str, list[float]]:
    device = next(denoiser.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed + 1000 * phase)
    optimizer, schedule = adam_one_cycle(
        denoiser.parameters(), lr=lr, weight_decay=config.weight_decay, epochs=epochs, examples=len(data),
        batch_size=config.batch_size,
    )
    train_loss: list[float] = []
    val_loss: list[float] = []
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    start_epoch, step = 0, 0
    if state is not None:  # resume
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"].cpu())
        train_loss, val_loss = list(state["train_loss"]), list(state["val_loss"])
        best = (state["best_loss"], state["best_state"]) if state["best_state"] is not None else None
        start_epoch, step = state["epoch"], state["step"]
    select = config.select_best and val is not None
    desc = f"denoiser {loss_name}{' pre-training' if prefix else ''} σ={config.sigma:g}"
    bar = tqdm(range(start_epoch, epochs), desc=desc, disable=not verbose, leave=False)
    with frozen(classifiers):
        for epoch in bar:
            denoiser.train()
            order = torch.randperm(len(data), generator=generator, device=device)
            total = torch.zeros((), device=device)
            for batch in order.split(config.batch_size):
                xb = random_shift(x[batch], config.max_shift, generator)  # [b, C, H, W]
                noisy = xb + config.sigma * torch.randn(xb.shape, generator=generator, device=device, dtype=xb.dtype)
                if config.surrogate_mode == "round_robin" and classifiers:
                    guides = [classifiers[step % len(classifiers)]]  # batch i -> classifier i mod k
                else:
                    guides = classifiers
                loss = denoiser_loss(loss_name, denoiser, guides, xb, y[batch], noisy)
                take_step(loss, optimizer, schedule)
                total += loss.detach() * len(batch)
                step += 1
            train_loss.append(float(total) / len(data))
            if val is not None:
                val_loss.append(validation_loss(denoiser, val, config, classifiers, loss_name=loss_name))
                if select and (best is None or val_loss[-1] < best[0]):
                    best = (val_loss[-1], {k: v.detach().clone() for k, v in denoiser.state_dict().items()})
            bar.set_postfix(train=f"{train_loss[-1]:.4f}", val=f"{val_loss[-1]:.4f}" if val_loss else "-")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, {
                    "phase": phase, "epoch": epoch + 1, "step": step, "denoiser": denoiser.state_dict(),
                    "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "generator": generator.get_state(), "train_loss": train_loss, "val_loss": val_loss,
                    "best_loss": best[0] if best else None, "best_state": best[1] if best else None,
                    "history_done": history_before, "config": asdict(config),
                })
    if select and best is not None:
        denoiser.load_state_dict(best[1])
        log.info("denoiser %s%s: kept epoch %d of %d (val loss %.4f)", prefix, loss_name,
                 val_loss.index(best[0]) + 1, epochs, best[0])
    if checkpoint is not None:  # mark the phase done so a resume skips it
        done = dict(history_before)
        done.update({f"{prefix}train_loss": train_loss, f"{prefix}val_loss": val_loss})
        _save_checkpoint(checkpoint, {"phase": phase + 1, "denoiser": denoiser.state_dict(), "history_done": done,
                                      "config": asdict(config)})
    return {f"{prefix}train_loss": train_loss, f"{prefix}val_loss": val_loss}


def _save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic


def _load_checkpoint(path: str | Path | None, denoiser: nn.Module, config: DenoiserTrainConfig) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    state = torch.load(path, map_location=next(denoiser.parameters()).device, weights_only=True)  # no code runs
    if state.get("config") != asdict(config):
        raise ValueError(
            f"checkpoint {path} was written by a different recipe ({state.get('config')}), not {asdict(config)}; "
            "delete it or pass another checkpoint path"
        )
    denoiser.load_state_dict(state["denoiser"])
    log.info("resuming denoiser training from %s (phase %d, epoch %s)", path, state["phase"], state.get("epoch"))
    return state
