"""Model and dataset references of the benchmark suites, resolved in one place.

Models (a suite's ``model`` / ``models`` value):

* ``zoo:<name>`` or a bare ``<name>``: an art_ext zoo classifier (trained on first use and cached).
* ``robustbench:<Name>[:<threat>[:<dataset>]]`` (threat ``Linf`` by default, dataset ``cifar10``): RobustBench's
  checkpoint at ``<model_dir>/<dataset>/<threat>/<Name>.pt``, loaded offline through
  ``art_ext.models.robustbench`` (nothing is ever downloaded).
* ``torchvision:<arch>[:<weights file>]``: a torchvision architecture with a local state_dict (default
  ``<model_dir>/torchvision/<arch>.pth``; ``torch.save`` read with ``weights_only=True``, or ``.safetensors``); the
  number of classes is read from the weights, and ImageNet's per-channel normalization is put in front, so the model
  takes [0, 1] pixels like every art_ext model.
* ``file:<path>``: a TorchScript archive (``torch.jit.save``), which loads without running Python code from the
  file; it must take [0, 1] pixels. A whole module saved with ``torch.save(model)`` is a pickle, and unpickling it
  runs whatever code the file names, so ``file:`` refuses it (the check reads the pickle's opcodes without
  executing them, and loading uses ``weights_only=True``). ``file+trusted:<path>`` is the explicit opt-in: it
  unpickles the file in full (``weights_only=False``); write it only for files you made or trust.

Datasets (a suite's ``dataset`` value): ``digits`` (embedded), ``cifar10`` (torchvision's on-disk format,
``<data_root>/cifar-10-batches-py``, read by ``art_ext.data.load_cifar10``), ``imagefolder:<path>``
(``root/<class>/<image>``, resized to 256 and center-cropped to 224 by ``art_ext.data.load_image_folder``).

``check`` verifies a reference without loading any weights (known names, files present and in a torch format: a
missing, HTML or truncated checkpoint is an error naming the expected path; a RobustBench ensemble needs every
member file, and a RobustBench model whose weights come from timm's hub is refused); ``load`` builds the module.
Nothing here opens a network connection. Both raise
``benchmarks.common.SuiteError``. ``model_dir`` and ``data_root`` come from ``--model-dir`` / ``--data-root`` or the
environment variables ``ART_EXT_MODEL_DIR`` / ``ART_EXT_DATA_ROOT``; relative paths in ``file:`` and
``imagefolder:`` are relative to the working directory.

Identity: ``ModelRef.load`` returns the sha256 of the weights it loaded (``LoadedModel.weights_sha256``:
``art_ext.ops.hashing.state_dict_sha256`` of the module's state_dict, the zoo's verified hash for zoo models) and
where they came from; ``identify`` does this for every model a suite names (classifiers, zoo denoisers and
diffusion models) and hashes the examples a run uses, for the manifest's ``models`` and ``dataset``.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from art_ext.ops.hashing import state_dict_sha256
from benchmarks.common import SuiteError
from benchmarks.safe_files import (
    check_torch_file,
    is_torchscript,
    pickled_object,
    read_state_dict,
    refuse_pickled_module,
    torch_load,
)

MODEL_FORMS = ("zoo:<name> (or a bare zoo name)", "robustbench:<Name>[:<threat>[:<dataset>]]",
               "torchvision:<arch>[:<weights file>]", "file:<path>",
               "file+trusted:<path> (unpickles a whole module: trusted files only)")
DATASET_FORMS = ("digits", "cifar10", "imagefolder:<path>")
DATA_ROOT_ENV, MODEL_DIR_ENV = "ART_EXT_DATA_ROOT", "ART_EXT_MODEL_DIR"


@dataclass(frozen=True)
class Roots:
    """Where references look for files: ``--data-root`` / ``--model-dir``, else the environment, else unset."""

    data_root: Path | None = None
    model_dir: Path | None = None

    @classmethod
    def from_options(cls, data_root: str | Path | None, model_dir: str | Path | None) -> Roots:
        data = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV) or None
        models = model_dir if model_dir is not None else os.environ.get(MODEL_DIR_ENV) or None
        return cls(Path(data) if data is not None else None, Path(models) if models is not None else None)

    def need_model_dir(self, ref: str) -> Path:
        if self.model_dir is None:
            raise SuiteError(f"model {ref!r} needs a model folder: pass --model-dir DIR or set {MODEL_DIR_ENV}")
        return self.model_dir

    def need_data_root(self, ref: str, holds: str) -> Path:
        if self.data_root is None:
            raise SuiteError(f"dataset {ref!r} needs a data root: pass --data-root DIR (holding {holds}) or set "
                             f"{DATA_ROOT_ENV}")
        return self.data_root


# ---- checkpoint files ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; ``text`` is the reference as written in the suite."""

    text: str
    scheme: str  # "zoo" | "robustbench" | "torchvision" | "file"
    name: str
    threat: str = "Linf"
    dataset: str = "cifar10"
    path: str | None = None  # explicit weights (torchvision) or module file (file)
    trusted: bool = False  # file+trusted: may unpickle a whole module (runs code from the file)

    def file(self, roots: Roots) -> Path | None:
        """The file this reference reads (None for the zoo)."""
        if self.scheme == "robustbench":
            from art_ext.models.robustbench import checkpoint_path

            return checkpoint_path(self.name, model_dir=roots.need_model_dir(self.text), dataset=self.dataset,
                                   threat_model=self.threat)
        if self.scheme == "torchvision":
            return Path(self.path) if self.path else roots.need_model_dir(self.text) / "torchvision" / \
                f"{self.name}.pth"
        if self.scheme == "file":
            return Path(self.name)
        return None

    def check(self, roots: Roots) -> dict[str, Any]:
        """Verify the reference without loading weights; returns what the manifest records about it."""
        if self.scheme == "zoo":
            from art_ext import zoo

            if self.name not in zoo.names(kind="classifier"):
                raise SuiteError(f"model {self.text!r}: unknown zoo classifier {self.name!r}; known: "
                                 f"{', '.join(zoo.names(kind='classifier'))} (other models: "
                                 f"{', '.join(MODEL_FORMS[1:])})")
            return {"reference": self.text, "zoo": self.name, "fingerprint": zoo.get_entry(self.name).fingerprint()}
        if self.scheme == "robustbench":
            from art_ext.models import robustbench as rb

            if self.threat not in rb.THREAT_MODELS or self.dataset not in rb.DATASETS:
                raise SuiteError(f"model {self.text!r}: threat must be one of {', '.join(rb.THREAT_MODELS)} and "
                                 f"dataset one of {', '.join(rb.DATASETS)}")
            try:
                known = rb.robustbench_model_names(self.dataset, self.threat)
            except ImportError as err:
                raise SuiteError(f"model {self.text!r}: {err}") from err
            if self.name not in known:
                raise SuiteError(f"model {self.text!r}: unknown RobustBench model {self.name!r} for "
                                 f"{self.dataset}/{self.threat}; known: {', '.join(known)}")
            return self._check_robustbench_files(roots)
        if self.scheme == "torchvision":
            import torchvision

            archs = torchvision.models.list_models(module=torchvision.models)
            if self.name not in archs:
                raise SuiteError(f"model {self.text!r}: unknown torchvision classification architecture "
                                 f"{self.name!r}; known: {', '.join(archs)}")
        path = self.file(roots)
        assert path is not None
        kind = check_torch_file(path, f"model {self.text!r}")
        if self.scheme == "file" and kind == "safetensors":
            raise SuiteError(f"model {self.text!r}: {path} holds weights only (safetensors) and a file: reference "
                             "needs the whole module: use torchvision:<arch>:<file> for a torchvision architecture, "
                             "or save the module with torch.jit.save")
        if self.scheme == "file" and not self.trusted and not (kind == "zip" and is_torchscript(path)):
            found = pickled_object(path, kind)
            if found is not None:
                raise refuse_pickled_module(f"model {self.text!r}", path, found)
        return {"reference": self.text, "file": str(path.resolve()), "bytes": path.stat().st_size}

    def _check_robustbench_files(self, roots: Roots) -> dict[str, Any]:
        """Every file robustbench would read is here (one per member of an ensemble), else robustbench would
        download it; a model built from timm's hub is refused."""
        from art_ext.models import robustbench as rb

        what = f"model {self.text!r}"
        try:
            files = rb.local_files(self.name, model_dir=roots.need_model_dir(self.text), dataset=self.dataset,
                                   threat_model=self.threat)
        except ValueError as err:
            raise SuiteError(f"{what}: {err}") from err
        if len(files) > 1:  # an ensemble
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise SuiteError(f"{what}: an ensemble of {len(files)} models, and member file {missing[0]} is not "
                                 f"found{f' (nor {len(missing) - 1} more)' if len(missing) > 1 else ''}; nothing is "
                                 f"downloaded: place <Name>.pt_m<i>.pt for each member in {files[0].parent}")
        for file in files:
            check_torch_file(file, what)
        if len(files) == 1:
            return {"reference": self.text, "file": str(files[0].resolve()), "bytes": files[0].stat().st_size}
        return {"reference": self.text, "files": [str(f.resolve()) for f in files],
                "bytes": sum(f.stat().st_size for f in files)}

    def load(self, roots: Roots, device: torch.device | str = "cpu", *, verbose: bool = False) -> LoadedModel:
        """The module in eval mode on ``device`` (and the zoo entry's training sigma, when it is a zoo model)."""
        if self.scheme == "zoo":
            from art_ext import zoo

            loaded = zoo.load(self.name, kind="classifier", device=device, verbose=verbose)
            entry = loaded.entry
            assert isinstance(entry, zoo.ClassifierEntry)  # what kind="classifier" loads
            return LoadedModel(loaded.module, entry.training_sigma, loaded.sha256,
                               f"zoo:{loaded.info.get('source', 'unknown')}")
        self.check(roots)
        path = self.file(roots)
        assert path is not None
        what = f"model {self.text!r}"
        if self.scheme == "robustbench":
            from art_ext.models.robustbench import load_robustbench_model

            try:
                module = load_robustbench_model(self.name, model_dir=roots.need_model_dir(self.text),
                                                dataset=self.dataset, threat_model=self.threat, device="cpu")
            except Exception as err:  # re-raised with the path; the loader's message is kept
                raise SuiteError(f"{what}: cannot load {path}: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0]}") from err
        elif self.scheme == "torchvision":
            module = _torchvision_model(self.name, path, what)
        else:
            if check_torch_file(path, what) == "zip" and is_torchscript(path):
                try:
                    module = torch.jit.load(str(path), map_location="cpu")
                except Exception as err:
                    raise SuiteError(f"{what}: cannot read TorchScript {path}: {str(err).splitlines()[0]}") from err
            else:
                module = self._unpickle(path, what)
                if not isinstance(module, nn.Module):
                    hint = (" (a state_dict: save the module itself with torch.jit.save, or use "
                            "torchvision:<arch>:<file> for a torchvision architecture)" if isinstance(module, dict)
                            else "")
                    raise SuiteError(f"{what}: {path} holds a {type(module).__name__}, not a torch module{hint}")
        return LoadedModel(module.to(device).eval(), None, state_dict_sha256(module), self.scheme)


    def _unpickle(self, path: Path, what: str) -> Any:
        """A torch.save file: in full for ``file+trusted:``, else with ``weights_only=True`` (no code runs)."""
        if self.trusted:
            return torch_load(path, what, weights_only=False)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # weights_only met a global it does not allow
            named = re.search(r"GLOBAL (\S+)", str(err))
            found = named.group(1) if named else "a global that torch's weights_only loader does not allow"
            raise refuse_pickled_module(what, path, found) from err
        except Exception as err:
            raise SuiteError(f"{what}: cannot read {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from err


@dataclass(frozen=True)
class LoadedModel:
    module: nn.Module
    training_sigma: float | None  # known for zoo models only
    weights_sha256: str  # state_dict_sha256 of the weights loaded
    source: str  # "zoo:shipped" / "zoo:cache" / "zoo:trained", "robustbench", "torchvision" or "file"


def _torchvision_model(arch: str, path: Path, what: str) -> nn.Module:
    import torchvision

    from art_ext.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
    from art_ext.models import Normalize

    state = read_state_dict(path, what)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise SuiteError(f"{what}: {path} is not a state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    matrices = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 2]
    if not matrices:
        raise SuiteError(f"{what}: {path} has no classifier weight matrix; is it a {arch} state_dict?")
    net = torchvision.models.get_model(arch, weights=None, num_classes=int(matrices[-1].shape[0]))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise SuiteError(f"{what}: {path} does not fit {arch}: {str(err).splitlines()[0]}") from err
    return nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), net)


