"""The preflight of a run: one example of the suite's dataset through every model it names and through every
(model, defence) pair it will run, before the first row.

A model that cannot take the dataset's examples (a digits model in a CIFAR-10 suite, a CIFAR-10 model on digits), a
classifier with fewer outputs than the dataset has classes, non-finite logits, or a denoiser that changes the shape
of its input is a ``SuiteError`` (one line, exit status 2) naming the model, the dataset and the example's shape,
instead of a traceback in the middle of the run. Then each pair a kind lists (``pairs(suite)``: classifier
reference, zoo denoiser or diffusion model, sigma) is composed as the run composes it (``DenoisedClassifier``; a
diffusion model at the pair's sigma) and the example goes through the composition, so a denoiser that the classifier
cannot follow (a digits diffusion model in front of a CIFAR-10 classifier, which the per-model check cannot run
without a sigma) is the same one-line error, naming both.
"""

from __future__ import annotations

import torch
from torch import nn

from art_ext.ops.modes import eval_mode
from benchmarks.common import SuiteError


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


#: (classifier reference, zoo denoiser or diffusion name, sigma or None) of one (model, defence) pair a suite runs
Pair = tuple[str, str, float | None]


def check_models(modules: dict[str, tuple[str, nn.Module]], x: torch.Tensor, num_classes: int, dataset: str) -> None:
    """Run one example ``x`` [1, C, H, W] of ``dataset`` through each model of ``modules`` (reference -> (zoo kind or
    "classifier", module)); raises ``SuiteError`` for the first one that does not fit."""
    for ref, (kind, module) in modules.items():
        if kind not in ("classifier", "denoiser"):
            continue  # e.g. a diffusion model: it needs a sigma, so only its pairs (check_pairs) run it
        _check(f"model {ref!r}" if kind == "classifier" else f"denoiser {ref!r}", kind, module, x, num_classes,
               dataset)


def check_pairs(pairs: list[Pair], modules: dict[str, tuple[str, nn.Module]], x: torch.Tensor, num_classes: int,
                dataset: str) -> None:
    """Run ``x`` through each (classifier, denoiser) pair of ``pairs`` composed from ``modules`` as the run composes
    it; raises ``SuiteError`` naming both for the first pair that does not fit. A pair whose models are not both in
    ``modules`` is skipped (their references were checked on their own)."""
    from art_ext import zoo
    from art_ext.defences import DenoisedClassifier, DiffusionDenoiser

    for classifier, denoiser, sigma in dict.fromkeys(pairs):
        if classifier not in modules or denoiser not in modules:
            continue
        kind, module = modules[denoiser]
        if kind == "diffusion":
            if sigma is None:
                continue
            entry = zoo.get_entry(denoiser, kind="diffusion")
            module = DiffusionDenoiser(module, entry.scheduler(), sigma=sigma)  # type: ignore[attr-defined]
        elif kind != "denoiser":
            continue
        pair = DenoisedClassifier(module, modules[classifier][1])
        _check(f"the pair denoiser {denoiser!r} + model {classifier!r}", "classifier", pair, x, num_classes, dataset)


def _check(name: str, kind: str, module: nn.Module, x: torch.Tensor, num_classes: int, dataset: str) -> None:
    """One example through one module (``name``: how the error names it); raises ``SuiteError`` if it does not fit."""
    shape = list(x.shape)
    try:
        with torch.no_grad(), eval_mode(module):
            out = module(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise SuiteError(f"{name} does not take the examples of dataset {dataset!r} (one example has shape "
                         f"{shape}): {_first_line(err)}; use {'a denoiser and ' if ' + ' in name else ''}a model made "
                         "for this dataset") from err
    if not isinstance(out, torch.Tensor):
        raise SuiteError(f"{name} returns {type(out).__name__} on an example of dataset {dataset!r}; expected a "
                         "tensor")
    if kind == "denoiser":
        if list(out.shape) != shape:
            raise SuiteError(f"{name} maps an example of dataset {dataset!r} of shape {shape} to shape "
                             f"{list(out.shape)}; a denoiser must keep the shape of its input")
        return
    if out.dim() != 2 or out.shape[0] != 1 or out.shape[1] < num_classes:
        raise SuiteError(f"{name} gives outputs of shape {list(out.shape)} on an example of dataset {dataset!r} "
                         f"({num_classes} classes); expected [1, K] with K >= {num_classes}")
    if not bool(torch.isfinite(out).all()):
        raise SuiteError(f"{name} gives non-finite logits on an example of dataset {dataset!r}")
