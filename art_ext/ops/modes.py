"""Snapshot and restore the train/eval mode of every submodule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
