"""Suite kind ``certified_training``: CERTIFY of classifiers trained with each certified-training method, art_ext's
zoo models beside ART's own trainers, with training time.

Two kinds of ``[[configs]]`` rows, both certified by art_ext's CERTIFY (``art_ext.smoothing.certify``):

* ``model = "<zoo name>"``: a zoo classifier (art_ext's ``training.certified`` entries, or the Gaussian-augmentation
  entries); its training time is the one recorded with its weights (``info["train_seconds"]``, one thread).
* ``art = "PyTorchMACER" | "PyTorchSmoothAdv" | "PyTorchSmoothMix"`` with ``init = "<zoo name>"``: ART 1.20.1's
  estimator trained *in this run* by its own ``fit`` on the same digits training split, from the untrained module of
  the ``init`` entry (same architecture, normalization inside, same initialization), with that entry's budget: its
  epochs (or the config's ``epochs``), batch size, and Adam at its peak learning rate under a one-cycle schedule
  stepped once per epoch (ART's ``fit`` steps a scheduler per epoch; the zoo steps it per optimizer step and adds
  random shifts, which ART's ``fit`` cannot). ``scale`` is the config's ``sigma``; ``art_args`` are the method's
  constructor arguments (e.g. ``{ gaussian_samples = 16, lmbda = 4.0 }``). ART draws from the global RNGs, which are
  seeded from the run seed and the config around ``fit`` (and restored), on ``torch_threads`` threads. The weights go
  to ``<out>/art_models/<config>.pt``; a resumed run reads them back.

Suite keys (``SCHEMA``): ``dataset`` ("digits"), ``resolution``, ``limit`` (test images), ``n0``, ``n``, ``alpha``,
``batch_size`` (noise samples per forward), ``images_per_chunk``, ``radii``, ``torch_threads``, ``train_images``
(first N training images for the ART rows; default all) and ``[[configs]]`` with ``name``, ``method`` (the row
group: "gaussian", "smoothadv", "macer", "smoothmix", "consistency"), ``sigma`` and either ``model`` or ``art`` +
``init`` (+ ``art_args``, ``epochs``). Rows: one ``train`` row per config (``seconds`` = training time) and one
``certify`` row per test image. An image's noise depends on the run seed, sigma and its dataset index only, so every
config at one sigma sees the same noise (paired comparisons).

``check`` builds the suite's frozen ``CertifiedTrainingSpec`` once (``specs.typed``; each error names the field,
``configs[i].<field>`` for a config's), and training, certification and the summary read it; the Markdown is
``benchmarks.report.certified_training``'s.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_ext import zoo
from art_ext.data import digits
from art_ext.ops.hashing import state_dict_sha256
from art_ext.ops.modes import torch_threads
from art_ext.smoothing import certify
from art_ext.smoothing.metrics import abstain_rate, average_certified_radius, certified_accuracy
from benchmarks import common, specs
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables
from benchmarks.image_keys import image_keys

log = logging.getLogger("benchmarks")

METHODS = ("gaussian", "smoothadv", "macer", "smoothmix", "consistency")
ART_TRAINERS = ("PyTorchMACER", "PyTorchSmoothAdv", "PyTorchSmoothMix")


ART_ARGS_FORM = "an inline table of ART constructor arguments with numeric values"


def _art_args(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and (value[k] is None or (isinstance(value[k], (int, float)) and not isinstance(value[k],
                                                                                                          bool)))
        for k in value)
    return None if ok else ART_ARGS_FORM


SCHEMA = {
    "dataset": Key(common.choice("digits")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "n0": Key(common.integer(1), required=True),
    "n": Key(common.integer(1), required=True),
    "alpha": Key(common.number(gt=0, lt=1), required=True),
    "batch_size": Key(common.integer(1), required=True),
    "images_per_chunk": Key(common.integer(1)),
    "radii": Key(common.list_of(common.number(ge=0)), required=True),
    "torch_threads": Key(common.integer(1)),
    "train_images": Key(common.integer(1)),
    "configs": Tables({
        "name": Key(common.string, required=True),
        "method": Key(common.choice(*METHODS), required=True),
        "sigma": Key(common.number(gt=0), required=True),
        "model": Key(common.zoo_name("classifier")),
        "art": Key(common.choice(*ART_TRAINERS)),
        "init": Key(common.zoo_name("classifier")),
        "art_args": Key(_art_args),
        "epochs": Key(common.integer(1)),
    }, required=True),
}


# ---------------------------------------------------------------------------------------------------------------
# The typed spec
# ---------------------------------------------------------------------------------------------------------------


def file_slug(name: str) -> str:
    """``name`` as a file name (what is not a letter, digit, ".", "_" or "-" becomes "_")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _invalid(where: str, value: Any, expected: str) -> common.SuiteError:
    return common.SuiteError(f"{where} = {value!r} is invalid; expected {expected}")


