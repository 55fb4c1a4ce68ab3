"""Tiny deterministic models with known answers, for tests and examples (public, like advertorch's test utils)."""

from __future__ import annotations

import torch
from torch import nn


class LinearToy(nn.Module):
    """Two-class linear classifier f(x) = 1[w . x + b > 0] on flattened inputs, as logits [0, w . x + b].

    Its Gaussian-smoothed classifier is itself, with p_A = Phi(|w . x + b| / (sigma ||w||)), so the exact L2 robustness
    radius of the smoothed classifier is the distance to the hyperplane, |w . x + b| / ||w|| (the tight case of Cohen
    et al., 2019, Thm. 1).
    """

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.register_buffer("w", w.flatten().to(torch.float64))
        self.b = float(b)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).to(torch.float64) @ self.w + self.b  # [B]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.score(x)
        return torch.stack([torch.zeros_like(z), z], dim=1).to(x.dtype)  # [B, 2]

    def true_radius(self, x: torch.Tensor) -> torch.Tensor:
        """Exact L2 distance of each x to the decision boundary (float64 [B])."""
        return self.score(x).abs() / self.w.norm()

    def true_class(self, x: torch.Tensor) -> torch.Tensor:
        return (self.score(x) > 0).long()


class ScriptedVotes(nn.Module):
    """Returns the scripted class of each successive sample it sees, ignoring the input: lets a test fix the exact
    vote counts CERTIFY sees (n0 selection votes first, then n estimation votes)."""

    def __init__(self, votes: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("votes", votes.long())
        self.num_classes = num_classes
        self.position = 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        self.batch_sizes.append(m)
        chunk = self.votes[self.position : self.position + m]
        if chunk.shape[0] != m:
            raise RuntimeError(f"ScriptedVotes ran out of votes at position {self.position}")
        self.position += m
        return nn.functional.one_hot(chunk, self.num_classes).to(x.dtype)
