"""Content hashes of weights and tensors: one canonical definition, used by the zoo's cache and shipped weights and by
the benchmarks' manifests (zoo, ``file:``, ``robustbench:`` and ``torchvision:`` models, datasets).

``state_dict_sha256`` hashes a state_dict in a form that depends only on its contents: the keys in sorted order and,
for each, the key name, the dtype, the shape and the raw bytes of the contiguous CPU tensor. Two modules with the same
hash hold the same tensors bit for bit, whatever device they sit on, the order their parameters were registered in or
the file format they were read from.

Examples:
    >>> import torch
    >>> a = torch.nn.Linear(2, 1)
    >>> b = torch.nn.Linear(2, 1)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> state_dict_sha256(a) == state_dict_sha256(b.state_dict())
    True
    >>> len(tensor_sha256(torch.zeros(3)))
    64
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def _update(digest: Any, tensor: torch.Tensor) -> None:
    """Feed ``tensor``'s dtype, shape and raw bytes (contiguous, on the CPU) into ``digest``."""
    t = tensor.detach().to("cpu").contiguous()
    digest.update(str(t.dtype).encode())
    digest.update(repr(tuple(t.shape)).encode())
    # viewed as bytes: every dtype (bfloat16 and bool included), no copy beyond the contiguous CPU tensor
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy())


def state_dict_sha256(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """The sha256 (64 hex digits) of a module's ``state_dict()`` or of a state_dict: for each key in sorted order, its
    name, dtype, shape and the raw bytes of the contiguous CPU tensor.

    Raises:
        TypeError: on a value that is not a tensor (a state_dict holds only tensors).
    """
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] must be a tensor, got {type(value).__name__}")
        digest.update(key.encode())
        digest.update(b"\0")
        _update(digest, value)
    return digest.hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """The sha256 (64 hex digits) of one tensor: its dtype, shape and raw bytes (contiguous, on the CPU)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    digest = hashlib.sha256()
    _update(digest, tensor)
    return digest.hexdigest()
