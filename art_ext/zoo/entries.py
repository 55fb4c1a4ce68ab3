"""Zoo entries: what a named model is (architecture, recipe, seed, what it starts from) and its fingerprint.

Three kinds share one registry (``REGISTRY``): ``ClassifierEntry`` ([0, 1] pixels -> logits), ``DenoiserEntry``
(noisy image -> image at one sigma, for denoised smoothing) and ``DiffusionEntry`` (a diffusers ``UNet2DModel``
trained on every timestep, so one model serves every sigma). Every entry answers the same questions, so the loader
(``art_ext.zoo.loader``) has one path for all: ``build()`` (the untrained module), ``starts_from`` (the entry
whose trained weights it starts from: a classifier's ``parent``, a denoiser's ``init``), ``classifiers`` (the
classifiers guiding its objective), ``recipe`` (its ``training.Recipe``), ``fingerprint()`` (the cache key) and
``summary(...)`` (the facts recorded after training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from art_ext._optional import require
from art_ext.data import digits
from art_ext.data.base import LabeledImages
from art_ext.defences.diffusion import DiffusionDenoiser
from art_ext.defences.normalized_noise import NormalizedReconstructor, noise_space_for
from art_ext.models.classifiers import ARCHITECTURES
from art_ext.models.denoisers import DENOISER_ARCHITECTURES, build_denoiser
from art_ext.models.unet import UNet
from art_ext.ops.hashing import state_dict_sha256
from art_ext.training.classifier import FineTune, Recipe, SplitLoader, TrainConfig, accuracy
from art_ext.training.denoiser import DenoiserTrainConfig, validation_loss
from art_ext.training.diffusion import DiffusionTrainConfig
from art_ext.training.rescaled_loss import RescaledLossTrainConfig, validation
from art_ext.zoo._registry import Registry

#: bump when the training code changes in a way that changes the weights
#: (2: every zoo model trains with TRAINING_THREADS threads)
ZOO_FORMAT_VERSION = 2
KINDS = ("classifier", "denoiser", "diffusion")
ACCESS = ("white-box", "black-box")


def fingerprint_of(spec: dict[str, Any]) -> str:
    """The 12-hex-digit cache key of a JSON-serializable recipe spec (sha256 of its sorted-key JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _seeded(seed: int, build: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """``build(*args, **kwargs)`` with the global RNG seeded by ``seed`` inside and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(*args, **kwargs)


class Entry(Protocol):
    """What the registry, the cache and the loader read from an entry of either kind."""

    kind: ClassVar[str]

    # read-only members: the entries are frozen dataclasses
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def resolution(self) -> int: ...

    @property
    def starts_from(self) -> str | None: ...
    @property
    def classifiers(self) -> tuple[str, ...]: ...
    @property
    def recipe(self) -> Recipe: ...
    def fingerprint(self) -> str: ...
    def build(self) -> nn.Module: ...
    def summary(self, module: nn.Module, data: SplitLoader, classifiers: list[nn.Module]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ClassifierEntry:
    """A named classifier: how to build it and how to train it.

    Attributes:
        name: Registry key (snake_case).
        architecture: Key of ``art_ext.models.classifiers.ARCHITECTURES``.
        arch_kwargs: Constructor arguments (normalization included).
        train: The training recipe (``training.TrainConfig`` or a subclass); ``train.noise_sigma`` is the Gaussian
            augmentation level. A fine-tuned entry keeps its parent's ``train`` (it seeds the initialization).
        description: One line for tables and docs.
        dataset: Dataset key (``"digits"``); ``resolution`` its side length.
        parent: Fine-tuned entries: the classifier entry whose trained weights this one starts from.
        finetune: Fine-tuned entries: the recipe applied to those weights, an object with
            ``apply(module, train_split, *, verbose) -> list[float]`` (e.g. ``training.noise_injection.
            NoiseInjectionConfig``); required exactly when ``parent`` is set.

    Examples:
        >>> from art_ext import zoo
        >>> entry = zoo.get_entry("digits_cnn", kind="classifier")
        >>> entry.fingerprint(), entry.training_sigma
        ('27a4d87b4c5c', 0.0)
    """

    kind: ClassVar[str] = "classifier"
    classifiers: ClassVar[tuple[str, ...]] = ()  # a classifier's objective needs no guiding classifier

    name: str
    architecture: str
    arch_kwargs: dict[str, Any]
    train: TrainConfig
    description: str
    dataset: str = "digits"
    resolution: int = digits.DEFAULT_RESOLUTION
    parent: str | None = None
    finetune: Any = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; expected one of {sorted(ARCHITECTURES)}")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"zoo entry {self.name!r}: train must be a TrainConfig, got {type(self.train).__name__}")
        if (self.parent is None) != (self.finetune is None):
            raise ValueError(
                f"zoo entry {self.name!r}: parent and finetune go together (a fine-tuned entry names both), got "
                f"parent={self.parent!r}, finetune={type(self.finetune).__name__}"
            )
        if self.finetune is not None and not callable(getattr(self.finetune, "apply", None)):
            raise ValueError(
                f"zoo entry {self.name!r}: finetune must have apply(module, data, *, verbose), "
                f"got {type(self.finetune).__name__}"
            )

    @property
    def training_sigma(self) -> float:
        return self.train.noise_sigma

    @property
    def starts_from(self) -> str | None:
        return self.parent

    @property
    def recipe(self) -> Recipe:
        return self.train if self.finetune is None else FineTune(self.finetune)

    def fingerprint(self) -> str:
        spec: dict[str, Any] = {
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "train": dataclasses.asdict(self.train),
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        }
        if self.parent is not None:  # only fine-tuned entries add keys, so the other fingerprints are unchanged
            spec["parent"] = REGISTRY.get(self.parent, kind="classifier").fingerprint()
            spec["finetune"] = {"type": type(self.finetune).__name__, **dataclasses.asdict(self.finetune)}
        return fingerprint_of(spec)

    def build(self) -> nn.Module:
        """The untrained module, initialized deterministically from ``train.seed`` (global RNG state restored)."""
        return _seeded(self.train.seed, ARCHITECTURES[self.architecture], **self.arch_kwargs)

    def summary(self, module: nn.Module, data: SplitLoader, classifiers: list[nn.Module]) -> dict[str, Any]:
        """Facts recorded after training: the augmentation sigma and the clean val / test accuracy."""
        return {
            "training_sigma": self.training_sigma,
            "val_accuracy": accuracy(module, data("val")),
            "test_accuracy": accuracy(module, data("test")),
        }


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
        dataset: Dataset key (``"digits"``); ``resolution`` its side length.

    Examples:
        >>> from art_ext import zoo
        >>> entry = zoo.get_entry("digits_dncnn_bb_stab_050", kind="denoiser")
        >>> entry.access, entry.classifiers, entry.sigma
        ('black-box', ('digits_lenet', 'digits_mlp'), 0.5)
    """

    kind: ClassVar[str] = "denoiser"

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
        if not isinstance(self.train, DenoiserTrainConfig):
            raise TypeError(
                f"denoiser {self.name!r}: train must be a DenoiserTrainConfig, got {type(self.train).__name__}"
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

    @property
    def starts_from(self) -> str | None:
        return self.init

    @property
    def recipe(self) -> Recipe:
        return self.train

    def fingerprint(self) -> str:
        return fingerprint_of({
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "train": dataclasses.asdict(self.train),
            "classifiers": [REGISTRY.get(c, kind="classifier").fingerprint() for c in self.classifiers],
            "init": REGISTRY.get(self.init, kind="denoiser").fingerprint() if self.init else None,
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        })

    def build(self) -> nn.Module:
        """The untrained denoiser, initialized deterministically from ``train.seed`` (global RNG state restored)."""
        return _seeded(self.train.seed, build_denoiser, self.architecture, **self.arch_kwargs)

    def summary(self, module: nn.Module, data: SplitLoader, classifiers: list[nn.Module]) -> dict[str, Any]:
        """Facts recorded after training: the recipe, and the val loss of its objective and the val MSE."""
        val: LabeledImages = data("val")
        return {
            "sigma": self.sigma,
            "objective": self.train.objective,
            "access": self.access,
            "classifiers": list(self.classifiers),
            "val_loss": validation_loss(module, val, self.train, classifiers),
            "val_mse": validation_loss(module, val, self.train, [], loss_name="mse"),
        }


@dataclass(frozen=True)
class DiffusionEntry:
    """A named diffusion model: a diffusers ``UNet2DModel`` and its DDPM recipe (epsilon prediction).

    A diffusion model is trained on every timestep of its schedule, so one entry serves every sigma: the
    ``art_ext.defences.DiffusionDenoiser`` built from it (``zoo.diffusion_denoiser(name, sigma)``) picks the timestep
    t* for the sigma asked (Carlini et al., ICLR 2023, Eq. 4). Registering and fingerprinting need no diffusers;
    ``build()`` and ``scheduler()`` import it through ``art_ext._optional.require`` (extra ``art_ext[diffusion]``).

    Attributes:
        name: Registry key (snake_case).
        unet: ``UNet2DModel`` constructor arguments (JSON-serializable; ``sample_size`` is ``resolution``).
        train: The recipe (``training.DiffusionTrainConfig``); ``train.seed`` also seeds the initialization.
        description: One line for tables and docs.
        dataset: Dataset key (``"digits"``); ``resolution`` its side length.

    Examples:
        >>> from art_ext import zoo
        >>> entry = zoo.get_entry("digits_ddpm", kind="diffusion")
        >>> entry.fingerprint(), entry.train.num_train_timesteps, entry.train.beta_schedule
        ('3caf5234e9c8', 1000, 'linear')
    """

    kind: ClassVar[str] = "diffusion"
    classifiers: ClassVar[tuple[str, ...]] = ()  # the epsilon objective needs no guiding classifier

    name: str
    unet: dict[str, Any]
    train: DiffusionTrainConfig
    description: str
    dataset: str = "digits"
    resolution: int = digits.DEFAULT_RESOLUTION

    def __post_init__(self) -> None:
        if not isinstance(self.train, DiffusionTrainConfig):
            raise TypeError(
                f"diffusion entry {self.name!r}: train must be a DiffusionTrainConfig, got {type(self.train).__name__}"
            )
        if not isinstance(self.unet, dict):
            raise TypeError(f"diffusion entry {self.name!r}: unet must be a dict of UNet2DModel arguments, "
                            f"got {type(self.unet).__name__}")
        try:
            json.dumps(self.unet)
        except TypeError as err:
            raise ValueError(f"diffusion entry {self.name!r}: unet must be JSON-serializable (it is part of the "
                             f"fingerprint), got {self.unet!r}") from err
        if self.unet.get("sample_size") != self.resolution:
            raise ValueError(f"diffusion entry {self.name!r}: unet['sample_size'] must equal resolution "
                             f"{self.resolution}, got {self.unet.get('sample_size')!r}")

    @property
    def starts_from(self) -> str | None:
        return None

    @property
    def recipe(self) -> Recipe:
        return self.train

    def fingerprint(self) -> str:
        return fingerprint_of({
            "kind": self.kind,
            "unet": self.unet,
            "train": dataclasses.asdict(self.train),
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        })

    def scheduler(self) -> Any:
        """The diffusers ``DDPMScheduler`` the model was trained with (``train.scheduler()``)."""
        return self.train.scheduler()

    def build(self) -> nn.Module:
        """The untrained ``UNet2DModel``, initialized deterministically from ``train.seed`` (global RNG restored)."""
        diffusers = require("diffusers")
        module: nn.Module = _seeded(self.train.seed, diffusers.UNet2DModel, **self.unet)
        return module

    def summary(self, module: nn.Module, data: SplitLoader, classifiers: list[nn.Module]) -> dict[str, Any]:
        """Facts recorded after training: the UNet and scheduler configs, the diffusers version, and the val MSE of
        one-shot denoising at sigma 0.25 and 0.5 (one noise draw per image, seed 0)."""
        val = data("val").x.to(next(module.parameters()).device)  # [N, C, H, W]
        noise = torch.randn(val.shape, generator=torch.Generator().manual_seed(0)).to(val)
        scheduler = self.scheduler()
        mse = {}
        for sigma in (0.25, 0.5):
            denoiser = DiffusionDenoiser(module, scheduler, sigma=sigma)
            with torch.no_grad():
                mse[f"{sigma:.2f}"] = float(((denoiser(val + sigma * noise) - val) ** 2).mean())
        return {
            "unet_config": dict(self.unet),
            "scheduler_config": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
            "diffusers": str(require("diffusers").__version__),
            "val_mse_one_shot": mse,
        }


@dataclass(frozen=True)
class RescaledLossDenoiserEntry:
    """A named normalized-noise UNet (Kumar & Narayan, Algorithm 1): ``NormalizedReconstructor(UNet(**unet), mean,
    std)`` trained with Eq. 3 against one frozen surrogate. Kind ``"denoiser"``; the loaded module maps noisy pixels
    to pixels, and the smoothing noise belongs in ``noise_space`` (``NormalizedNoise(mean, std)`` for
    ``train.noise == "normalized"``) at ``sigma`` in that space's units.

    Attributes:
        name: Registry key (snake_case).
        unet: ``art_ext.models.UNet`` keyword arguments.
        train: The recipe (``training.RescaledLossTrainConfig``).
        description: One line for tables and docs.
        classifiers: The one surrogate classifier (zoo name).
        mean, std: The normalization (digits: ``DIGITS_MEAN`` / ``DIGITS_STD``).
        target: The zoo classifier it is meant to defend (evaluation only; never used in training).
        access: ``"black-box"`` (the target is not the surrogate) or ``"white-box"``.
        dataset: Dataset key; ``resolution`` its side length.

    Examples:
        >>> from art_ext import zoo
        >>> entry = zoo.get_entry("digits_unet_nn_100", kind="denoiser")
        >>> entry.classifiers, entry.sigma, entry.noise_space, round(entry.pixel_sigma, 3)
        (('digits_lenet',), 1.0, NormalizedNoise(mean=(0.305,), std=(0.319,)), 0.319)
    """

    kind: ClassVar[str] = "denoiser"

    name: str
    unet: dict[str, Any]
    train: RescaledLossTrainConfig
    description: str
    classifiers: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target: str | None = None
    access: str = "black-box"
    dataset: str = "digits"
    resolution: int = digits.DEFAULT_RESOLUTION

    def __post_init__(self) -> None:
        if not isinstance(self.train, RescaledLossTrainConfig):
            raise TypeError(f"denoiser {self.name!r}: train must be a RescaledLossTrainConfig, got "
                            f"{type(self.train).__name__}")
        if len(self.classifiers) != 1:
            raise ValueError(f"denoiser {self.name!r}: Algorithm 1 uses exactly one surrogate classifier, got "
                             f"{self.classifiers!r}")
        if self.access not in ACCESS:
            raise ValueError(f"access must be one of {ACCESS}, got {self.access!r}")
        if self.access == "black-box" and self.target in self.classifiers:
            raise ValueError(f"black-box denoiser {self.name!r} lists its target {self.target!r} as its surrogate")
        self.build()  # validates unet / mean / std before the entry is registered

    @property
    def sigma(self) -> float:
        return self.train.sigma

    @property
    def noise_space(self) -> Any:
        return noise_space_for(self.train.noise, self.mean, self.std)

    @property
    def pixel_sigma(self) -> float:
        """The smallest per-channel pixel std of its noise (``sigma * min(std)`` for normalized noise)."""
        return self.sigma * (min(self.std) if self.train.noise == "normalized" else 1.0)

    @property
    def starts_from(self) -> str | None:
        return None

    @property
    def recipe(self) -> Recipe:
        return self.train

    def fingerprint(self) -> str:
        return fingerprint_of({
            "kind": "rescaled_loss_unet",
            "unet": self.unet,
            "train": dataclasses.asdict(self.train),
            "classifiers": [REGISTRY.get(c, kind="classifier").fingerprint() for c in self.classifiers],
            "mean": list(self.mean), "std": list(self.std),
            "dataset": self.dataset,
            "resolution": self.resolution,
            "format": ZOO_FORMAT_VERSION,
        })

    def build(self) -> nn.Module:
        """The untrained reconstructor, initialized deterministically from ``train.seed`` (global RNG restored)."""
        return _seeded(self.train.seed, lambda: NormalizedReconstructor(UNet(**self.unet), self.mean, self.std))

    def summary(self, module: nn.Module, data: SplitLoader, classifiers: list[nn.Module]) -> dict[str, Any]:
        """Facts recorded after training: sigma in its space and in pixels, lambda, and the val L / surrogate
        accuracy under one fixed noise draw."""
        loss, acc = validation(module, classifiers[0], data("val"), self.train)  # type: ignore[arg-type]
        return {"sigma": self.sigma, "noise": self.train.noise, "pixel_sigma": self.pixel_sigma,
                "lam": self.train.lam, "classifiers": list(self.classifiers), "access": self.access,
                "val_loss": loss, "val_surrogate_accuracy_fixed_draw": acc}


@dataclass
class ZooModel:
    """A trained zoo model (eval mode) with its entry and the facts recorded when it was trained (``info``; the loader
    adds ``info["sha256"]``, the hash of the weights as loaded, and ``info["source"]``: shipped, cache or trained)."""

    module: nn.Module
    entry: Entry
    info: dict[str, Any]

    @property
    def sha256(self) -> str:
        """``art_ext.ops.hashing.state_dict_sha256`` of the weights as loaded or trained (``info["sha256"]``; computed
        from the module when a hand-made ``ZooModel`` has none)."""
        if "sha256" not in self.info:
            return state_dict_sha256(self.module)
        return str(self.info["sha256"])


#: the one registry of the zoo: classifiers, denoisers and diffusion models, names unique across all three
REGISTRY: Registry[Entry] = Registry(KINDS)
