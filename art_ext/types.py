"""Small shared types and constants used across art_ext."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

#: Label returned wherever a smoothed classifier declines to decide (Cohen et al. PREDICT / CERTIFY).
#: Every art_ext API uses -1, never an all-zero score row (which ``argmax`` silently maps to class 0).
ABSTAIN: int = -1

Norm = Literal["l2", "linf"]

#: A classifier as a function: images [m, C, H, W] in [0, 1] -> logits (or scores) [m, K].
LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Bounds:
    """Closed value range of the inputs. art_ext works in pixel space, so this is (0, 1) by default."""

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"Bounds need low < high, got low={self.low}, high={self.high}")
