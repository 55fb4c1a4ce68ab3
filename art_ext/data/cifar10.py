"""CIFAR-10 from torchvision's on-disk format (``<root>/cifar-10-batches-py``), without a download unless asked.

torchvision's ``CIFAR10`` refuses to load unless all six batch files pass their md5 check, so a partial copy or a
small fixture cannot be read through it. This module reads the same pickle format directly and uses torchvision only
to download (``download=True``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from art_ext.data.base import LabeledImages

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: per-channel statistics used by Cohen et al. for their CIFAR-10 models (locuslab/smoothing datasets.py)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    data = batch[b"data"] if b"data" in batch else batch["data"]
    labels = batch.get(b"labels", batch.get("labels"))
    if labels is None:
        raise ValueError(f"{path} has no 'labels' entry; is it a CIFAR-10 (not CIFAR-100) batch file?")
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(labels, dtype=np.int64)


def load_cifar10(
    root: str | Path, split: str = "test", *, download: bool = False, limit: int | None = None
) -> LabeledImages:
    """CIFAR-10 as ``LabeledImages`` (x float32 [N, 3, 32, 32] in [0, 1], y int64 [N]), in the files' order.

    Args:
        root: Folder that holds (or will hold) ``cifar-10-batches-py``.
        split: ``"train"`` (50,000) or ``"test"`` (10,000).
        download: Fetch the files with torchvision when they are missing (needs network access).
        limit: Keep the first ``limit`` images (RobustBench's ``load_cifar10(n_examples)`` convention).
    Raises:
        FileNotFoundError: when batch files are missing and ``download`` is False.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    folder = Path(root) / FOLDER
    names = TRAIN_FILES if split == "train" else TEST_FILES
    missing = [name for name in names if not (folder / name).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10

        CIFAR10(root=str(root), train=split == "train", download=True)
        missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 {split} files {missing} not found in {folder}; place torchvision's 'cifar-10-batches-py' "
            "folder under root, or pass download=True on a machine with network access"
        )
    parts = [_read_batch(folder / name) for name in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images).float().div_(255.0)
    return LabeledImages(x, torch.from_numpy(labels), CLASSES, f"cifar10/{split}")
