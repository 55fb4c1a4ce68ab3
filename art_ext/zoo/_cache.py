"""The zoo's weight cache: one file per entry, named by its fingerprint, one read and one write path for every kind.

``<cache>/zoo/<name>-<fingerprint>.pt`` holds ``{"state_dict": ..., "info": ...}``; a changed recipe changes the
fingerprint and so the file name, which retrains instead of loading stale weights. ``<name>-<fingerprint>.ckpt``
beside it is a recipe's resumable training state while the entry trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from art_ext.zoo.entries import Entry, ZooModel


def cache_dir() -> Path:
    """``$ART_EXT_CACHE`` if set, else ``$XDG_CACHE_HOME/art_ext`` (default ``~/.cache/art_ext``)."""
    if os.environ.get("ART_EXT_CACHE"):
        return Path(os.environ["ART_EXT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "art_ext"


def cache_file(entry: Entry, cache: Path | str | None = None) -> Path:
    """Where the weights of ``entry`` are cached (``cache`` overrides ``cache_dir()``)."""
    folder = Path(cache) if cache is not None else cache_dir()
    return folder / "zoo" / f"{entry.name}-{entry.fingerprint()}.pt"


def checkpoint_file(entry: Entry, cache: Path | str | None = None) -> Path:
    """Where a recipe may keep the resumable state of ``entry``'s training."""
    return cache_file(entry, cache).with_suffix(".ckpt")


def read(entry: Entry, path: Path, device: str | torch.device) -> ZooModel:
    """The cached model of ``entry`` at ``path``, on ``device``, in eval mode."""
    saved = torch.load(path, map_location=device, weights_only=True)
    module = entry.build().to(device)
    module.load_state_dict(saved["state_dict"])
    return ZooModel(module.eval(), entry, saved["info"])


def write(model: ZooModel, path: Path) -> None:
    """Save ``model``'s weights and info at ``path`` atomically (a concurrent reader never sees a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": model.module.state_dict(), "info": model.info}, tmp)
    os.replace(tmp, path)
