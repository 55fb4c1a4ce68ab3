"""RobustBench models loaded offline from a local ``model_dir`` (no download is ever attempted).

RobustBench's ``load_model`` reads ``<model_dir>/<dataset>/<threat_model>/<name>.pt`` and downloads only when that file
is missing. This wrapper checks the file first (so a missing checkpoint is an error that names the expected path,
never a network call), validates the model name against RobustBench's zoo, and works around two import failures of
robustbench 1.1.1 on current environments (research/ecosystem.md §5): ``robustbench.loaders`` imports
``pkg_resources`` (removed in setuptools 82), and ``robustbench.eval`` imports ``autoattack`` while the PyPI dependency
installs the module as ``pyautoattack``. All RobustBench models take [0, 1] inputs and normalize inside, as art_ext's
convention requires.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from art_ext._optional import require

#: RobustBench folder names of the threat models (``corruptions_3d`` shares the ``corruptions`` folder)
THREAT_MODELS = {"Linf": "Linf", "L2": "L2", "corruptions": "corruptions", "corruptions_3d": "corruptions"}
DATASETS = ("cifar10", "cifar100", "imagenet")


def _resource_filename(package_or_module: str, resource: str) -> str:
    """``pkg_resources.resource_filename``: a path next to the named module (or inside the named package)."""
    module = sys.modules.get(package_or_module) or importlib.import_module(package_or_module)
    return str(Path(module.__file__).parent / resource)  # type: ignore[arg-type]


def _install_import_shims() -> None:
    """Let ``import robustbench`` succeed without pkg_resources and with autoattack installed as pyautoattack.

    Only fills names that are missing: an installed ``pkg_resources`` or ``autoattack`` is left alone.
    """
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        importlib.import_module("autoattack")
    except ImportError:
        pyautoattack = require("pyautoattack")
        sys.modules["autoattack"] = pyautoattack
        sys.modules["autoattack.state"] = importlib.import_module("pyautoattack.state")


def robustbench_model_names(dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
    """Names RobustBench's zoo knows for a dataset and threat model."""
    _install_import_shims()
    require("robustbench")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    _check_choice(dataset, DATASETS, "dataset")
    _check_choice(threat_model, tuple(THREAT_MODELS), "threat_model")
    return sorted(model_dicts[BenchmarkDataset(dataset)].get(ThreatModel(threat_model), {}))


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {choices}")


def checkpoint_path(name: str, *, model_dir: str | Path, dataset: str = "cifar10", threat_model: str = "Linf") -> Path:
    """Where RobustBench looks for the checkpoint of ``name``."""
    _check_choice(dataset, DATASETS, "dataset")
    _check_choice(threat_model, tuple(THREAT_MODELS), "threat_model")
    return Path(model_dir) / dataset / THREAT_MODELS[threat_model] / f"{name}.pt"


