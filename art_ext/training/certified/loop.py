"""The training loss of one batch (``certified_loss``) and the epoch loop (``train_certified_epochs``) shared by the
five certified-training methods.

Epoch loop (research/certified_training.md §0): each epoch draws a permutation from ``generator``, cuts it into
loader batches of ``batch_size`` and cuts each loader batch into ``method.chunks`` chunks (SmoothAdv, SmoothMix and
consistency: m chunks, one optimizer step each, as their reference loops; Gaussian augmentation and MACER: the
whole batch). The references drop the remainder of ``batch_size / m``; here the chunks are as equal as possible
(``torch.tensor_split``) and every example is used. Generator order per step: the permutation once per epoch, then
per chunk the method's own draws (noise first, then SmoothMix's lambda).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from art_ext.ops import validation as checks
from art_ext.ops.modes import eval_mode
from art_ext.training.certified._common import CertifiedMethod, check_int

#: names of the five method configs, for error messages
METHOD_NAMES = ("GaussianAugmentation", "SmoothAdvTraining", "MACERTraining", "SmoothMixTraining",
                "ConsistencyTraining")


def _check_model(model: object) -> torch.device:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module mapping [B, C, H, W] images to logits, got "
                        f"{type(model).__name__}")
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ValueError(f"model {type(model).__name__} has no parameters to train")
    return parameter.device


def _check_method(method: object) -> CertifiedMethod:
    if not isinstance(method, CertifiedMethod):
        raise TypeError(f"method must be one of {', '.join(METHOD_NAMES)}, got {type(method).__name__}")
    return method


def _check_generator(generator: object, device: torch.device) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the model is on {device}; expected a generator on "
                         f"the model's device")


def _check_data(x: object, y: object, model: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The images checked and cast once to the model's dtype (a model of mixed floating dtypes is refused), the
    labels checked against the images."""
    x = checks.check_images(x, name="x")
    checks.model_dtype(model, strict=True)
    x = checks.cast_to_model_dtype(x, model)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of int64 class indices [N], got {type(y).__name__}")
    if y.dtype != torch.int64 or y.dim() != 1:
        raise ValueError(f"y must be an int64 tensor of class indices [N], got dtype {y.dtype} and shape "
                         f"{tuple(y.shape)} (one-hot labels: pass y.argmax(1))")
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels; expected one label per image")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"y has a negative label ({int(y.min())}); expected class indices >= 0")
    if x.device != device or y.device != device:
        raise ValueError(f"x is on {x.device} and y on {y.device} but the model is on {device}; move them to the "
                         f"model's device")
    return x, y


def _check_epoch(epoch: object, name: str = "epoch") -> int:
    return check_int(epoch, name, low=0)


