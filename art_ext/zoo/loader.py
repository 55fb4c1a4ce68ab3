"""Loading and training zoo entries: one path for classifiers, denoisers and diffusion models.

``load(name)`` returns, in this order: the weights shipped with the package (``art_ext/zoo/weights``, when shipped
for the entry's current recipe fingerprint), the cached weights, or the entry trained now and cached: the entry it
starts from and its guiding ``classifiers`` are loaded (recursively, the same way), then the entry's ``recipe.fit``
(training code, ``art_ext.training``) trains it on the entry's dataset, on exactly ``TRAINING_THREADS`` CPU threads.

Every file is verified before it is loaded (``_cache.read``: entry name, recipe fingerprint and the sha256 of its
tensors). A bad cache file is named in a ``ZooWeightsWarning``, renamed ``<file>.corrupt-<time>`` and the entry is
retrained; a bad shipped file is named in a warning and skipped. A cache folder that cannot be written is a
``CacheNotWritableError`` before any training starts. ``info["sha256"]`` (also ``ZooModel.sha256``) is the hash of
the weights returned and ``info["source"]`` says where they came from: ``"shipped"``, ``"cache"`` or ``"trained"``.
``train(name)`` (or ``load(name, retrain=True)``) trains again from the recipe and caches the result; read it back
with ``load(name, shipped=False)``.
"""

from __future__ import annotations

import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from art_ext.data import digits
from art_ext.data.base import LabeledImages
from art_ext.defences.diffusion import DiffusionDenoiser, DiffusionDenoiserConfig
from art_ext.ops.hashing import state_dict_sha256
from art_ext.ops.modes import torch_threads
from art_ext.zoo import _cache, _shipped
from art_ext.zoo.entries import REGISTRY, DiffusionEntry, Entry, ZooModel

#: CPU threads used for zoo training, whatever the caller set: weights depend on the reduction order of the kernels,
#: so a fixed count keeps zoo models identical across machines, test orders and benchmark settings.
TRAINING_THREADS = 1
#: datasets the zoo can train on: key -> ``load(split, resolution=...)``
DATASETS = {"digits": digits.load_digits}


class ZooWeightsWarning(UserWarning):
    """A weight file was not loaded (corrupt, truncated or another model's): it was moved aside or skipped."""


def _check_dataset(entry: Entry) -> None:
    if entry.dataset not in DATASETS:
        raise ValueError(
            f"zoo entry {entry.name!r}: dataset {entry.dataset!r} cannot be trained here; expected one of "
            f"{sorted(DATASETS)}"
        )


def train_entry(
    entry: Entry, *, device: str | torch.device = "cpu", cache: Path | str | None = None,
    checkpoint: Path | None = None, shipped: bool = True, verbose: bool = False,
) -> ZooModel:
    """Train ``entry`` now (the weights it starts from and its guiding classifiers come from ``load``; a black-box
    denoiser's target is never loaded). Deterministic for a fixed device; returned in eval mode, not cached.

    Args:
        entry: An entry of either kind (its ``starts_from`` / ``classifiers`` must be registered).
        device: Where to train.
        cache: Cache folder for the entries it starts from (default ``cache_dir()``).
        checkpoint: File the recipe may use to resume an interrupted run (denoiser recipes do).
        shipped: Whether the entries it starts from may come from the shipped weights (``load``'s ``shipped``).
        verbose: Progress bars.
    """
    _check_dataset(entry)

    def data(split: str) -> LabeledImages:
        return DATASETS[entry.dataset](split, resolution=entry.resolution)

    with torch_threads(TRAINING_THREADS):
        module = entry.build().to(device)
        if entry.starts_from is not None:  # start from a copy of another entry's trained weights
            start = load(entry.starts_from, kind=entry.kind, device=device, cache=cache, shipped=shipped,
                         verbose=verbose)
            module.load_state_dict(start.module.state_dict())
        classifiers = [load(c, kind="classifier", device=device, cache=cache, shipped=shipped, verbose=verbose).module
                       for c in entry.classifiers]
        started = time.perf_counter()
        run = entry.recipe.fit(module, data, classifiers=classifiers, checkpoint=checkpoint, verbose=verbose)
        seconds = time.perf_counter() - started
        info: dict[str, Any] = {
            "name": entry.name,
            "fingerprint": entry.fingerprint(),
            **entry.summary(module, data, classifiers),
            "final_train_loss": run.history[-1],
            "train_seconds": round(seconds, 2),
            "parameters": sum(p.numel() for p in module.parameters()),
            "torch": str(torch.__version__),
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            **run.facts,
            "sha256": state_dict_sha256(module),
            "source": "trained",
        }
    return ZooModel(module.eval(), entry, info)


