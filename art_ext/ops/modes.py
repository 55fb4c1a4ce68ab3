"""Snapshot and restore the train/eval mode of every submodule (and, for ``frozen``, parameter gradients)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` (and all submodules) in eval mode for the block, then restore each submodule's own flag."""
    saved = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in saved:
            m.training = flag


@contextmanager
def frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` for every module during the block (a classifier that guides a training
    objective, or a model under attack); both restored afterwards."""
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    with ExitStack() as stack:
        for module in modules:
            stack.enter_context(eval_mode(module))
        for p, _ in saved:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in saved:
                p.requires_grad_(flag)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``, then restore the previous count.

    CPU kernels reduce in a thread-count-dependent order, so training with a fixed count makes weights reproducible
    across machines and across callers that changed the count.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