def _finite(value: Any, *, positive: bool) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value > 0 if positive else value >= 0))


@dataclass(frozen=True)
class TrainingConfigSpec:
    """One ``[[configs]]`` table, typed: a zoo classifier (``model``) or an ART trainer trained in-run (``art``,
    from the untrained module of ``init``, with ``art_args`` and optionally ``epochs``)."""

    name: str
    method: str
    sigma: float
    sigma_as_written: float  # the TOML value (an int stays an int in the train row, as before the spec)
    model: str | None
    art: str | None
    init: str | None
    art_args: tuple[tuple[str, float | None], ...]
    epochs: int | None

    @classmethod
    def from_table(cls, table: Mapping[str, Any], index: int) -> TrainingConfigSpec:
        """The spec of ``configs[index]``; raises ``SuiteError`` naming ``configs[index].<field>``."""
        where = f"configs[{index}]"
        if not isinstance(table.get("name"), str) or not table["name"]:
            raise _invalid(f"{where}.name", table.get("name"), "a non-empty string")
        if table.get("method") not in METHODS:
            raise _invalid(f"{where}.method", table.get("method"), "one of " + ", ".join(map(repr, METHODS)))
        if not _finite(table.get("sigma"), positive=True):
            raise _invalid(f"{where}.sigma", table.get("sigma"), "a finite number > 0")
        if ("model" in table) == ("art" in table):
            field = "art" if "model" in table else "model"
            raise common.SuiteError(f"{where}.{field}: config {table['name']!r}: give either model (a zoo "
                                    "classifier) or art (an ART trainer, with init), not "
                                    f"{'both' if 'model' in table else 'neither'}")
        classifiers = zoo.names(kind="classifier")
        if "model" in table:
            if table["model"] not in classifiers:
                raise _invalid(f"{where}.model", table["model"], "a zoo classifier name")
            extra = [k for k in ("init", "art_args", "epochs") if k in table]
            if extra:
                raise common.SuiteError(f"{where}.{extra[0]}: init, art_args and epochs apply to art configs only "
                                        f"(config {table['name']!r} has model = {table['model']!r})")
        else:
            if table["art"] not in ART_TRAINERS:
                raise _invalid(f"{where}.art", table["art"], "one of " + ", ".join(map(repr, ART_TRAINERS)))
            if "init" not in table:
                raise common.SuiteError(f"{where}.init: config {table['name']!r}: art = {table['art']!r} needs init "
                                        "(the zoo entry whose architecture, initialization and budget it trains with)")
            if table["init"] not in classifiers:
                raise _invalid(f"{where}.init", table["init"], "a zoo classifier name")
            if _art_args(table.get("art_args", {})) is not None:
                raise _invalid(f"{where}.art_args", table["art_args"], ART_ARGS_FORM)
            epochs = table.get("epochs", 1)
            if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 2 ** 63 - 1:
                raise _invalid(f"{where}.epochs", epochs, "an integer >= 1 and <= 2**63 - 1")
        return cls(name=table["name"], method=table["method"], sigma=float(table["sigma"]),
                   sigma_as_written=table["sigma"], model=table.get("model"),
                   art=table.get("art"), init=table.get("init"),
                   art_args=tuple(sorted(dict(table.get("art_args", {})).items())), epochs=table.get("epochs"))

    @property
    def implementation(self) -> str:
        """Who trained it: "art_ext" (a zoo model) or "ART <trainer>"."""
        return "art_ext" if self.art is None else f"ART {self.art}"

    @property
    def zoo_entry(self) -> str:
        """The zoo entry it loads (``model``) or trains from (``init``)."""
        name = self.model if self.art is None else self.init
        assert name is not None
        return name

    @property
    def train_id(self) -> str:
        return f"train/{self.name}"

    @property
    def certify_id(self) -> str:
        return f"cert/{self.name}"


