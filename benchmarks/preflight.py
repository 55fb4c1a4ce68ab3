"""The preflight of a run: one example of the suite's dataset through every model it names, before the first row.

A model that cannot take the dataset's examples (a digits model in a CIFAR-10 suite, a CIFAR-10 model on digits), a
classifier with fewer outputs than the dataset has classes, non-finite logits, or a denoiser that changes the shape
of its input is a ``SuiteError`` (one line, exit status 2) naming the model, the dataset and the example's shape,
instead of a traceback in the middle of the run. A denoiser keeps the shape of its input, so the (classifier,
denoiser) pairs a suite builds take the example whenever each model does; the check runs each model once.
"""

from __future__ import annotations

import torch
from torch import nn

from art_ext.ops.modes import eval_mode
from benchmarks.common import SuiteError


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def check_models(modules: dict[str, tuple[str, nn.Module]], x: torch.Tensor, num_classes: int, dataset: str) -> None:
    """Run one example ``x`` [1, C, H, W] of ``dataset`` through each model of ``modules`` (reference -> (zoo kind or
    "classifier", module)); raises ``SuiteError`` for the first one that does not fit."""
    shape = list(x.shape)
    for ref, (kind, module) in modules.items():
        if kind not in ("classifier", "denoiser"):
            continue  # e.g. a diffusion model: its kind maps sigma to a timestep and checks its own inputs
        try:
            with torch.no_grad(), eval_mode(module):
                out = module(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            raise SuiteError(f"model {ref!r} does not take the examples of dataset {dataset!r} (one example has shape "
                             f"{shape}): {_first_line(err)}; use a model made for this dataset") from err
        if not isinstance(out, torch.Tensor):
            raise SuiteError(f"model {ref!r} returns {type(out).__name__} on an example of dataset {dataset!r}; "
                             "expected a tensor")
        if kind == "denoiser":
            if list(out.shape) != shape:
                raise SuiteError(f"denoiser {ref!r} maps an example of dataset {dataset!r} of shape {shape} to shape "
                                 f"{list(out.shape)}; a denoiser must keep the shape of its input")
            continue
        if out.dim() != 2 or out.shape[0] != 1 or out.shape[1] < num_classes:
            raise SuiteError(f"model {ref!r} gives outputs of shape {list(out.shape)} on an example of dataset "
                             f"{dataset!r} ({num_classes} classes); expected [1, K] with K >= {num_classes}")
        if not bool(torch.isfinite(out).all()):
            raise SuiteError(f"model {ref!r} gives non-finite logits on an example of dataset {dataset!r}")