def parse_model(text: Any) -> ModelRef:
    """A model reference from its suite text; a ``SuiteError`` naming the accepted forms otherwise."""
    forms = "; expected " + ", ".join(MODEL_FORMS)
    if not isinstance(text, str) or not text.strip():
        raise SuiteError(f"model reference {text!r} is invalid{forms}")
    scheme, sep, rest = text.partition(":")
    if not sep:
        return ModelRef(text, "zoo", text)
    if scheme == "zoo" and rest:
        return ModelRef(text, "zoo", rest)
    if scheme == "robustbench" and rest:
        parts = rest.split(":")
        if len(parts) > 3 or not all(parts):
            raise SuiteError(f"model reference {text!r} is invalid; expected robustbench:<Name>[:<threat>[:<dataset>]]")
        threat = parts[1] if len(parts) > 1 else ModelRef.threat
        dataset = parts[2] if len(parts) > 2 else ModelRef.dataset
        return ModelRef(text, "robustbench", parts[0], threat, dataset)
    if scheme == "torchvision" and rest:
        arch, _, weights = rest.partition(":")
        return ModelRef(text, "torchvision", arch, path=weights or None)
    if scheme in ("file", "file+trusted") and rest:
        return ModelRef(text, "file", rest, trusted=scheme == "file+trusted")
    raise SuiteError(f"model reference {text!r} is invalid{forms}")


