"""The embedded default dataset: scikit-learn's ``load_digits`` (1,797 real 8x8 handwritten digits, no download).

Images are scaled to [0, 1] (raw values are 0..16) and, by default, bilinearly upsampled to 16x16. At 16x16 the
digits are smooth like natural images, so white noise at sigma = 0.5 breaks a standard CNN (near chance) while a
noise-trained CNN or a denoiser recovers most of the accuracy: the regime of CIFAR-10 at sigma = 0.5
(sigma * sqrt(d) / ||x|| is 1.14 here, about 0.96 on CIFAR-10). 8x8 shows the effects only weakly and 32x32 saturates
at sigma = 0.5 while costing 4x more (measurements in the project's research notes).

Splits are fixed and stratified: 500 test images (``random_state=0``), then 200 validation images taken from the
remaining 1,297 (``random_state=1``), leaving 1,097 for training. Model selection (early stopping, sigma choice,
checkpoints) uses ``val``, never ``test``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from art_ext.data.base import LabeledImages

SPLITS = ("train", "val", "test")
TEST_SIZE = 500
VAL_SIZE = 200
DEFAULT_RESOLUTION = 16
CLASSES = tuple(str(i) for i in range(10))


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Indices into ``sklearn.datasets.load_digits()`` for each split (fixed, stratified, disjoint)."""
    from sklearn.model_selection import train_test_split

    _, y = _raw()
    all_idx = np.arange(len(y))
    rest, test = train_test_split(all_idx, test_size=TEST_SIZE, stratify=y, random_state=0)
    train, val = train_test_split(rest, test_size=VAL_SIZE, stratify=y[rest], random_state=1)
    return {"train": train, "val": val, "test": test}


def load_digits(split: str = "test", *, resolution: int = DEFAULT_RESOLUTION) -> LabeledImages:
    """The digits split as ``LabeledImages`` with x float32 [N, 1, R, R] in [0, 1] and y int64 [N].

    Args:
        split: ``"train"`` (1,097), ``"val"`` (200) or ``"test"`` (500).
        resolution: side length R >= 8; 8 is the native size, larger values are bilinear upsampling
            (``align_corners=False``, values stay in [0, 1]).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {SPLITS}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an int >= 8 (native size 8), got {resolution!r}")
    images, labels = _raw()
    idx = split_indices()[split]
    x = torch.from_numpy(images[idx]).unsqueeze(1)  # [N, 1, 8, 8]
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.from_numpy(labels[idx])
    return LabeledImages(x.contiguous(), y, CLASSES, f"digits{resolution}/{split}")
