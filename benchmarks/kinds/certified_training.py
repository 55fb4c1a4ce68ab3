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
"""

from __future__ import annotations

import logging
import re
import time
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
from benchmarks import common
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables
from benchmarks.image_keys import image_keys

log = logging.getLogger("benchmarks")

METHODS = ("gaussian", "smoothadv", "macer", "smoothmix", "consistency")
ART_TRAINERS = ("PyTorchMACER", "PyTorchSmoothAdv", "PyTorchSmoothMix")


def _art_args(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and (value[k] is None or (isinstance(value[k], (int, float)) and not isinstance(value[k],
                                                                                                          bool)))
        for k in value)
    return None if ok else "an inline table of ART constructor arguments with numeric values"


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


def check(suite: dict[str, Any]) -> None:
    """Each config is a zoo model (``model``) or an ART trainer (``art`` + ``init``); names are unique."""
    names = [c["name"] for c in suite["configs"]]
    if len(set(names)) != len(names):
        raise common.SuiteError(f"config names must be unique, got {names}")
    for c in suite["configs"]:
        if ("model" in c) == ("art" in c):
            raise common.SuiteError(f"config {c['name']!r}: give either model (a zoo classifier) or art (an ART "
                                    f"trainer, with init), not {'both' if 'model' in c else 'neither'}")
        if "art" in c and "init" not in c:
            raise common.SuiteError(f"config {c['name']!r}: art = {c['art']!r} needs init (the zoo entry whose "
                                    "architecture, initialization and budget it trains with)")
        if "model" in c and any(k in c for k in ("init", "art_args", "epochs")):
            raise common.SuiteError(f"config {c['name']!r}: init, art_args and epochs apply to art configs only")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _data(suite: dict[str, Any], split: str):
    return cached(("ct-data", split, suite.get("resolution", 16)),
                  lambda: digits.load_digits(split, resolution=int(suite.get("resolution", 16))))


def _threads(suite: dict[str, Any]) -> int:
    return int(suite.get("torch_threads", 1))


# ---------------------------------------------------------------------------------------------------------------
# Training (ART rows, in the run's own process) and the train rows
# ---------------------------------------------------------------------------------------------------------------


def art_weights_file(out: Path, config: dict[str, Any]) -> Path:
    return out / "art_models" / f"{_slug(config['name'])}.pt"


def train_art(suite: dict[str, Any], config: dict[str, Any], seed: int) -> tuple[torch.nn.Module, float]:
    """Train ``config``'s ART estimator by ART's ``fit``; returns the trained module (eval mode) and the seconds."""
    from art.estimators.certification import randomized_smoothing as art_rs

    entry = zoo.get_entry(config["init"], kind="classifier")
    budget = entry.train  # type: ignore[attr-defined]
    module = entry.build()
    train = _data(suite, "train").head(suite.get("train_images"))
    epochs = int(config.get("epochs", budget.epochs))
    optimizer = torch.optim.Adam(module.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=budget.lr, total_steps=epochs)
    trainer = getattr(art_rs, config["art"])
    estimator = trainer(module, torch.nn.CrossEntropyLoss(), input_shape=tuple(train.x.shape[1:]),
                        nb_classes=train.num_classes, optimizer=optimizer, clip_values=(0.0, 1.0), device_type="cpu",
                        scale=float(config["sigma"]), **dict(config.get("art_args", {})))
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]), torch_threads(_threads(suite)):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # ART's fit and attacks draw from the global NumPy RNG
            started = time.perf_counter()
            estimator.fit(train.x.numpy(), train.y.numpy(), batch_size=budget.batch_size, nb_epochs=epochs,
                          scheduler=scheduler)
            seconds = time.perf_counter() - started
    finally:
        np.random.set_state(numpy_state)
    return module.eval(), seconds


def run_training(suite: dict[str, Any], ctx: common.RunContext) -> dict[str, str]:
    """Train the ART configs not trained yet and write every config's ``train`` row; returns the ART weight files."""
    files = {}
    for config in suite["configs"]:
        cid = f"train/{config['name']}"
        if "model" in config:
            if not ctx.is_done(cid, 0):
                model = zoo.load(config["model"], kind="classifier", verbose=ctx.verbose)
                ctx.write_rows([{"kind": "train", "config": cid, "index": 0, "name": config["name"],
                                 "method": config["method"], "implementation": "art_ext", "sigma": config["sigma"],
                                 "model": config["model"], "sha256": model.sha256,
                                 "seconds": model.info.get("train_seconds")}])
            continue
        path = art_weights_file(ctx.out, config)
        files[config["name"]] = str(path)
        if ctx.is_done(cid, 0) and path.is_file():
            continue
        log.info("training %s (%s) in-run", config["name"], config["art"])
        module, seconds = train_art(suite, config, common.seed_for(ctx.seed, cid))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), path)
        ctx.write_rows([{"kind": "train", "config": cid, "index": 0, "name": config["name"],
                         "method": config["method"], "implementation": "ART " + config["art"],
                         "sigma": config["sigma"], "model": config["init"], "sha256": state_dict_sha256(module),
                         "seconds": round(seconds, 2)}])
    return files


