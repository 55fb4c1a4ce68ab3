"""The in-memory labelled image set every art_ext loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabeledImages:
    """Images and labels held as tensors.

    Attributes:
        x: float32 [N, C, H, W], values in [0, 1] (pixel space, channel first).
        y: int64 [N] class indices.
        classes: class names, index i is label i.
        name: a short description, e.g. ``"digits16/test"``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or self.y.dim() != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x must be [N, C, H, W] and y [N]; got {tuple(self.x.shape)} and {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def head(self, limit: int | None) -> LabeledImages:
        """The first ``limit`` examples (all when ``None``). Loaders return a fixed, shuffled order, so a head is a
        fixed subset with every class represented."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        return LabeledImages(self.x[:limit], self.y[:limit], self.classes, f"{self.name}[:{limit}]")

    def to(self, device: torch.device | str) -> LabeledImages:
        return LabeledImages(self.x.to(device), self.y.to(device), self.classes, self.name)
