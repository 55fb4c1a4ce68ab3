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
import sys
import types
from pathlib import Path

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
    _check_choice(threat_model, tuple(THREAT_MODELS), "threat_model")
    return Path(model_dir) / dataset / THREAT_MODELS[threat_model] / f"{name}.pt"


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
        FileNotFoundError: the checkpoint is not at the expected path (nothing is downloaded).
    """
    known = robustbench_model_names(dataset, threat_model)
    if name not in known:
        raise ValueError(
            f"unknown RobustBench model {name!r} for {dataset}/{threat_model}; known: {', '.join(known)}"
        )
    path = checkpoint_path(name, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
    if not path.is_file():
        raise FileNotFoundError(
            f"RobustBench checkpoint {path} not found; art_ext never downloads: place the model's .pt file there "
            "(RobustBench's layout <model_dir>/<dataset>/<threat_model>/<name>.pt)"
        )
    from robustbench.utils import load_model

    model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    return model.to(device).eval()