@dataclass(frozen=True)
class CertifiedTrainingSpec:
    """A ``certified_training`` suite, typed (``from_suite``), every default resolved once."""

    name: str
    description: str
    dataset: str
    resolution: int
    limit: int | None
    n0: int
    n: int
    alpha: float
    batch_size: int
    images_per_chunk: int
    radii: tuple[float, ...]
    torch_threads: int
    train_images: int | None
    configs: tuple[TrainingConfigSpec, ...]

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> CertifiedTrainingSpec:
        """The spec of a suite; raises ``SuiteError`` naming the field (``configs[i].<field>`` for a config's)."""
        alpha: Any = suite.get("alpha")
        if not _finite(alpha, positive=True) or alpha >= 1:
            raise _invalid("alpha", alpha, "a number > 0 and < 1")
        n: Any = suite.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise _invalid("n", n, "an integer >= 1")
        specs.check_certifiable({"n": n, "alpha": alpha}, "")
        radii = suite.get("radii")
        if not isinstance(radii, (list, tuple)) or not radii:
            raise _invalid("radii", radii, "a non-empty list of finite numbers >= 0")
        for i, radius in enumerate(radii):
            if not _finite(radius, positive=False):
                raise _invalid(f"radii[{i}]", radius, "a finite number >= 0")
        configs = tuple(TrainingConfigSpec.from_table(table, i) for i, table in enumerate(suite["configs"]))
        seen: dict[str, int] = {}
        for i, config in enumerate(configs):
            # the ART weights file is named by the slug: two names with one slug would share a file
            for key, what in ((config.name, "name"), (file_slug(config.name), "weights file name")):
                first = seen.setdefault(f"{what}:{key}", i)
                if first != i:
                    raise common.SuiteError(f"configs[{first}].name and configs[{i}].name give the same {what} "
                                            f"{key!r}: config names must be unique (their rows and weights would "
                                            "collide)")
        return cls(name=str(suite.get("name", "certified_training")), description=str(suite.get("description", "")),
                   dataset=str(suite.get("dataset", specs.DEFAULT_DATASET)),
                   resolution=int(suite.get("resolution", specs.DEFAULT_RESOLUTION)), limit=suite.get("limit"),
                   n0=int(suite["n0"]), n=n, alpha=float(alpha), batch_size=int(suite["batch_size"]),
                   images_per_chunk=int(suite.get("images_per_chunk", 25)), radii=tuple(float(r) for r in radii),
                   torch_threads=int(suite.get("torch_threads", 1)), train_images=suite.get("train_images"),
                   configs=configs)


def spec_of(suite: Mapping[str, Any] | CertifiedTrainingSpec) -> CertifiedTrainingSpec:
    """The ``CertifiedTrainingSpec`` of a suite (built once per process and suite)."""
    return specs.typed(CertifiedTrainingSpec, suite)


def check(suite: dict[str, Any]) -> None:
    """Rules across keys, before any work: the spec builds (``CertifiedTrainingSpec.from_suite``)."""
    spec_of(suite)


def _data(spec: CertifiedTrainingSpec, split: str):
    return cached(("ct-data", split, spec.resolution),
                  lambda: digits.load_digits(split, resolution=spec.resolution))


# ---------------------------------------------------------------------------------------------------------------
# Training (ART rows, in the run's own process) and the train rows
# ---------------------------------------------------------------------------------------------------------------


def art_weights_file(out: Path, name: str) -> Path:
    """Where a run in ``out`` keeps the weights of its ART config ``name``."""
    return out / "art_models" / f"{file_slug(name)}.pt"


def train_art(suite: Mapping[str, Any] | CertifiedTrainingSpec, config: TrainingConfigSpec,
              seed: int) -> tuple[torch.nn.Module, float]:
    """Train ``config``'s ART estimator by ART's ``fit``; returns the trained module (eval mode) and the seconds."""
    from art.estimators.certification import randomized_smoothing as art_rs

    spec = spec_of(suite)
    entry = zoo.get_entry(config.zoo_entry, kind="classifier")
    budget = entry.train  # type: ignore[attr-defined]
    module = entry.build()
    train = _data(spec, "train").head(spec.train_images)
    epochs = config.epochs if config.epochs is not None else int(budget.epochs)
    optimizer = torch.optim.Adam(module.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=budget.lr, total_steps=epochs)
    trainer = getattr(art_rs, str(config.art))
    estimator = trainer(module, torch.nn.CrossEntropyLoss(), input_shape=tuple(train.x.shape[1:]),
                        nb_classes=train.num_classes, optimizer=optimizer, clip_values=(0.0, 1.0), device_type="cpu",
                        scale=config.sigma, **dict(config.art_args))
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch_threads(spec.torch_threads):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # ART's fit and attacks draw from the global NumPy RNG
            started = time.perf_counter()
            estimator.fit(train.x.numpy(), train.y.numpy(), batch_size=budget.batch_size, nb_epochs=epochs,
                          scheduler=scheduler)
            seconds = time.perf_counter() - started
    finally:
        np.random.set_state(numpy_state)
    return module.eval(), seconds