def load(
    name: str, *, kind: str | None = None, device: str | torch.device = "cpu", cache: Path | str | None = None,
    retrain: bool = False, shipped: bool = True, verbose: bool = False,
) -> ZooModel:
    """Load zoo entry ``name``: its shipped weights, else its cached weights, else trained now and cached. Every file
    is verified first (entry name, recipe fingerprint, sha256 of the tensors); a bad cache file is moved aside
    (``<file>.corrupt-<time>``) with a ``ZooWeightsWarning`` and the entry retrained. Returned in eval mode, with
    ``info["sha256"]`` and ``info["source"]`` (``"shipped"``, ``"cache"`` or ``"trained"``).

    Args:
        name: A registered entry (``names()`` lists them).
        kind: ``"classifier"``, ``"denoiser"`` or ``"diffusion"`` to require that kind (None: any).
        device: Where the module is placed (and trained, when it is not cached).
        cache: Cache folder (default ``cache_dir()``: ``$ART_EXT_CACHE`` or ``~/.cache/art_ext``).
        retrain: Train again from the recipe and overwrite the cached file (the entries it starts from or is guided
            by are still loaded).
        shipped: Use the weights shipped with the package when they exist for the entry's recipe fingerprint (False:
            the cache, or training, only; e.g. to read back weights trained with ``retrain=True``).
        verbose: Progress bars while training.

    Raises:
        ValueError: on an unknown name (the known ones are listed) or an entry of another ``kind``.
        CacheNotWritableError: when the entry must be trained and the cache folder cannot be written (before training).

    Examples:
        >>> from art_ext import zoo
        >>> model = zoo.load("digits_cnn", kind="classifier")
        >>> model.info["source"], model.sha256 == zoo.shipped_manifest()["models"]["digits_cnn"]["sha256"]
        ('shipped', True)
    """
    entry = REGISTRY.get(name, kind=kind)
    path = _cache.cache_file(entry, cache)
    if not retrain:
        reference = _shipped.shipped(entry) if shipped else None
        if reference is not None:
            try:
                return _cache.read(entry, reference[0], device, source="shipped", sha256=reference[1])
            except _cache.CorruptWeights as err:
                warnings.warn(f"{err}; shipped weights skipped, using the cache or training {name!r}",
                              ZooWeightsWarning, stacklevel=2)
        if path.exists():
            try:
                return _cache.read(entry, path, device, source="cache")
            except _cache.CorruptWeights as err:
                _cache.ensure_writable(path.parent)
                aside = _cache.move_aside(path)
                warnings.warn(f"{err}; not loaded, moved to {aside.name}, retraining {name!r}", ZooWeightsWarning,
                              stacklevel=2)
    _cache.ensure_writable(path.parent)  # before any training: a read-only cache fails now, not after minutes
    checkpoint = _cache.checkpoint_file(entry, cache)
    if retrain:
        checkpoint.unlink(missing_ok=True)
    model = train_entry(entry, device=device, cache=cache, checkpoint=checkpoint, shipped=shipped, verbose=verbose)
    _cache.write(model, path)
    checkpoint.unlink(missing_ok=True)  # a finished training leaves no resumable state behind
    return model


def train(name: str, **kwargs: Any) -> ZooModel:
    """Train zoo entry ``name`` from its recipe now and cache it: ``load(name, retrain=True, **kwargs)``. Read the
    result back later with ``load(name, shipped=False)`` (a plain ``load`` prefers the shipped weights)."""
    return load(name, retrain=True, **kwargs)


def diffusion_denoiser(
    name: str, sigma: float, *, device: str | torch.device = "cpu", cache: Path | str | None = None,
    **kwargs: Any,
) -> DiffusionDenoiser:
    """The ``DiffusionDenoiser`` at ``sigma`` of zoo diffusion entry ``name`` (loaded, or trained and cached, by
    ``load``), with the scheduler it was trained with. Needs ``art_ext[diffusion]``.

    The same as ``model = load(name, kind="diffusion")`` followed by
    ``DiffusionDenoiser(model.module, model.entry.scheduler(), sigma=sigma, **kwargs)``.

    Args:
        name: A registered ``"diffusion"`` entry (``names(kind="diffusion")``).
        sigma: Pixel noise level in [0, 1] units (the smoothing sigma; the factor 2 of [-1, 1] stays inside).
        device: Where the UNet is placed (and trained, when it is not cached).
        cache: Cache folder (default ``cache_dir()``).
        **kwargs: Passed to ``DiffusionDenoiser`` (``multistep``, ``num_steps``, ``clip``, ...).

    Examples:
        >>> from art_ext import zoo
        >>> den = zoo.diffusion_denoiser("digits_ddpm", sigma=0.5)  # doctest: +SKIP
        >>> den.timestep  # doctest: +SKIP
        259
    """
    entry = REGISTRY.get(name, kind="diffusion")
    if not isinstance(entry, DiffusionEntry):
        raise TypeError(f"zoo entry {name!r} must be a DiffusionEntry, got {type(entry).__name__}")
    DiffusionDenoiserConfig(sigma, **kwargs)  # validate before loading (which may train for minutes)
    model = load(name, kind="diffusion", device=device, cache=cache)
    return DiffusionDenoiser(model.module, entry.scheduler(), sigma=sigma, **kwargs)