def model_check(value: Any) -> str | None:
    """A schema check (``benchmarks.common.Key``): the syntax of a model reference."""
    try:
        parse_model(value)
    except SuiteError:
        return "a model reference: " + ", ".join(MODEL_FORMS)
    return None


# ---- datasets ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRef:
    text: str
    scheme: str  # "digits" | "cifar10" | "imagefolder"
    path: str | None = None

    def splits(self) -> tuple[str, ...]:
        return {"digits": ("train", "val", "test"), "cifar10": ("train", "test"), "imagefolder": ("test",)}[
            self.scheme]

    def check(self, roots: Roots, split: str = "test") -> dict[str, Any]:
        """Verify the files are there (no image is read); returns what the manifest records."""
        if split not in self.splits():
            raise SuiteError(f"dataset {self.text!r} has no split {split!r}; its splits: {', '.join(self.splits())}")
        if self.scheme == "digits":
            return {"reference": self.text, "split": split}
        if self.scheme == "cifar10":
            from art_ext.data.cifar10 import FOLDER, TEST_FILES, TRAIN_FILES

            folder = roots.need_data_root(self.text, FOLDER) / FOLDER
            names = TEST_FILES if split == "test" else TRAIN_FILES
            missing = [name for name in names if not (folder / name).is_file()]
            if missing:
                raise SuiteError(f"dataset 'cifar10': {', '.join(missing)} not found in {folder} (torchvision's "
                                 f"on-disk format; nothing is downloaded)")
            return {"reference": self.text, "split": split, "folder": str(folder.resolve())}
        folder = Path(self.path or "")
        if not folder.is_dir():
            raise SuiteError(f"dataset {self.text!r}: folder {folder} does not exist; expected <path>/<class>/<image>")
        return {"reference": self.text, "split": split, "folder": str(folder.resolve())}

    def load(self, roots: Roots, split: str = "test", *, resolution: int = 16, limit: int | None = None):
        """The examples (``art_ext.data.LabeledImages``), the first ``limit`` of the split's fixed order."""
        self.check(roots, split)
        if self.scheme == "digits":
            from art_ext.data import load_digits

            return load_digits(split, resolution=resolution).head(limit)
        if self.scheme == "cifar10":
            from art_ext.data import load_cifar10

            return load_cifar10(roots.need_data_root(self.text, "cifar-10-batches-py"), split, limit=limit)
        from art_ext.data import load_image_folder

        return load_image_folder(self.path or "", limit=limit)


