"""Registry of named models for the embedded digits dataset: architecture + deterministic recipe + seed.

A zoo model is trained on CPU the first time it is asked for and cached under ``$ART_EXT_CACHE`` (default: the
user's cache directory, ``~/.cache/art_ext``). The cache file name carries a fingerprint of the entry, so a changed
recipe retrains instead of loading stale weights.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from art_ext.data import digits
from art_ext.models.classifiers import ARCHITECTURES
from art_ext.ops.modes import torch_threads
from art_ext.training.adversarial import AdversarialTrainConfig, train_adversarial
from art_ext.training.classifier import TrainConfig, accuracy, train_classifier

#: bump when the training code changes in a way that changes the weights
#: (2: every zoo model trains with TRAINING_THREADS threads)
ZOO_FORMAT_VERSION = 2
#: CPU threads used for zoo training, whatever the caller set: weights depend on the reduction order of the kernels,
#: so a fixed count keeps zoo models identical across machines, test orders and benchmark settings.
TRAINING_THREADS = 1
#: per-channel statistics of the 16x16 digits training split (checked by tests/models/test_zoo.py)
DIGITS_MEAN = (0.305,)
DIGITS_STD = (0.319,)


@dataclass(frozen=True)
class ZooEntry:
    """A named model: how to build it and how to train it.

    Attributes:
        name: Registry key (snake_case).
        architecture: Key of ``art_ext.models.classifiers.ARCHITECTURES``.
        arch_kwargs: Constructor arguments (normalization included).
        train: The training recipe; ``train.noise_sigma`` is the Gaussian augmentation level.
        description: One line for tables and docs.
        dataset: Dataset key (``"digits"``) and ``resolution`` its side length.
    """

    name: str
    architecture: str
    arch_kwargs: dict[str, Any]
    train: TrainConfig
    description: str
    dataset: str = "digits"
    resolution: int = digits.DEFAULT_RESOLUTION
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: fine-tuned entries: the zoo model to start from, and a recipe object with
    #: ``apply(module, data, *, verbose) -> list[float]`` (e.g. ``training.noise_injection.NoiseInjectionConfig``)
    parent: str | None = None
    finetune: Any = None

    @property
    def training_sigma(self) -> float:
        return self.train.noise_sigma

    def fingerprint(self) -> str:
        spec = {
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "train": dataclasses.asdict(self.train),
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        }
        if self.parent is not None:  # only fine-tuned entries add keys, so existing fingerprints are unchanged
            spec["parent"] = get_entry(self.parent).fingerprint()
            spec["finetune"] = {"type": type(self.finetune).__name__, **dataclasses.asdict(self.finetune)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def build(self) -> nn.Module:
        """The untrained module, initialized deterministically from ``train.seed`` (global RNG state restored)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train.seed)
            return ARCHITECTURES[self.architecture](**self.arch_kwargs)


@dataclass
class ZooModel:
    """A trained zoo model (eval mode) with its entry and the facts recorded when it was trained."""

    module: nn.Module
    entry: ZooEntry
    info: dict[str, Any]


REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry (warns when it replaces one of the same name)."""
    if entry.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {entry.architecture!r}; expected one of {sorted(ARCHITECTURES)}")
    if entry.name in REGISTRY:
        warnings.warn(f"zoo entry {entry.name!r} replaced", stacklevel=2)
    REGISTRY[entry.name] = entry
    return entry


def names() -> list[str]:
    return sorted(REGISTRY)


def get_entry(name: str) -> ZooEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown zoo model {name!r}; known models: {', '.join(names())}") from None


def cache_dir() -> Path:
    """``$ART_EXT_CACHE`` if set, else ``$XDG_CACHE_HOME/art_ext`` (default ``~/.cache/art_ext``)."""
    if os.environ.get("ART_EXT_CACHE"):
        return Path(os.environ["ART_EXT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "art_ext"


def _load_data(entry: ZooEntry, split: str):
    if entry.dataset != "digits":
        raise ValueError(f"zoo entry {entry.name!r}: dataset {entry.dataset!r} cannot be trained here")
    return digits.load_digits(split, resolution=entry.resolution)


def _fixed_threads(train: Callable[..., ZooModel]) -> Callable[..., ZooModel]:
    @functools.wraps(train)
    def wrapped(*args: Any, **kwargs: Any) -> ZooModel:
        with torch_threads(TRAINING_THREADS):
            return train(*args, **kwargs)

    return wrapped


@_fixed_threads
def train_entry(
    entry: ZooEntry, *, device: str | torch.device = "cpu", cache: Path | str | None = None, verbose: bool = False
) -> ZooModel:
    """Train ``entry`` from scratch, or fine-tune its ``parent`` (deterministic for a fixed device and thread count)."""
    module = entry.build().to(device)
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if entry.parent is not None:  # fine-tune a copy of the parent's weights
        module.load_state_dict(load(entry.parent, device=device, cache=cache, verbose=verbose).module.state_dict())
        history = entry.finetune.apply(module, _load_data(entry, "train"), verbose=verbose)
    elif isinstance(entry.train, AdversarialTrainConfig):  # PGD-AT, early-stopped on the val split
        result = train_adversarial(
            module, _load_data(entry, "train"), entry.train, val=_load_data(entry, "val"), verbose=verbose
        )
        history = result["history"]
        extra = {"best_epoch": result["best_epoch"], "val_robust_accuracy": result["val_robust"]}
    else:
        history = train_classifier(module, _load_data(entry, "train"), entry.train, verbose=verbose)
    seconds = time.perf_counter() - start
    info = {
        "name": entry.name,
        "fingerprint": entry.fingerprint(),
        "training_sigma": entry.training_sigma,
        "val_accuracy": accuracy(module, _load_data(entry, "val")),
        "test_accuracy": accuracy(module, _load_data(entry, "test")),
        "final_train_loss": history[-1],
        "train_seconds": round(seconds, 2),
        "parameters": sum(p.numel() for p in module.parameters()),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        **extra,
    }
    return ZooModel(module.eval(), entry, info)


def _cache_file(entry: "ZooEntry | DenoiserEntry", cache: Path | str | None) -> Path:
    folder = Path(cache) if cache is not None else cache_dir()
    return folder / "zoo" / f"{entry.name}-{entry.fingerprint()}.pt"


def _read_cached(entry: "ZooEntry | DenoiserEntry", path: Path, device: str | torch.device) -> ZooModel:
    saved = torch.load(path, map_location=device, weights_only=True)
    module = entry.build().to(device)
    module.load_state_dict(saved["state_dict"])
    return ZooModel(module.eval(), entry, saved["info"])  # type: ignore[arg-type]


def _write_cached(model: ZooModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": model.module.state_dict(), "info": model.info}, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees a half-written file


def load(
    name: str, *, device: str | torch.device = "cpu", cache: Path | str | None = None, retrain: bool = False,
    verbose: bool = False,
) -> ZooModel:
    """Load zoo model ``name`` from the cache, training and caching it first if needed. Returned in eval mode."""
    entry = get_entry(name)
    path = _cache_file(entry, cache)
    if path.is_file() and not retrain:
        return _read_cached(entry, path, device)
    model = train_entry(entry, device=device, cache=cache, verbose=verbose)
    _write_cached(model, path)
    return model


def _digits_entry(
    name: str, architecture: str, description: str, *, recipe: type[TrainConfig] = TrainConfig, **train: Any
) -> ZooEntry:
    kwargs: dict[str, Any] = {"mean": DIGITS_MEAN, "std": DIGITS_STD}
    if architecture == "mlp":
        kwargs["in_features"] = digits.DEFAULT_RESOLUTION**2
    return register(ZooEntry(name, architecture, kwargs, recipe(**train), description))


_digits_entry("digits_cnn", "small_cnn", "SmallCNN-w16 with BatchNorm, standard training", epochs=30)
_digits_entry(
    "digits_cnn_noise025", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=0.25", epochs=60, noise_sigma=0.25
)
_digits_entry(
    "digits_cnn_noise050", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=0.50", epochs=60, noise_sigma=0.5
)
_digits_entry("digits_lenet", "lenet", "LeNet-style CNN without BatchNorm, standard training (surrogate)", epochs=30)
_digits_entry("digits_mlp", "mlp", "2x256 MLP, standard training (surrogate)", epochs=30)

# PGD adversarial training (Madry et al., 2018) with early stopping on "val" (Rice et al., 2020): the AT models that
# certification through BN adaptation (Nandy et al.) starts from. Recipe of research/embedded_default.md: 7 steps of
# 2.5 eps / 7, eps ramped over the first 30% of 30 epochs.
_digits_entry(
    "digits_cnn_pgd_l2", "small_cnn", "SmallCNN-w16, PGD-L2 adversarial training eps=0.5, early-stopped on val",
    recipe=AdversarialTrainConfig, epochs=30, eps=0.5, norm="l2",
)
_digits_entry(
    "digits_cnn_pgd_linf", "small_cnn", "SmallCNN-w16, PGD-Linf adversarial training eps=0.1, early-stopped on val",
    recipe=AdversarialTrainConfig, epochs=30, eps=0.1, norm="linf",
)

def _register_finetuned() -> None:
    from art_ext.training.noise_injection import NoiseInjectionConfig

    parent = get_entry("digits_cnn_noise025")
    register(dataclasses.replace(
        parent, name="digits_cnn_cni",
        description="digits_cnn_noise025 fine-tuned under noise sigma=0.25 mixed 1:1 with EPGD-linf(0.1) examples "
                    "(Nemcovsky et al. CNI-I+W idea, Eq. 23)",
        parent=parent.name,
        finetune=NoiseInjectionConfig(sigma=0.25, epochs=8, adversarial_weight=0.5, eps=0.1, eps_step=0.03,
                                      max_iter=5, norm="linf", eot_samples=4, seed=0),
    ))


_register_finetuned()

_digits_entry(
    "digits_cnn_noise100", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=1.00", epochs=60, noise_sigma=1.0
)


# ------------------------------------------------------------------------------------------------------------------
# Denoisers for denoised smoothing (Salman et al., 2020): a registry of their own, cached like the classifiers.
# ------------------------------------------------------------------------------------------------------------------

from art_ext.models.denoisers import DENOISER_ARCHITECTURES, build_denoiser  # noqa: E402
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser, validation_loss  # noqa: E402

ACCESS = ("white-box", "black-box")


@dataclass(frozen=True)
class DenoiserEntry:
    """A named denoiser: architecture, recipe and the zoo classifiers that guide its training.

    Attributes:
        name: Registry key (snake_case).
        architecture: Key of ``art_ext.models.denoisers.DENOISER_ARCHITECTURES``.
        arch_kwargs: Constructor arguments.
        train: The recipe (``train.sigma`` is the noise level it removes).
        description: One line for tables and docs.
        classifiers: Zoo classifiers used by the objective (STAB / CLF): the target in white-box, surrogates in
            black-box; empty for MSE.
        init: Denoiser entry whose trained weights start this one (``stab+mse`` fine-tunes an MSE denoiser).
        target: The zoo classifier the denoiser is meant to defend (evaluation only; in black-box it never
            appears in training or checkpoint selection).
        access: ``"white-box"`` or ``"black-box"``.
    """

    name: str
    architecture: str
    arch_kwargs: dict[str, Any]
    train: DenoiserTrainConfig
    description: str
    classifiers: tuple[str, ...] = ()
    init: str | None = None
    target: str | None = None
    access: str = "white-box"
    dataset: str = "digits"
    resolution: int = digits.DEFAULT_RESOLUTION

    def __post_init__(self) -> None:
        if self.architecture not in DENOISER_ARCHITECTURES:
            raise ValueError(
                f"unknown denoiser architecture {self.architecture!r}; expected one of {sorted(DENOISER_ARCHITECTURES)}"
            )
        if self.access not in ACCESS:
            raise ValueError(f"access must be one of {ACCESS}, got {self.access!r}")
        if self.train.needs_classifier and not self.classifiers:
            raise ValueError(f"denoiser {self.name!r}: objective {self.train.objective!r} needs classifiers")
        if self.access == "black-box" and self.target in self.classifiers:
            raise ValueError(
                f"black-box denoiser {self.name!r} lists its target {self.target!r} among its training classifiers"
            )
        if self.train.objective == "stab+mse" and self.init is None and self.train.mse_epochs == 0:
            raise ValueError(f"denoiser {self.name!r}: 'stab+mse' needs init (an MSE denoiser) or mse_epochs > 0")

    @property
    def sigma(self) -> float:
        return self.train.sigma

    def fingerprint(self) -> str:
        spec = {
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "train": dataclasses.asdict(self.train),
            "classifiers": [get_entry(c).fingerprint() for c in self.classifiers],
            "init": get_denoiser_entry(self.init).fingerprint() if self.init else None,
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def build(self) -> nn.Module:
        """The untrained denoiser, initialized deterministically from ``train.seed`` (global RNG state restored)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train.seed)
            return build_denoiser(self.architecture, **self.arch_kwargs)


