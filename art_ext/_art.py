"""The one module that knows how ART estimators are built inside.

Everything ART-specific that the adapters need lives here, so an ART upgrade touches one file.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn


def check_pytorch_classifier(estimator: object) -> None:
    from art.estimators.classification import PyTorchClassifier

    if not isinstance(estimator, PyTorchClassifier):
        raise TypeError(
            f"expected an art.estimators.classification.PyTorchClassifier, got {type(estimator).__name__}"
        )


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
    therefore added in pixel space *before* ART's preprocessing, as Cohen et al. certify.
    """

    def __init__(
        self, estimator: object, *, wrap_defence: Callable[[object], Callable[[torch.Tensor], torch.Tensor]] | None = None
    ) -> None:
        super().__init__()
        from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

        check_pytorch_classifier(estimator)
        operations = [op for op in estimator.preprocessing_operations if op.apply_predict]  # type: ignore[attr-defined]
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
                    "every preprocessing defence is a PreprocessorPyTorch)"
                )
        self._operations = operations
        self.model = estimator.model  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self._operations:
            if hasattr(op, "apply_predict"):
                x, _ = op.forward(x, None)
            else:  # a tensor function made by ``wrap_defence``
                x = op(x)
        return self.model(x)


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