def local_files(name: str, *, model_dir: str | Path, dataset: str = "cifar10", threat_model: str = "Linf"
                ) -> list[Path]:
    """The files RobustBench reads for ``name``, all of which must be present so that nothing is downloaded: the
    checkpoint, or one ``<name>.pt_m<i>.pt`` per member of an ensemble. A model whose weights RobustBench takes from
    timm's hub (no checkpoint of its own, e.g. the ``Debenedetti2022Light_XCiT-*`` entries) cannot be loaded offline
    and is refused with ``ValueError``."""
    _install_import_shims()
    require("robustbench")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    path = checkpoint_path(name, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
    entry = model_dicts[BenchmarkDataset(dataset)].get(ThreatModel(threat_model), {}).get(name)
    if entry is None:
        return [path]
    source = entry.get("gdrive_id")
    if source is None:
        raise ValueError(
            f"RobustBench model {name!r} ({dataset}/{threat_model}) has no checkpoint of its own: robustbench builds "
            "it with weights downloaded from timm's hub, and art_ext never downloads; load it yourself with timm and "
            "pass it as a file: reference, or pick another model"
        )
    if isinstance(source, (list, tuple)):  # an ensemble: robustbench reads one file per member
        return [path.with_name(f"{path.name}_m{i}.pt") for i in range(len(source))]
    return [path]


def check_checkpoint_file(path: str | Path, what: str = "checkpoint") -> Literal["zip", "legacy"]:
    """What a torch checkpoint file looks like on disk, read from its first bytes (nothing is unpickled): ``"zip"``
    (``torch.save``'s archive, or TorchScript) or ``"legacy"`` (a pre-1.6 ``torch.save`` pickle).

    A failed download leaves an HTML page or a truncated archive, which torch reports as an unpickling or zip error;
    here each is one line naming the file and what to do.

    Raises:
        FileNotFoundError: no file at ``path``. ValueError: the file is empty, an HTML page, a truncated zip archive,
            a zip file without ``data.pkl``, or neither a zip archive nor a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} not found (nothing is downloaded): place the file there")
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        raise ValueError(f"{what}: {path} is empty (an interrupted copy or download?): copy or download it again")
    if head.lstrip()[:1] == b"<":
        raise ValueError(f"{what}: {path} is an HTML page (a failed or blocked download?), not a torch checkpoint: "
                         "replace it with the real file")
    if head[:4] == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{what}: {path} is truncated (a torch zip archive without its end record): copy or "
                             "download it again")
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist()):
                raise ValueError(f"{what}: {path} is a zip file but not a torch checkpoint (no data.pkl)")
        return "zip"
    if head[:1] == b"\x80":  # pickle protocol marker of the legacy format
        return "legacy"
    raise ValueError(f"{what}: {path} is not a torch checkpoint (neither a torch zip archive nor a pickle)")


def load_robustbench_model(
    name: str, *, model_dir: str | Path, dataset: str = "cifar10", threat_model: str = "Linf",
    device: str = "cpu",
) -> nn.Module:
    """A RobustBench model in eval mode, from a checkpoint already placed under ``model_dir``.

    Args:
        name: RobustBench model name, e.g. ``"Standard"`` or ``"Rice2020Overfitting"``.
        model_dir: Root folder laid out as RobustBench expects: ``<model_dir>/<dataset>/<threat_model>/<name>.pt``
            (a state_dict, or a dict holding one under ``"state_dict"``).
        dataset: ``"cifar10"``, ``"cifar100"`` or ``"imagenet"``.
        threat_model: ``"Linf"``, ``"L2"``, ``"corruptions"`` or ``"corruptions_3d"``.
    Raises:
        ValueError: an unknown dataset, threat model or model name (the message lists the known names).
        FileNotFoundError: a file robustbench would read is not at its path (nothing is downloaded; ``local_files``
            lists them: the checkpoint, or each member of an ensemble).
        ValueError: also for a model whose weights robustbench would download from timm's hub, and for a file
            that is not a torch checkpoint (an HTML page, a truncated or empty file: ``check_checkpoint_file``).
    """
    known = robustbench_model_names(dataset, threat_model)
    if name not in known:
        raise ValueError(
            f"unknown RobustBench model {name!r} for {dataset}/{threat_model}; known: {', '.join(known)}"
        )
    files = local_files(name, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"RobustBench checkpoint {missing[0]} not found"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
            "; art_ext never downloads: place the model's files there (RobustBench's layout "
            "<model_dir>/<dataset>/<threat_model>/<name>.pt, and <name>.pt_m<i>.pt for each member of an ensemble)"
        )
    for file in files:  # an HTML page or a truncated archive: one line here, not torch's unpickling error
        check_checkpoint_file(file, f"RobustBench model {name!r}")
    from robustbench.utils import load_model

    model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    return model.to(device).eval()


# ---- leaderboard snapshot (package data) ---------------------------------------------------------------------------
LEADERBOARD_FILE = "robustbench_leaderboard.json"


@dataclass(frozen=True)
class LeaderboardEntry:
    """One RobustBench leaderboard row (percentages on the full 10,000-image test set, as the leaderboard gives them).

    Attributes:
        name, dataset, threat_model, architecture: As in RobustBench's ``model_info/<dataset>/<threat>/<name>.json``.
        eps: The budget as the entry writes it (``"8/255"``, ``"0.5"``); ``eps_value`` is it as a number.
        clean_acc, autoattack_acc: Clean and AutoAttack (standard) accuracy, in percent.
        reported: The paper's robust accuracy (percent) or None. external: A stronger external evaluation or None.
        additional_data: Trained with extra real data. unreliable: The leaderboard marks the evaluation unreliable.
        commit: The RobustBench commit the entry was read at.
    """

    name: str
    dataset: str
    threat_model: str
    architecture: str
    eps: str
    clean_acc: float
    autoattack_acc: float
    reported: float | None
    external: float | None
    additional_data: bool
    unreliable: bool
    commit: str

    @property
    def eps_value(self) -> float:
        num, _, den = self.eps.partition("/")
        return float(num) / float(den) if den else float(num)

    @property
    def best_known_acc(self) -> float:
        """The lowest robust accuracy the leaderboard lists (AutoAttack or an external evaluation), percent."""
        return min(a for a in (self.autoattack_acc, self.external) if a is not None)


@dataclass(frozen=True)
class Leaderboard:
    """A snapshot of RobustBench leaderboard entries with its provenance (``source``, ``date``, ``subset``)."""

    source: str
    date: str
    subset: str
    entries: tuple[LeaderboardEntry, ...]

    def get(self, name: str, *, dataset: str = "cifar10", threat_model: str = "Linf") -> LeaderboardEntry | None:
        """The entry of a model, or None when the snapshot does not hold it (it is a subset of the leaderboard).

        Raises:
            ValueError: an unknown ``dataset`` or ``threat_model`` (the message lists the valid ones).
        """
        _check_lookup(dataset, threat_model)
        for entry in self.entries:
            if (entry.name, entry.dataset, entry.threat_model) == (name, dataset, threat_model):
                return entry
        return None

    def names(self, *, dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
        """Names the snapshot holds for a dataset and threat model (``ValueError`` on unknown ones)."""
        _check_lookup(dataset, threat_model)
        return sorted(e.name for e in self.entries if (e.dataset, e.threat_model) == (dataset, threat_model))


def _check_lookup(dataset: str, threat_model: str) -> None:
    _check_choice(dataset, DATASETS, "dataset")
    _check_choice(threat_model, tuple(THREAT_MODELS), "threat_model")


def leaderboard() -> Leaderboard:
    """The RobustBench leaderboard snapshot shipped with art_ext (CIFAR-10 L2 and Linf; offline, no robustbench).

    RobustBench's PyPI wheel lacks its ``model_info/`` folder, so its reported clean and AutoAttack accuracies are
    unavailable offline; this is a subset of those entries, read from the public repository (each entry records the
    commit it was read at).

    Returns:
        ``Leaderboard``.

    Examples:
        >>> board = leaderboard()
        >>> entry = board.get("Wong2020Fast", threat_model="Linf")
        >>> entry.architecture, entry.clean_acc, entry.autoattack_acc, round(entry.eps_value, 4)
        ('ResNet-18', 83.34, 43.21, 0.0314)
        >>> board.get("Rice2020Overfitting", threat_model="L2").autoattack_acc
        67.68
    """
    from importlib import resources

    data = json.loads(resources.files("art_ext.models").joinpath(LEADERBOARD_FILE).read_text(encoding="utf-8"))
    fields = {f for f in LeaderboardEntry.__dataclass_fields__}
    entries = tuple(LeaderboardEntry(**{k: v for k, v in e.items() if k in fields}) for e in data["entries"])
    return Leaderboard(source=data["source"], date=data["date"], subset=data["subset"], entries=entries)