DENOISERS: dict[str, DenoiserEntry] = {}


def register_denoiser(entry: DenoiserEntry) -> DenoiserEntry:
    """Add a denoiser entry (warns when it replaces one of the same name)."""
    if entry.name in DENOISERS:
        warnings.warn(f"zoo denoiser {entry.name!r} replaced", stacklevel=2)
    DENOISERS[entry.name] = entry
    return entry


def denoiser_names() -> list[str]:
    return sorted(DENOISERS)


def get_denoiser_entry(name: str) -> DenoiserEntry:
    try:
        return DENOISERS[name]
    except KeyError:
        raise ValueError(f"unknown zoo denoiser {name!r}; known denoisers: {', '.join(denoiser_names())}") from None


@_fixed_threads
def train_denoiser_entry(
    entry: DenoiserEntry, *, device: str | torch.device = "cpu", cache: Path | str | None = None,
    checkpoint: Path | str | None = None, verbose: bool = False,
) -> ZooModel:
    """Train ``entry`` (loading its guiding classifiers and its ``init`` denoiser from the zoo, never its black-box
    target). Validation-split checkpoint selection; resumable through ``checkpoint``."""
    if entry.dataset != "digits":
        raise ValueError(f"zoo denoiser {entry.name!r}: dataset {entry.dataset!r} cannot be trained here")
    module = entry.build().to(device)
    if entry.init is not None:
        init = load_denoiser(entry.init, device=device, cache=cache, verbose=verbose)
        module.load_state_dict(init.module.state_dict())
    classifiers = [load(c, device=device, cache=cache, verbose=verbose).module for c in entry.classifiers]
    train_data = digits.load_digits("train", resolution=entry.resolution)
    val_data = digits.load_digits("val", resolution=entry.resolution)  # checkpoint selection; never "test"
    start = time.perf_counter()
    history = train_denoiser(
        module, train_data, entry.train, classifiers=classifiers, val=val_data, checkpoint=checkpoint, verbose=verbose
    )
    seconds = time.perf_counter() - start
    info = {
        "name": entry.name,
        "fingerprint": entry.fingerprint(),
        "sigma": entry.sigma,
        "objective": entry.train.objective,
        "access": entry.access,
        "classifiers": list(entry.classifiers),
        "val_loss": validation_loss(module, val_data, entry.train, classifiers),
        "val_mse": validation_loss(module, val_data, entry.train, [], loss_name="mse"),
        "final_train_loss": history["train_loss"][-1],
        "train_seconds": round(seconds, 2),
        "parameters": sum(p.numel() for p in module.parameters()),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    return ZooModel(module.eval(), entry, info)  # type: ignore[arg-type]


def load_denoiser(
    name: str, *, device: str | torch.device = "cpu", cache: Path | str | None = None, retrain: bool = False,
    verbose: bool = False,
) -> ZooModel:
    """Load zoo denoiser ``name`` from the cache (same folder as the classifiers), training and caching it first if
    needed; an interrupted training resumes from its checkpoint. Returned in eval mode."""
    entry = get_denoiser_entry(name)
    path = _cache_file(entry, cache)
    if path.is_file() and not retrain:
        return _read_cached(entry, path, device)
    checkpoint = path.with_suffix(".ckpt")
    if retrain and checkpoint.is_file():
        checkpoint.unlink()
    model = train_denoiser_entry(entry, device=device, cache=cache, checkpoint=checkpoint, verbose=verbose)
    _write_cached(model, path)
    checkpoint.unlink(missing_ok=True)
    return model


#: the small DnCNN recommended for 16x16 digits (7.3k parameters)
DIGITS_DNCNN = {"in_channels": 1, "depth": 5, "width": 16}
#: black-box surrogates: architectures the target digits_cnn does not share (no BatchNorm; no convolution)
DIGITS_SURROGATES = ("digits_lenet", "digits_mlp")


def _digits_denoiser(
    name: str, description: str, *, classifiers: tuple[str, ...] = (), init: str | None = None,
    target: str | None = "digits_cnn", access: str = "white-box", **train: Any,
) -> DenoiserEntry:
    return register_denoiser(DenoiserEntry(
        name, "dncnn", dict(DIGITS_DNCNN), DenoiserTrainConfig(**train), description, classifiers=classifiers,
        init=init, target=target, access=access,
    ))


for _sigma, _tag in ((0.25, "025"), (0.5, "050"), (1.0, "100")):
    _digits_denoiser(
        f"digits_dncnn_mse_{_tag}", f"DnCNN-5-16, MSE, sigma={_sigma:.2f}", target=None,
        sigma=_sigma, objective="mse", epochs=30, lr=1e-3,
    )
    _digits_denoiser(
        f"digits_dncnn_stab_{_tag}", f"DnCNN-5-16, STAB from scratch on digits_cnn (white-box), sigma={_sigma:.2f}",
        classifiers=("digits_cnn",), sigma=_sigma, objective="stab", epochs=30, lr=1e-3,
    )
    _digits_denoiser(
        f"digits_dncnn_stabmse_{_tag}", f"DnCNN-5-16, STAB+MSE on digits_cnn (white-box), sigma={_sigma:.2f}",
        classifiers=("digits_cnn",), init=f"digits_dncnn_mse_{_tag}", sigma=_sigma, objective="stab+mse",
        epochs=20, lr=1e-4,
    )
    _digits_denoiser(
        f"digits_dncnn_bb_stabmse_{_tag}",
        f"DnCNN-5-16, STAB+MSE on surrogates LeNet/MLP (black-box for digits_cnn), sigma={_sigma:.2f}",
        classifiers=DIGITS_SURROGATES, init=f"digits_dncnn_mse_{_tag}", access="black-box", sigma=_sigma,
        objective="stab+mse", epochs=20, lr=1e-4,
    )
    _digits_denoiser(
        f"digits_dncnn_bb_stab_{_tag}",
        f"DnCNN-5-16, STAB from scratch on surrogates LeNet/MLP (black-box for digits_cnn), sigma={_sigma:.2f}",
        classifiers=DIGITS_SURROGATES, access="black-box", sigma=_sigma, objective="stab", epochs=30, lr=1e-3,
    )
