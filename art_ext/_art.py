"""The ART boundary: the one module that knows how ART estimators are built inside.

Every adapter (attacks, estimators, preprocessors, ``score_randomized``) crosses from numpy to torch here, once,
through ``input_to_tensor`` (one input check: array type, dtype, NaN/inf, values inside the estimator's
``clip_values``, shape equal to ``estimator.input_shape``), reads labels with ``labels_to_indices`` (as ART reads
them), refuses unknown keywords with ``refuse_unknown_kwargs``, and crosses back once with ``to_numpy``. An ART
upgrade touches this file only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from art_ext.ops import validation
from art_ext.types import Bounds

#: art_ext's own convention: images in [0, 1], sigma and radii in pixel units.
PIXEL_BOUNDS = Bounds(0.0, 1.0)


def check_pytorch_classifier(estimator: object) -> None:
    from art.estimators.classification import PyTorchClassifier

    if not isinstance(estimator, PyTorchClassifier):
        raise TypeError(
            f"expected an art.estimators.classification.PyTorchClassifier, got {type(estimator).__name__}"
        )


def clip_bounds(estimator: object) -> Bounds:
    """The estimator's ``clip_values`` as ``Bounds`` (``None``: unbounded, as ART treats it).

    Per-channel ``clip_values`` arrays are reduced to their overall (min, max) for the box constraint; the input
    check uses the full arrays.
    """
    clip = getattr(estimator, "clip_values", None)
    if clip is None:
        return Bounds(-math.inf, math.inf)
    return Bounds(float(np.min(clip[0])), float(np.max(clip[1])))


def _expected_form(estimator: object) -> str:
    shape = tuple(getattr(estimator, "input_shape", ()) or ())
    clip = getattr(estimator, "clip_values", None)
    layout = "channels first" if getattr(estimator, "channels_first", True) else "channels last"
    where = "any finite value" if clip is None else f"values in [{float(np.min(clip[0]))}, {float(np.max(clip[1]))}]"
    dims = ", ".join(map(str, shape))
    return f"a float array of shape [N, {dims}] ({layout}, the estimator's input_shape) with {where}"


def input_to_tensor(estimator: object, x: object, *, name: str = "x", device: torch.device | None = None,
                    pixel_range: bool = False, dtype: torch.dtype = torch.float32, values: bool = True) -> torch.Tensor:
    """The one numpy -> torch crossing, with the one input check of every art_ext ART entry point.

    Checks, before any work: ``x`` is a numpy array (or a torch tensor, which ART's PyTorch attacks pass), of a
    floating dtype, non-empty, with shape ``[N, *estimator.input_shape]`` (a transposed channel order is named as
    such), finite, and inside ``estimator.clip_values`` (per-channel arrays honoured); with ``pixel_range`` also
    inside [0, 1] (art_ext's smoothing estimators, whose sigma is in pixel units). Nothing is clamped or broadcast.

    The one cast: any floating ``x`` (float16, bfloat16, float32, float64) is converted once, here, to ``dtype``
    (the dtype the model computes in; see ``model_dtype``), and the checks run on the converted values, so a value
    that does not fit ``dtype`` is refused as infinite instead of failing inside the model.

    ``values=False`` checks the form only (type, dtype, shape, non-empty), not the values (NaN/inf, range): for the
    methods ART's attacks call on their own intermediate iterates (``predict``, the gradients), which ART's
    ``PyTorchClassifier`` never range-checks either. User-facing entry points keep the default.

    Returns:
        tensor of ``dtype`` (default float32) on ``device`` (default: the estimator's device).
    Raises:
        TypeError / ValueError naming the bad value and the expected form.
    """
    expected = _expected_form(estimator)
    if isinstance(x, torch.Tensor):
        array_dtype_ok = x.is_floating_point()
        shape = tuple(x.shape)
    elif isinstance(x, np.ndarray):
        array_dtype_ok = np.issubdtype(x.dtype, np.floating)
        shape = x.shape
    else:
        raise TypeError(f"{name} must be a numpy array, {expected}; got {type(x).__name__}")
    if not array_dtype_ok:
        raise ValueError(f"{name} has dtype {x.dtype}; expected {expected}")
    input_shape = tuple(int(d) for d in getattr(estimator, "input_shape", ()) or ())
    if input_shape and (len(shape) != len(input_shape) + 1 or tuple(shape[1:]) != input_shape):
        hint = ""
        if len(shape) == len(input_shape) + 1 and len(shape) == 4:
            if (shape[3], shape[1], shape[2]) == input_shape or (shape[2], shape[3], shape[1]) == input_shape:
                hint = " (the channel order looks transposed: check channels_first)"
        raise ValueError(f"{name} has shape {shape}; expected {expected}{hint}")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape}); expected {expected}")
    t = torch.as_tensor(x, device=device or estimator_device(estimator)).to(dtype)  # the one cast
    if not values:
        return t
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        raise ValueError(f"{name} contains {int((~finite).sum())} NaN or infinite values (as {dtype}); expected "
                         f"{expected}")
    clip = getattr(estimator, "clip_values", None)
    if clip is not None:
        low = torch.as_tensor(np.asarray(clip[0], dtype=np.float32), device=t.device)
        high = torch.as_tensor(np.asarray(clip[1], dtype=np.float32), device=t.device)
        if bool((t < low).any()) or bool((t > high).any()):
            raise ValueError(
                f"{name} has values in [{float(t.min()):.4g}, {float(t.max()):.4g}], outside the estimator's "
                f"clip_values; expected {expected} (scale the inputs, or declare the estimator's clip_values)"
            )
    if pixel_range and (float(t.min()) < 0.0 or float(t.max()) > 1.0):
        raise ValueError(
            f"{name} has values in [{float(t.min()):.4g}, {float(t.max()):.4g}]; randomized smoothing in art_ext works "
            "on [0, 1] pixels (sigma and radii in pixel units): scale the inputs to [0, 1]"
        )
    return t


def model_dtype(module: object, default: torch.dtype = torch.float32) -> torch.dtype:
    """The floating dtype a module computes in (``art_ext.ops.validation.model_dtype``; ``default`` when it has no
    floating tensors); a module whose parameters mix floating dtypes is refused."""
    dtype = validation.model_dtype(module, default, strict=True)
    assert dtype is not None
    return dtype


def labels_to_indices(y: object, *, num_examples: int, nb_classes: int, device: torch.device,
                      name: str = "y") -> torch.Tensor:
    """Labels as ART reads them, returned as int64 indices [N]: indices [N], a column [N, 1] (read as indices, as
    ART's ``check_and_transform_label_format`` does) or one-hot / scores [N, nb_classes] (argmax). Anything else,
    a one-hot of the wrong width, non-integral or out-of-range indices, is refused."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if not isinstance(y, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array of labels [N] or one-hot [N, {nb_classes}], got {type(y).__name__}"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[1] != nb_classes:
            raise ValueError(
                f"{name} has shape {y.shape}: a one-hot array must have nb_classes={nb_classes} columns; expected "
                f"indices [N] or one-hot [N, {nb_classes}] with N={num_examples}"
            )
        indices = y.argmax(axis=1)
    elif y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError(f"{name} holds non-integer class indices; expected integers in [0, {nb_classes})")
        indices = y.astype(np.int64)
    else:
        raise ValueError(f"{name} has shape {y.shape}; expected indices [N] or one-hot [N, {nb_classes}]")
    if indices.shape[0] != num_examples:
        raise ValueError(f"{name} has {indices.shape[0]} labels for {num_examples} inputs; expected one per input")
    if indices.size and (indices.min() < 0 or indices.max() >= nb_classes):
        raise ValueError(f"{name} has class indices in [{indices.min()}, {indices.max()}]; expected [0, {nb_classes})")
    return torch.as_tensor(indices, dtype=torch.int64, device=device)


def refuse_unknown_kwargs(kwargs: dict[str, Any], known: Iterable[str], where: str) -> None:
    """Raise ``TypeError`` naming keywords that ``where`` does not use (ART silently ignores them)."""
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"{where} got unknown keyword(s) {unknown}; it accepts {sorted(known) or 'none'}")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The one torch -> numpy crossing."""
    return t.detach().cpu().numpy()


def check_pixel_clip_values(estimator: object) -> None:
    """art_ext works in [0, 1] pixel space; refuse estimators declared on another input range."""
    clip = getattr(estimator, "clip_values", None)
    if clip is None:
        return
    low_v, high_v = float(np.min(clip[0])), float(np.max(clip[1]))
    all_pixel = bool(np.all(np.asarray(clip[0]) == 0.0) and np.all(np.asarray(clip[1]) == 1.0))
    if not all_pixel:
        raise ValueError(
            f"estimator.clip_values is ({low_v}, {high_v}); art_ext expects inputs in [0, 1] so that sigma and radii "
            "are in pixel units: rescale inputs to [0, 1] and pass clip_values=(0, 1)"
        )


class ARTModelView(nn.Module):
    """An ``nn.Module`` equal to what an ART ``PyTorchClassifier`` computes at predict time.

    Applies the estimator's predict-time preprocessing operations (preprocessing defences, then the ``preprocessing``
    mean/std standardisation) as torch ops, then the estimator's model. Noise added to the input of this module is
    therefore added in pixel space *before* ART's preprocessing, as Cohen et al. certify. With
    ``postprocessing=True`` the estimator's ``postprocessing_defences`` (numpy-only in ART) are applied to the
    outputs too, so a score-based attack sees exactly what the defended ``predict`` returns; those outputs carry no
    gradient. ``nn.Module``s held by preprocessing defences (e.g. a denoiser) are registered as submodules, so
    ``eval()``, ``.to()`` and the fixed-function guard reach them.
    """

    def __init__(
        self,
        estimator: object,
        *,
        wrap_defence: Callable[[object], Callable[[torch.Tensor], torch.Tensor]] | None = None,
        postprocessing: bool = False,
    ) -> None:
        super().__init__()
        from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

        check_pytorch_classifier(estimator)
        operations = [op for op in estimator.preprocessing_operations if op.apply_predict]  # type: ignore[attr-defined]
        held = [value for op in operations for value in vars(op).values() if isinstance(value, nn.Module)]
        self.defence_modules = nn.ModuleList(held)
        if wrap_defence is not None:
            # BPDA: every preprocessing *defence* (not the mean/std standardisation) becomes a tensor function built
            # by ``wrap_defence(op)``; numpy-only defences are allowed then, since the wrapper owns their gradient.
            operations = [_wrap_operation(op, estimator, wrap_defence) for op in operations]
        for op in operations:
            if callable(op) and not hasattr(op, "apply_predict"):
                continue
            if not isinstance(op, PreprocessorPyTorch):
                raise TypeError(
                    f"preprocessing operation {type(op).__name__} is numpy-only; art_ext keeps sampling in torch and "
                    "needs PreprocessorPyTorch operations (ART converts `preprocessing=(mean, std)` to torch only when "
                    "every preprocessing defence is a PreprocessorPyTorch); attack it with BPDAPGD, which replaces "
                    "each defence by a straight-through surrogate"
                )
        self._operations = operations
        self._postprocessing = (
            [op for op in (getattr(estimator, "postprocessing_defences", None) or []) if op.apply_predict]
            if postprocessing else []
        )
        self.model = estimator.model  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self._operations:
            if hasattr(op, "apply_predict"):
                x, _ = op.forward(x, None)
            else:  # a tensor function made by ``wrap_defence``
                x = op(x)
        out = self.model(x)
        if self._postprocessing:
            # ART's postprocessors are numpy functions of the predictions; the scores they return are what a
            # query-based attacker observes (no gradient flows through them).
            preds = out.detach().cpu().numpy()
            for op in self._postprocessing:
                preds = op(preds)
            out = torch.as_tensor(np.asarray(preds), dtype=out.dtype, device=out.device)
        return out


def _wrap_operation(op: object, estimator: object, wrap_defence: Callable[[object], Callable]) -> object:
    """A preprocessing defence becomes ``wrap_defence(op)``; a numpy mean/std standardisation becomes torch ops."""
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd

    defences = getattr(estimator, "preprocessing_defences", None) or []
    if any(op is d for d in defences):
        return wrap_defence(op)
    if isinstance(op, StandardisationMeanStd):  # numpy standardisation (ART keeps it numpy next to numpy defences)
        mean = torch.as_tensor(np.asarray(op.mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(op.std, dtype=np.float32))

        def standardise(x: torch.Tensor) -> torch.Tensor:
            shape = (-1,) + (1,) * (x.dim() - 2) if mean.dim() == 1 and mean.numel() > 1 else mean.shape  # per channel
            return (x - mean.to(x.device).view(shape)) / std.to(x.device).view(shape)

        return standardise
    return op


def defence_as_tensor_function(op: object) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ART preprocessing defence as a tensor function (torch defences run in torch; numpy defences run on a
    detached numpy copy, so they carry no gradient and need BPDA)."""
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

    if isinstance(op, PreprocessorPyTorch):
        return lambda x: op.forward(x, None)[0]

    def numpy_defence(x: torch.Tensor) -> torch.Tensor:
        out, _ = op(x.detach().cpu().numpy(), None)  # type: ignore[operator]
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)

    return numpy_defence


def generator_for(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A torch.Generator on ``device`` seeded with ``seed`` (``None`` -> torch's default generator)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


def estimator_device(estimator: object) -> torch.device:
    return torch.device(getattr(estimator, "device", "cpu"))


# ---- Appended for issue 9 (attacks): the same input check for torch-level entry points ---------------------------
class InputSpec:
    """The expected form of inputs of an entry point that has no ART estimator (e.g. ``score_randomized``), in the
    attributes ``input_to_tensor`` reads from an estimator, so that such entry points run the *same* input check.

    Args:
        input_shape: Shape of one input (None: not checked). clip_values: (low, high) or None (unbounded).
        device: Where the tensor is placed.
    """

    def __init__(self, *, input_shape: tuple[int, ...] | None = None,
                 clip_values: tuple[float, float] | None = None, channels_first: bool = True,
                 device: torch.device | str = "cpu") -> None:
        self.input_shape = input_shape
        self.clip_values = clip_values
        self.channels_first = channels_first
        self.device = device


# ---- Appended for issue 12 (normalized-noise UNet): the estimator's own mean/std ---------------------------------
def estimator_normalization(estimator: object) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel ``(mean, std)`` of the estimator's ``preprocessing`` standardisation (ART applies it after
    the preprocessing defences), or None when it has none (an identity mean 0 / std 1 counts as none)."""
    check_pytorch_classifier(estimator)
    defences = getattr(estimator, "preprocessing_defences", None) or []
    for op in getattr(estimator, "preprocessing_operations", None) or []:
        if any(op is d for d in defences) or not (hasattr(op, "mean") and hasattr(op, "std")):
            continue
        mean = tuple(float(v) for v in np.asarray(op.mean, dtype=np.float64).ravel())
        std = tuple(float(v) for v in np.asarray(op.std, dtype=np.float64).ravel())
        if all(m == 0.0 for m in mean) and all(s == 1.0 for s in std):
            return None
        return mean, std
    return None
