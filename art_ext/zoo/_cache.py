"""The zoo's weight files: one format, one verified read path and one write path for the cache and the shipped weights.

``<cache>/zoo/<name>-<fingerprint>.pt`` holds a plain dict, readable with ``torch.load(..., weights_only=True)``::

    {"name": str, "fingerprint": str, "sha256": str, "state_dict": {key: CPU tensor}, "info": {...}}

``sha256`` is ``art_ext.ops.hashing.state_dict_sha256`` of ``state_dict`` (sorted keys; each key's name, dtype, shape
and raw bytes). ``read`` checks all three against the entry and the tensors before anything is loaded into a module:
a file that cannot be read (truncated, random bytes, a pickled object ``weights_only`` refuses), that lacks a field,
or that names another entry, another recipe fingerprint or a hash its tensors do not have raises ``CorruptWeights``
naming the file and the reason. The loader then moves it aside (``move_aside``: renamed ``<file>.corrupt-<time>``,
kept for inspection) and retrains. A changed recipe changes the fingerprint and so the file name, which retrains
instead of loading stale weights. ``<name>-<fingerprint>.ckpt`` beside it is a recipe's resumable training state
while the entry trains.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from art_ext.ops.hashing import state_dict_sha256
from art_ext.zoo.entries import Entry, ZooModel

#: the fields every weight file holds (besides them, nothing is read)
FIELDS = ("name", "fingerprint", "sha256", "state_dict", "info")


class CorruptWeights(Exception):
    """A weight file that must not be loaded: unreadable, incomplete, or not the weights of the entry asked for."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"zoo weights {path}: {reason}")
        self.path = path
        self.reason = reason


class CacheNotWritableError(OSError):
    """The zoo cache folder cannot be written (raised before any training starts)."""


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {line[:120]}" if line else type(err).__name__


def read_payload(path: Path, entry: Entry, *, sha256: str | None = None) -> dict[str, Any]:
    """The verified contents of weight file ``path`` for ``entry`` (tensors on the CPU).

    Args:
        path: A file written by ``write``.
        entry: The entry it must hold: its name and current fingerprint must match the file's.
        sha256: The hash its tensors must have besides the one stored in the file (the shipped manifest's).

    Raises:
        CorruptWeights: naming ``path`` and what is wrong (unreadable, a missing field, another name / fingerprint,
            a hash that does not match the tensors).
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, IsADirectoryError):  # the file cannot be opened: not a statement about its contents
        raise
    except Exception as err:  # the file's fault, reported: the loader moves it aside and retrains
        # damaged bytes fail anywhere in torch's reader and weights-only unpickler: RuntimeError, OSError (EINVAL on
        # a truncated zip), EOFError, UnpicklingError, IndexError, ... ; what was raised is kept in the message
        raise CorruptWeights(path, f"unreadable ({_first_line(err)})") from err
    if not isinstance(saved, dict) or any(field not in saved for field in FIELDS):
        fields = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise CorruptWeights(path, f"expected a dict with fields {list(FIELDS)}, got {fields} (written before "
                                   f"weights were hashed, or not a zoo file)")
    if saved["name"] != entry.name:
        raise CorruptWeights(path, f"holds entry {saved['name']!r}, expected {entry.name!r}")
    if saved["fingerprint"] != entry.fingerprint():
        raise CorruptWeights(path, f"holds recipe fingerprint {saved['fingerprint']!r}, expected "
                                   f"{entry.fingerprint()!r}")
    state = saved["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptWeights(path, "state_dict is not a dict of tensors")
    actual = state_dict_sha256(state)
    if actual != saved["sha256"]:
        raise CorruptWeights(path, f"tensors hash to sha256 {actual[:16]}..., the file records "
                                   f"{str(saved['sha256'])[:16]}...")
    if sha256 is not None and actual != sha256:
        raise CorruptWeights(path, f"tensors hash to sha256 {actual[:16]}..., expected {sha256[:16]}...")
    if not isinstance(saved["info"], dict):
        raise CorruptWeights(path, f"info must be a dict, got {type(saved['info']).__name__}")
    return saved


def read(entry: Entry, path: Path, device: str | torch.device, *, source: str, sha256: str | None = None) -> ZooModel:
    """The verified model of ``entry`` at ``path``, on ``device``, in eval mode; ``info["source"]`` is ``source``.

    Raises:
        CorruptWeights: see ``read_payload``; also when the tensors do not fit the entry's architecture.
    """
    saved = read_payload(path, entry, sha256=sha256)
    module = entry.build()
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as err:  # keys or shapes of another architecture
        raise CorruptWeights(path, f"does not fit {entry.name!r}'s architecture ({_first_line(err)})") from err
    info = {**saved["info"], "sha256": saved["sha256"], "source": source}
    return ZooModel(module.to(device).eval(), entry, info)


def payload(model: ZooModel) -> dict[str, Any]:
    """What ``write`` saves for ``model``: plain CPU tensors and JSON-like facts (``weights_only``-loadable)."""
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.module.state_dict().items()}
    sha256 = state_dict_sha256(state)
    info = {k: v for k, v in model.info.items() if k != "source"}
    info["sha256"] = sha256
    return {"name": model.entry.name, "fingerprint": model.entry.fingerprint(), "sha256": sha256,
            "state_dict": state, "info": info}


def write(model: ZooModel, path: Path) -> str:
    """Save ``model``'s weights, name, fingerprint, sha256 and info at ``path`` atomically (a concurrent reader never
    sees a partial file); returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = payload(model)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(saved, tmp)
    os.replace(tmp, path)
    return str(saved["sha256"])


def move_aside(path: Path) -> Path:
    """Rename the bad file ``path`` to ``<path>.corrupt-<UTC time>`` (kept for inspection); returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check that a file can be written in it.

    Raises:
        CacheNotWritableError: naming the folder and the way out (``ART_EXT_CACHE`` or ``cache=``).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise CacheNotWritableError(
            f"zoo cache folder {folder} is not writable ({err.strerror or type(err).__name__}); set ART_EXT_CACHE "
            f"or pass cache= to a writable folder"
        ) from err
