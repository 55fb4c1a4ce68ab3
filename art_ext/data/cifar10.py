"""CIFAR-10 from torchvision's on-disk format (``<root>/cifar-10-batches-py``), without a download unless asked.

torchvision's ``CIFAR10`` refuses to load unless all six batch files pass their md5 check, so a partial copy or a
small fixture cannot be read through it. This module reads the same pickle format directly and uses torchvision only
to download (``download=True``).

The batch files are pickles, and a pickle can run any code when it is loaded; a file placed under ``root`` is not
trusted for that. They are read with a restricted unpickler that builds only what a CIFAR-10 batch holds (dicts,
lists, bytes, strings, numbers and numpy arrays of plain dtypes) and refuses any other global with an error that
names the file, so a crafted file fails before anything of it runs. ``batch_md5`` / ``TORCHVISION_MD5`` tell whether
a file is the one torchvision publishes.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

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


#: md5 of each batch file as torchvision publishes them (torchvision.datasets.CIFAR10.train_list / test_list)
TORCHVISION_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
#: the only globals a CIFAR-10 batch pickle refers to (numpy arrays, and Python 2's way of storing bytes)
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays only; any other global (a function to call, a class to build) is
    refused before it can run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)


def batch_md5(path: str | Path) -> str:
    """The md5 of a batch file (compare with ``TORCHVISION_MD5``)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        try:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{path} is not a CIFAR-10 batch file ({err}); nothing of it was run") from None
    if not isinstance(batch, dict) or not (b"data" in batch or "data" in batch):
        raise ValueError(f"{path} is not a CIFAR-10 batch file (expected a dict with 'data' and 'labels')")
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