def read_art_weights(path: Path, recorded: str) -> dict[str, torch.Tensor]:
    """The ART weights saved at ``path`` (read without unpickling), if they are the ones whose sha256 the run's
    ``train`` row ``recorded``; otherwise a one-line ``SuiteError``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    found = state_dict_sha256(state)
    if found != recorded:
        raise common.SuiteError(f"{path} holds weights with sha256 {found[:12]}..., but this run trained and recorded "
                                f"{recorded[:12]}...: the file was replaced; continue in a new --out folder")
    return state


def run_training(suite: Mapping[str, Any] | CertifiedTrainingSpec, ctx: common.RunContext) -> dict[str, str]:
    """Train the ART configs not trained yet and write every config's ``train`` row; returns the ART weight files."""
    files = {}
    for config in spec_of(suite).configs:
        cid = config.train_id
        if config.art is None:
            if not ctx.is_done(cid, 0):
                model = zoo.load(config.zoo_entry, kind="classifier", verbose=ctx.verbose)
                ctx.write_rows([{"kind": "train", "config": cid, "index": 0, "name": config.name,
                                 "method": config.method, "implementation": config.implementation,
                                 "sigma": config.sigma_as_written, "model": config.zoo_entry, "sha256": model.sha256,
                                 "seconds": model.info.get("train_seconds")}])
            continue
        path = art_weights_file(ctx.out, config.name)
        files[config.name] = str(path)
        recorded = ctx.written(cid, 0)
        if recorded is not None and path.is_file():
            read_art_weights(path, recorded["sha256"])  # a continued run certifies the weights it recorded
            continue
        log.info("training %s (%s) in-run", config.name, config.art)
        module, seconds = train_art(suite, config, common.seed_for(ctx.seed, cid))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(module.state_dict(), tmp)
        os.replace(tmp, path)  # a kill mid-save leaves the old file or none, never a torn one
        ctx.write_rows([{"kind": "train", "config": cid, "index": 0, "name": config.name,
                         "method": config.method, "implementation": config.implementation,
                         "sigma": config.sigma_as_written, "model": config.zoo_entry,
                         "sha256": state_dict_sha256(module), "seconds": round(seconds, 2)}])
    return files


# ---------------------------------------------------------------------------------------------------------------
# Certification
# ---------------------------------------------------------------------------------------------------------------


def _model(config: TrainingConfigSpec, weights: str | None, env: WorkerEnv) -> torch.nn.Module:
    if weights is None:
        return cached(("zoo", config.zoo_entry, str(env.device)),
                      lambda: zoo.load(config.zoo_entry, kind="classifier", device=env.device).module)

    def load() -> torch.nn.Module:
        module = zoo.get_entry(config.zoo_entry, kind="classifier").build()
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return module.to(env.device).eval()

    return cached(("ct-art", weights, str(env.device)), load)


def certify_keys(seed: int, sigma: float, indices: list[int]):
    """Noise keys shared by every config at ``sigma``: the same images see the same noise in each row group."""
    return image_keys(seed, f"certify/sigma={float(sigma):g}", indices)


