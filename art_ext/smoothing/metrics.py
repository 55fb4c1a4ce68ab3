"""Certified accuracy, average certified radius (ACR) and curves, computed from labels and radii.

Abstentions and wrong labels count as not certified; every mean is over *all* points.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from art_ext.types import ABSTAIN


def _label_radius(certs: object) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(certs, "label") and hasattr(certs, "radius"):
        label, radius = certs.label, certs.radius
    elif isinstance(certs, tuple) and len(certs) == 2:
        label, radius = certs
    else:
        raise TypeError(f"expected Certificates or a (labels, radii) pair, got {type(certs).__name__}")
    label = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label, dtype=np.int64)
    radius = np.asarray(radius.cpu() if isinstance(radius, torch.Tensor) else radius, dtype=np.float64)
    if label.shape != radius.shape or label.ndim != 1:
        raise ValueError(f"labels and radii must be 1-D of equal length, got {label.shape} and {radius.shape}")
    return label, radius


def _true_labels(labels: object, size: int) -> np.ndarray:
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    if y.shape != (size,):
        raise ValueError(f"labels must have shape ({size},), got {y.shape}")
    return y


def certified_mask(certs: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """(correct [N] bool, radius [N] float64): correct means certified with the true label (abstain = wrong)."""
    label, radius = _label_radius(certs)
    y = _true_labels(labels, label.shape[0])
    return (label == y) & (label != ABSTAIN), radius


def certified_accuracy(certs: object, labels: object, radii: Iterable[float]) -> dict[float, float]:
    """Fraction of points that are correct with radius >= r, for each r (Cohen et al.'s approximate certified
    accuracy, locuslab/smoothing analyze.py ``ApproximateAccuracy``)."""
    correct, radius = certified_mask(certs, labels)
    if correct.size == 0:
        raise ValueError("certified_accuracy needs at least one point")
    return {float(r): float(np.mean(correct & (radius >= r))) for r in radii}


def average_certified_radius(certs: object, labels: object) -> float:
    """ACR = mean over all points of radius * 1[correct] (Zhai et al., 2020, arXiv:2001.02378v4, Eq. 7)."""
    correct, radius = certified_mask(certs, labels)
    if correct.size == 0:
        raise ValueError("average_certified_radius needs at least one point")
    return float(np.mean(np.where(correct, radius, 0.0)))


def abstain_rate(certs: object) -> float:
    label, _ = _label_radius(certs)
    return float(np.mean(label == ABSTAIN))


def certified_accuracy_curve(
    certs: object, labels: object, *, max_radius: float | None = None, num: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Certified accuracy on an even grid of ``num`` radii from 0 to ``max_radius`` (default: largest radius).

    Returns ``(radii, accuracy)`` arrays for plotting a step curve.
    """
    correct, radius = certified_mask(certs, labels)
    top = float(radius.max()) if max_radius is None else float(max_radius)
    grid = np.linspace(0.0, max(top, 1e-12), num)
    sorted_radii = np.sort(radius[correct])
    # number of correct points with radius >= r, for every r at once
    counts = sorted_radii.size - np.searchsorted(sorted_radii, grid, side="left")
    return grid, counts / correct.size