def _check_label_range(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One eval-mode forward of one image (no gradients, BN statistics untouched) to learn the number of classes."""
    with torch.no_grad(), eval_mode(model):
        logits = model(x[:1])
    if logits.dim() != 2:
        raise ValueError(f"model must return logits [B, K], got shape {tuple(logits.shape)}")
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(f"y has label {int(y.max())} but the model has {logits.shape[1]} outputs; expected labels "
                         f"in [0, {logits.shape[1] - 1}]")


def certified_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: CertifiedMethod, *,
    generator: torch.Generator | None, epoch: int = 0,
) -> torch.Tensor:
    """The training loss of ``method`` on one batch: a differentiable scalar.

    The model is used in the mode it is in (put it in train mode first, as a training loop does); the attacks of
    SmoothAdv and SmoothMix switch to eval mode with frozen parameters internally and restore both.

    Args:
        model: Base classifier on [0, 1] pixels ([B, C, H, W] -> logits [B, K]); normalization belongs inside it.
        x: Images [B, C, H, W] in [0, 1], on the model's device (cast to the model's dtype).
        y: Labels [B], int64 class indices below the model's number of outputs (checked with one eval-mode forward
            of one image, which draws no randomness and leaves BN statistics alone).
        method: ``GaussianAugmentation``, ``SmoothAdvTraining``, ``MACERTraining``, ``SmoothMixTraining`` or
            ``ConsistencyTraining``.
        generator: Source of every random draw (noise, SmoothMix's lambda); None: torch's global generator.
        epoch: 0-based epoch, for warm-ups (SmoothAdv's eps, SmoothMix's eta) and MACER's deferral.
    Returns:
        A 0-dim tensor with gradients to the model's parameters.
    Raises:
        TypeError / ValueError: on a bad model, method, generator, epoch, images or labels (before any forward).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from art_ext.training.certified import ConsistencyTraining, certified_loss
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).train()
        >>> x, y = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
        >>> def loss(seed):
        ...     generator = torch.Generator().manual_seed(seed)
        ...     return certified_loss(model, x, y, ConsistencyTraining(0.5), generator=generator)
        >>> torch.equal(loss(0), loss(0)), torch.equal(loss(0), loss(1))
        (True, False)
        >>> certified_loss(model, x * 255, y, ConsistencyTraining(0.5), generator=None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: x has values in [...], outside the declared range [0.0, 1.0]; ...
    """
    device = _check_model(model)
    method = _check_method(method)
    _check_generator(generator, device)
    epoch = _check_epoch(epoch)
    x, y = _check_data(x, y, model, device)
    _check_label_range(model, x, y)
    return method.loss(model, x, y, generator=generator, epoch=epoch)


def run_epoch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: CertifiedMethod, *, optimizer: torch.optim.Optimizer,
    batch_size: int, generator: torch.Generator | None, epoch: int,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None, after_step: Callable[[], None] | None = None,
) -> float:
    """One epoch of training in the model's current mode (no checks; ``train_certified_epochs`` checks): returns the
    mean loss per example. ``augment`` transforms each loader batch before it is chunked (the zoo's random shifts);
    ``after_step`` runs after every optimizer step (a per-step learning-rate schedule)."""
    order = torch.randperm(len(x), generator=generator, device=x.device)
    total = torch.zeros((), device=x.device)
    for batch in order.split(batch_size):
        images, labels = x[batch], y[batch]
        if augment is not None:
            images = augment(images)
        for chunk in torch.arange(len(batch), device=x.device).tensor_split(method.chunks):
            if len(chunk) == 0:
                continue
            loss = method.loss(model, images[chunk], labels[chunk], generator=generator, epoch=epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            total += loss.detach() * len(chunk)
    mean = float(total) / len(x)
    if not math.isfinite(mean):
        raise FloatingPointError(f"training diverged at epoch {epoch} (mean loss {mean}); lower the learning rate")
    return mean


def steps_per_epoch(num_examples: int, batch_size: int, method: CertifiedMethod) -> int:
    """Optimizer steps ``run_epoch`` takes per epoch (one per non-empty chunk)."""
    full, rest = divmod(num_examples, batch_size)
    return full * min(method.chunks, batch_size) + (min(method.chunks, rest) if rest else 0)


def train_certified_epochs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: CertifiedMethod, *,
    optimizer: torch.optim.Optimizer, batch_size: int, nb_epochs: int, generator: torch.Generator | None = None,
    scheduler: object | None = None, start_epoch: int = 0,
) -> list[float]:
    """Train ``model`` in place with ``method`` for ``nb_epochs`` epochs; returns the mean loss of each epoch.

    Every input is checked before any work (the number of classes by one eval-mode forward of one image without
    gradients). The model trains in train mode and gets its own train/eval flags back afterwards, also on error.

    Args:
        model: Base classifier on [0, 1] pixels (normalization inside), on the device of x and y.
        x: Training images [N, C, H, W] in [0, 1]. y: Labels [N], int64 class indices.
        method: One of the five method configs.
        optimizer: Optimizer over the model's parameters (stepped once per chunk: see the module docstring).
        batch_size: Images per loader batch (>= 1). nb_epochs: Epochs to run (>= 1).
        generator: Shuffling and every random draw (None: torch's global generator).
        scheduler: Learning-rate scheduler with ``step()``, stepped once after each epoch (ART's convention).
        start_epoch: 0-based index of the first epoch, for warm-ups when training resumes.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from art_ext.training.certified import MACERTraining, train_certified_epochs
        >>> def fit(seed):
        ...     torch.manual_seed(0)
        ...     model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        ...     x = torch.rand(12, 1, 2, 2, generator=torch.Generator().manual_seed(1))
        ...     history = train_certified_epochs(
        ...         model, x, torch.arange(12) % 3, MACERTraining(0.25, num_noise_vec=4),
        ...         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), batch_size=4, nb_epochs=2,
        ...         generator=torch.Generator().manual_seed(seed))
        ...     return history, model
        >>> (history, model), (again, _) = fit(0), fit(0)
        >>> len(history), history == again, model.training
        (2, True, True)
    """
    device = _check_model(model)
    method = _check_method(method)
    _check_generator(generator, device)
    x, y = _check_data(x, y, model, device)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    check_int(batch_size, "batch_size")
    check_int(nb_epochs, "nb_epochs")
    start_epoch = _check_epoch(start_epoch, "start_epoch")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method (a torch.optim.lr_scheduler), got "
                        f"{type(scheduler).__name__}")
    _check_label_range(model, x, y)
    saved = [(module, module.training) for module in model.modules()]
    history: list[float] = []
    try:
        model.train()
        for epoch in range(start_epoch, start_epoch + nb_epochs):
            history.append(run_epoch(model, x, y, method, optimizer=optimizer, batch_size=batch_size,
                                     generator=generator, epoch=epoch))
            if scheduler is not None:
                scheduler.step()  # type: ignore[attr-defined]
    finally:
        for module, flag in saved:
            module.training = flag
    return history