def compute(suite: Mapping[str, Any] | CertifiedTrainingSpec, unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The ``certify`` rows of one chunk of images of one config (``run`` lists the units)."""
    spec = spec_of(suite)
    config, indices = spec.configs[unit.spec["config"]], list(unit.indices)
    torch.set_num_threads(spec.torch_threads)
    data = _data(spec, "test")
    model = _model(config, unit.spec.get("weights"), env)
    x = data.x[indices].to(env.device)
    started = time.perf_counter()
    with torch.no_grad():
        certs = certify(model, x, n0=spec.n0, n=spec.n, sigma=config.sigma, alpha=spec.alpha,
                        num_classes=data.num_classes, batch_size=spec.batch_size,
                        keys=certify_keys(env.seed, config.sigma, indices))
    seconds = (time.perf_counter() - started) / len(indices)
    return [{"kind": "certify", "config": unit.config, "index": i, "name": config.name, "method": config.method,
             "implementation": config.implementation, "sigma": config.sigma, "label": int(data.y[i]),
             "certified_label": int(certs.label[j]), "radius": float(certs.radius[j]),
             "seconds": round(seconds, 4)} for j, i in enumerate(indices)]


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    spec = spec_of(suite)
    weights = run_training(spec, ctx)
    test = _data(spec, "test").head(ctx.limit)
    units = []
    for index, config in enumerate(spec.configs):
        cid = config.certify_id
        for start in range(0, len(test), spec.images_per_chunk):
            indices = tuple(range(start, min(start + spec.images_per_chunk, len(test))))
            if all(ctx.is_done(cid, i) for i in indices):
                continue
            # the unit names its config by position in the suite (picklable for any backend)
            units.append(Unit(cid, indices, common.seed_for(ctx.seed, cid),
                              {"config": index, "weights": weights.get(config.name)}))
    ctx.run_units(units, compute, suite, desc="certify")


# ---------------------------------------------------------------------------------------------------------------
# Report (from rows only)
# ---------------------------------------------------------------------------------------------------------------


def _pair(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r["certified_label"] for r in rows]), np.array([r["radius"] for r in rows])


def _radii_credited(rows: list[dict[str, Any]]) -> np.ndarray:
    """Per image: the certified radius when the certificate is correct, else 0 (what ACR averages)."""
    return np.array([r["radius"] if r["certified_label"] == r["label"] else 0.0 for r in rows])


def summarize(suite: Mapping[str, Any] | CertifiedTrainingSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary record per config with certification rows, in suite order, computed from rows only."""
    spec = spec_of(suite)
    radii = list(spec.radii)
    train = {r["name"]: r for r in rows if r["kind"] == "train"}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] == "certify":
            by_name.setdefault(r["name"], []).append(r)
    baseline = {c.sigma: c.name for c in spec.configs if c.method == "gaussian" and c.art is None}
    # an ART row's counterpart: art_ext's zoo model of the same method and sigma
    counterpart = {(c.method, c.sigma): c.name for c in spec.configs if c.art is None}
    out = []
    for config in spec.configs:
        mine = sorted(by_name.get(config.name, []), key=lambda r: r["index"])
        if not mine:
            continue
        labels = np.array([r["label"] for r in mine])
        credited = _radii_credited(mine)
        accuracy = certified_accuracy(_pair(mine), labels, radii)
        record: dict[str, Any] = {
            "name": config.name, "method": config.method, "sigma": config.sigma,
            "implementation": mine[0]["implementation"], "examples": len(mine),
            "certified_accuracy": accuracy,
            "certified_accuracy_se": {r: rep.binomial_se(a, len(mine)) for r, a in accuracy.items()},
            "acr": average_certified_radius(_pair(mine), labels), "acr_se": rep.se_of_mean(credited),
            "abstain": abstain_rate(_pair(mine)),
            "train_seconds": train.get(config.name, {}).get("seconds"),
            "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
        }
        reference = baseline.get(config.sigma)
        if reference is not None and reference != config.name:
            paired = _paired_delta_acr(mine, by_name.get(reference, []))
            if paired is not None:
                record["delta_acr_vs_gaussian"], record["delta_acr_se"] = paired
        reference = counterpart.get((config.method, config.sigma))
        if config.art is not None and reference is not None:
            paired = _paired_delta_acr(mine, by_name.get(reference, []))
            if paired is not None:
                record["delta_acr_vs_art_ext"], record["delta_acr_vs_art_ext_se"] = paired
        out.append(record)
    return out


def _paired_delta_acr(mine: list[dict[str, Any]], reference: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Mean and SE over the images both configs certified of (credited radius of ``mine`` minus ``reference``'s):
    a paired difference, as every config at one sigma sees the same noise per image; None below two shared images."""
    theirs = {r["index"]: r for r in reference}
    shared = [r for r in mine if r["index"] in theirs]
    if len(shared) < 2:
        return None
    diff = _radii_credited(shared) - _radii_credited([theirs[r["index"]] for r in shared])
    return float(diff.mean()), rep.se_of_mean(diff)


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json`` and ``summary.md`` from the rows (``report.certified_training``)."""
    from benchmarks.report import certified_training as ct_report

    spec = spec_of(suite)
    return ct_report.write(spec, summarize(spec, rows), out, manifest)