# ---------------------------------------------------------------------------------------------------------------
# Certification
# ---------------------------------------------------------------------------------------------------------------


def _model(config: dict[str, Any], weights: str | None, env: WorkerEnv) -> torch.nn.Module:
    if weights is None:
        return cached(("zoo", config["model"], str(env.device)),
                      lambda: zoo.load(config["model"], kind="classifier", device=env.device).module)

    def load() -> torch.nn.Module:
        module = zoo.get_entry(config["init"], kind="classifier").build()
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return module.to(env.device).eval()

    return cached(("ct-art", weights, str(env.device)), load)


def certify_keys(seed: int, sigma: float, indices: list[int]):
    """Noise keys shared by every config at ``sigma``: the same images see the same noise in each row group."""
    return image_keys(seed, f"certify/sigma={float(sigma):g}", indices)


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    config, indices = unit.spec["config"], list(unit.indices)
    torch.set_num_threads(_threads(suite))
    data = _data(suite, "test")
    model = _model(config, unit.spec.get("weights"), env)
    x = data.x[indices].to(env.device)
    started = time.perf_counter()
    with torch.no_grad():
        certs = certify(model, x, n0=int(suite["n0"]), n=int(suite["n"]), sigma=float(config["sigma"]),
                        alpha=float(suite["alpha"]), num_classes=data.num_classes,
                        batch_size=int(suite["batch_size"]), keys=certify_keys(env.seed, config["sigma"], indices))
    seconds = (time.perf_counter() - started) / len(indices)
    implementation = "art_ext" if "model" in config else "ART " + config["art"]
    return [{"kind": "certify", "config": unit.config, "index": i, "name": config["name"], "method": config["method"],
             "implementation": implementation, "sigma": float(config["sigma"]), "label": int(data.y[i]),
             "certified_label": int(certs.label[j]), "radius": float(certs.radius[j]),
             "seconds": round(seconds, 4)} for j, i in enumerate(indices)]


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    weights = run_training(suite, ctx)
    test = _data(suite, "test").head(ctx.limit)
    chunk = int(suite.get("images_per_chunk", 25))
    units = []
    for config in suite["configs"]:
        cid = f"cert/{config['name']}"
        for start in range(0, len(test), chunk):
            indices = tuple(range(start, min(start + chunk, len(test))))
            if all(ctx.is_done(cid, i) for i in indices):
                continue
            units.append(Unit(cid, indices, common.seed_for(ctx.seed, cid),
                              {"config": config, "weights": weights.get(config["name"])}))
    ctx.run_units(units, compute, suite, desc="certify")


# ---------------------------------------------------------------------------------------------------------------
# Report (from rows only)
# ---------------------------------------------------------------------------------------------------------------


def _pair(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r["certified_label"] for r in rows]), np.array([r["radius"] for r in rows])


def _radii_credited(rows: list[dict[str, Any]]) -> np.ndarray:
    """Per image: the certified radius when the certificate is correct, else 0 (what ACR averages)."""
    return np.array([r["radius"] if r["certified_label"] == r["label"] else 0.0 for r in rows])


def summarize(suite: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    radii = [float(r) for r in suite["radii"]]
    train = {r["name"]: r for r in rows if r["kind"] == "train"}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] == "certify":
            by_name.setdefault(r["name"], []).append(r)
    baseline = {float(c["sigma"]): c["name"] for c in suite["configs"]
                if c["method"] == "gaussian" and "model" in c}
    out = []
    for config in suite["configs"]:
        mine = sorted(by_name.get(config["name"], []), key=lambda r: r["index"])
        if not mine:
            continue
        labels = np.array([r["label"] for r in mine])
        credited = _radii_credited(mine)
        accuracy = certified_accuracy(_pair(mine), labels, radii)
        record: dict[str, Any] = {
            "name": config["name"], "method": config["method"], "sigma": float(config["sigma"]),
            "implementation": mine[0]["implementation"], "examples": len(mine),
            "certified_accuracy": accuracy,
            "certified_accuracy_se": {r: rep.binomial_se(a, len(mine)) for r, a in accuracy.items()},
            "acr": average_certified_radius(_pair(mine), labels), "acr_se": rep.se_of_mean(credited),
            "abstain": abstain_rate(_pair(mine)),
            "train_seconds": train.get(config["name"], {}).get("seconds"),
            "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
        }
        reference = baseline.get(float(config["sigma"]))
        if reference is not None and reference != config["name"]:
            theirs = {r["index"]: r for r in by_name.get(reference, [])}
            shared = [r for r in mine if r["index"] in theirs]
            if len(shared) > 1:
                diff = _radii_credited(shared) - _radii_credited([theirs[r["index"]] for r in shared])
                record["delta_acr_vs_gaussian"] = float(diff.mean())
                record["delta_acr_se"] = rep.se_of_mean(diff)
        out.append(record)
    return out


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json`` and ``summary.md`` from the rows (``report.certified_training``)."""
    from benchmarks.report import certified_training as ct_report

    return ct_report.write(suite, summarize(suite, rows), out, manifest)