def parse_dataset(text: Any) -> DatasetRef:
    if text in ("digits", "cifar10"):
        return DatasetRef(text, text)
    if isinstance(text, str) and text.startswith("imagefolder:") and len(text) > len("imagefolder:"):
        return DatasetRef(text, "imagefolder", text[len("imagefolder:"):])
    raise SuiteError(f"dataset reference {text!r} is invalid; expected {', '.join(DATASET_FORMS)}")


def dataset_check(value: Any) -> str | None:
    try:
        parse_dataset(value)
    except SuiteError:
        return "a dataset reference: " + ", ".join(DATASET_FORMS)
    return None


# ---- identity: what a run's manifest records about the weights and examples it uses -------------------------------
def suite_models(suite: dict[str, Any], references: list[str] | None = None) -> list[str]:
    """The model references a suite uses: ``references`` (its classifiers, as resolved by the kind's ``prepare``)
    and every value in the suite that names a zoo entry (``<name>``, ``zoo:<name>`` or ``denoiser:<name>``), sorted."""
    from art_ext import zoo

    found = set(references or ())

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            name = value.removeprefix("zoo:").removeprefix("denoiser:")
            if name in zoo.REGISTRY:
                found.add(value.removeprefix("denoiser:"))

    walk(suite)
    return sorted(found)


