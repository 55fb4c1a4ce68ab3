"""Input validation with errors that name the bad value and the expected form."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from art_ext.types import Bounds


def check_images(x: object, *, name: str = "x", low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Check that ``x`` is a 4-D floating tensor [B, C, H, W] of finite values inside [low, high]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W] (channel first), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with values in [{low}, {high}], got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    finite = torch.isfinite(x.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values; expected finite values in [{low}, {high}]")
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if lo < low or hi > high:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside the declared range [{low}, {high}]; "
            "art_ext works in pixel space: scale images to [0, 1] and put normalization inside the model"
        )
    return x


def model_dtype(model: object, default: torch.dtype | None = None, *, strict: bool = False) -> torch.dtype | None:
    """The floating dtype a model takes its input in: that of its first floating parameter (of its first floating
    buffer when it has no parameters); ``default`` for a plain callable or a module without floating tensors.

    A composite may mix dtypes (a float32 denoiser in front of a float64 classifier converts inside); its input dtype
    is its first layer's. With ``strict``, a module whose parameters mix floating dtypes is refused (``ValueError``
    naming them), for entry points that also compute gradients of its parameters in one dtype."""
    if not isinstance(model, nn.Module):
        return default
    tensors: list[torch.Tensor] = [p for p in model.parameters() if p.is_floating_point()]
    if not tensors:
        tensors = [t for t in model.buffers() if t.is_floating_point()]
    dtypes = {t.dtype for t in tensors}
    if strict and len(dtypes) > 1:
        raise ValueError(f"{type(model).__name__} has parameters of several floating dtypes "
                         f"{sorted(str(d) for d in dtypes)}; convert it to one dtype (module.to(torch.float32)) so its "
                         "inputs can be cast once to that dtype")
    return tensors[0].dtype if tensors else default


def cast_to_model_dtype(
    x: torch.Tensor, model: object, *, name: str = "x", default: torch.dtype | None = None
) -> torch.Tensor:
    """``x`` in the dtype of ``model`` (``model_dtype``; ``default`` for a plain callable, None = keep x's): the one
    cast of an entry point, after its checks.

    float64, float16 or bfloat16 images given to a float32 model are computed in float32 (and float32 images given to
    a float16 model in float16), so no kernel meets two dtypes deep inside. Values that overflow the target dtype are
    refused, naming the dtypes; values in [0, 1] never do (0 and 1 are exact in every float type).
    """
    target = model_dtype(model, default)
    if target is None or x.dtype == target:
        return x
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    cast = x.to(target)
    if not bool(torch.isfinite(cast).all()) and bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} has dtype {x.dtype} and values in [{float(x.min()):.4g}, {float(x.max()):.4g}] that "
                         f"overflow the model's dtype {target}; pass inputs representable in {target}")
    return cast


def check_batch(x: object, *, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a non-empty floating tensor [B, ...] of finite values (any range, any trailing shape).

    For entry points that take model inputs of any form (the rigor checks); images use ``check_images``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, ...], got {type(x).__name__}")
    if x.dim() == 0 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor [B, ...] of finite values, got dtype {x.dtype} and "
                         f"shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); expected at least one example")
    finite = torch.isfinite(x.detach())
    if not bool(finite.all()):
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or infinite values; expected finite values")
    return x


def check_sigma(sigma: float, *, allow_zero: bool = False) -> float:
    """Check a noise level: finite and > 0 (or >= 0 when ``allow_zero``)."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a real number, got {sigma!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"sigma must be finite and {bound} (pixel units), got {sigma!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """Check an integer >= 1 (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_alpha(alpha: float) -> float:
    """Check a failure probability strictly inside (0, 1)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"alpha must be a real number in (0, 1), got {alpha!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha!r}")
    return value


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def check_fixed_function(base: Callable[[torch.Tensor], torch.Tensor], *, name: str = "base") -> None:
    """Refuse a base classifier whose output for one input is not a fixed function of that input alone.

    Monte-Carlo certificates treat the n draws as i.i.d. Bernoulli trials of one deterministic function, and the
    smoothed forward must not change the model it samples. Refused: any module in training mode (active dropout,
    BatchNorm that normalizes with batch statistics and updates its running statistics), and any BatchNorm without
    running statistics (``track_running_stats=False`` or ``running_mean=None``, as Tent-style models), which uses
    batch statistics even in eval mode, so an image's votes would depend on the other images in its device batch.
    """
    if not isinstance(base, nn.Module):
        return

    def shown(test: Callable[[nn.Module], bool]) -> str:
        names = [mod_name or type(base).__name__ for mod_name, mod in base.named_modules() if test(mod)]
        return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")

    in_training = shown(lambda mod: mod.training)
    if in_training:
        raise ValueError(
            f"{name} has modules in training mode ({in_training}); call {name}.eval() first: a base classifier must "
            "be a fixed function while it is sampled (train-mode BatchNorm or dropout make the draws dependent, and "
            "train-mode BatchNorm would update its running statistics)"
        )
    batch_stats = shown(lambda mod: isinstance(mod, _BatchNorm) and (
        not mod.track_running_stats or mod.running_mean is None or mod.running_var is None))
    if batch_stats:
        raise ValueError(
            f"{name} has BatchNorm layers without running statistics ({batch_stats}): they normalize with the "
            "statistics of the current batch even in eval mode, so one image's votes would depend on the other "
            "images in its batch; give them running statistics (track_running_stats=True, estimated on training "
            "images, which art_ext.defences.adapt_batchnorm can then adapt to noise) before smoothing"
        )


def check_output_width(logits: torch.Tensor, num_classes: int, *, name: str = "base") -> None:
    """Check logits [batch, classes] with 2 <= classes <= num_classes."""
    if logits.dim() != 2:
        raise ValueError(f"{name} must return logits of shape [batch, classes], got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        raise ValueError(
            f"{name} returns one logit per sample (shape {tuple(logits.shape)}); art_ext reads class scores "
            "[batch, classes] by argmax, and one column would make every vote class 0. Wrap a binary model z(x) as "
            "two columns, e.g. lambda x: torch.cat([torch.zeros_like(z(x)), z(x)], dim=1), so class 1 wins where "
            "z > 0, and declare 2 classes (num_classes=2; nb_classes=2 on an ART estimator)"
        )
    if logits.shape[1] > num_classes:
        raise ValueError(
            f"{name} returns {logits.shape[1]} class scores per sample but {num_classes} classes are declared "
            f"(num_classes; nb_classes on an ART estimator): declare at least {logits.shape[1]}"
        )


def bad_logit_rows(logits: torch.Tensor) -> torch.Tensor:
    """bool [..., ] per row of logits [..., K]: a NaN or +inf entry, or every entry -inf (no class can win).

    A -inf entry alone is allowed: log-probabilities of impossible classes and the padding of narrow bases are -inf.
    """
    logits = logits.detach()
    return torch.isnan(logits).any(dim=-1) | torch.isposinf(logits).any(dim=-1) | torch.isneginf(logits).all(dim=-1)


def raise_on_nonfinite(nonfinite: torch.Tensor, *, name: str = "base") -> None:
    """Raise when any image produced NaN or infinite logits; ``nonfinite`` counts the bad draws per image [B]."""
    if bool(nonfinite.any()):
        first = int(nonfinite.nonzero()[0, 0])
        raise ValueError(
            f"{name} returned NaN or infinite logits for image {first} of the batch ({int(nonfinite[first])} of its "
            f"noisy draws; {int((nonfinite > 0).sum())} image(s) affected); votes from non-finite logits are "
            "meaningless, so nothing is certified: check the model on noisy inputs"
        )


def warn_if_never_certifies(n: int, alpha: float) -> None:
    """Warn when even n agreeing votes out of n cannot give p_A_lower > 1/2 (the Clopper-Pearson cap alpha^(1/n))."""
    if alpha ** (1.0 / n) <= 0.5:
        warnings.warn(
            f"n={n} with alpha={alpha} can never certify: even if all {n} votes agree, the Clopper-Pearson lower "
            f"bound is alpha**(1/n) = {alpha ** (1.0 / n):.4f} <= 0.5, so every point abstains; "
            f"use n >= {math.ceil(math.log(alpha) / math.log(0.5)) + 1}",
            RuntimeWarning,
            stacklevel=3,
        )


# ---- the input check of the pure-torch attack cores (pgd, bpda_pgd, epgd, smoothadv_pgd, nattack) -------------
def check_attack_inputs(x: object, y: object, bounds: Bounds, num_classes: int | None = None, *,
                        attack: str = "the attack") -> None:
    """Refuse malformed inputs of an attack core before any work, with one-line errors naming the bad value.

    ``x`` must be a non-empty floating tensor [B, ...] of finite values inside ``bounds`` (nothing is clamped: an
    input outside the box would be moved by the attack's projection, not attacked); ``y`` must be int64 class
    indices of shape [B], >= 0, and < ``num_classes`` when it is given (without it, the cores check the range
    against the model's output width at its first forward). One check for every core (``pgd``, ``bpda_pgd``,
    ``epgd``, ``smoothadv_pgd``, ``nattack``), as ``certify`` checks its input, before any model call.

    Raises:
        TypeError: ``x`` or ``y`` is not a tensor. ValueError: any other violation.
    """
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise ValueError(f"x has dtype {x.dtype}; expected floating inputs inside the attack's bounds "
                         f"[{bounds.low}, {bounds.high}] (e.g. x.float() / 255 for 8-bit images)")
    x = check_batch(x, name="x")
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if lo < bounds.low or hi > bounds.high:
        raise ValueError(f"x has values in [{lo:.4g}, {hi:.4g}], outside {attack}'s bounds [{bounds.low}, "
                         f"{bounds.high}]; pass inputs inside the bounds (e.g. x / 255 for [0, 255] images) or "
                         "bounds=Bounds(low, high) matching the data")
    check_labels(y, x.shape[0], num_classes)


def check_labels(y: object, batch: int, num_classes: int | None = None) -> None:
    """Check that ``y`` holds int64 class indices of shape [batch], >= 0 (and < ``num_classes`` when given)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of int64 class indices of shape [{batch}], got {type(y).__name__}")
    if y.dim() == 2 and y.shape[1] == 1:
        raise ValueError(f"y has shape {tuple(y.shape)}, a column; pass class indices of shape [{batch}] "
                         "(y.squeeze(1))")
    if y.dim() == 2:
        raise ValueError(f"y has shape {tuple(y.shape)}, one-hot or scores; pass class indices of shape [{batch}] "
                         "(y.argmax(1) for one-hot)")
    if tuple(y.shape) != (batch,):
        raise ValueError(f"y has shape {tuple(y.shape)}; expected class indices of shape [{batch}], one per image "
                         "of x")
    if y.dtype != torch.int64:
        raise ValueError(f"y has dtype {y.dtype}; expected int64 class indices of shape [{batch}] (y.long() for "
                         "integer labels)")
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise ValueError(f"y holds negative labels (min {low}); expected class indices >= 0")
    if num_classes is not None and high >= num_classes:
        raise ValueError(f"y holds labels up to {high} but the model returns {num_classes} class scores; expected "
                         f"class indices in [0, {num_classes})")