def identify(suite: dict[str, Any], roots: Roots, *, references: list[str] | None = None,
             limit: int | None = None, preflight: bool = True,
             pairs: list[tuple[str, str, float | None]] | None = None) -> dict[str, Any]:
    """``{"models": {reference: {"sha256", "source"}}, "dataset": {...}}`` for a run of ``suite``: the sha256 of the
    weights each model reference loads (on the CPU, as the run will: the zoo's verified files, or the files of
    ``file:`` / ``robustbench:`` / ``torchvision:`` references), and the sha256 of the run's examples (the first
    ``limit`` of the suite's dataset split: images and labels, hashed as the state_dict ``{"x": ..., "y": ...}``).
    Then, with ``preflight`` (the runner's case), the first example goes through every model and every (model,
    defence) pair of ``pairs`` (the kind's ``pairs(suite)``; ``benchmarks.preflight``), so a model or a pair that
    does not fit the dataset is a ``SuiteError`` before any row."""
    from art_ext import zoo
    from benchmarks import preflight as check

    models: dict[str, Any] = {}
    modules: dict[str, tuple[str, nn.Module]] = {}
    for ref in suite_models(suite, references):
        parsed = parse_model(ref)
        if parsed.scheme == "zoo" and zoo.get_entry(parsed.name).kind != "classifier":
            loaded = zoo.load(parsed.name)
            models[ref] = {"sha256": loaded.sha256, "source": f"zoo:{loaded.info.get('source', 'unknown')}"}
            modules[ref] = (zoo.get_entry(parsed.name).kind, loaded.module)
        else:
            model = parsed.load(roots, "cpu")
            models[ref] = {"sha256": model.weights_sha256, "source": model.source}
            modules[ref] = ("classifier", model.module)
    dataset = parse_dataset(suite.get("dataset", "digits"))
    split = suite.get("split", "test")
    data = dataset.load(roots, split, resolution=int(suite.get("resolution", 16)), limit=limit)
    if preflight and len(data.y):  # one example through every model, before the first row
        check.check_models(modules, data.x[:1], int(data.num_classes), dataset.text)
        check.check_pairs(list(pairs or ()), modules, data.x[:1], int(data.num_classes), dataset.text)
    identity = {"reference": dataset.text, "split": split, "limit": limit, "examples": len(data.y),
                "sha256": state_dict_sha256({"x": data.x, "y": data.y})}
    return {"models": models, "dataset": identity}
