"""Suite kind ``certify``: Cohen et al. CERTIFY of zoo models on a dataset, tables and curves as in the papers.

Suite file keys (``SCHEMA``; any other key is an error): ``dataset`` (a dataset reference: "digits", "cifar10",
"imagefolder:<path>"; see ``benchmarks.references``), ``split``, ``resolution`` (digits only), ``limit``, ``n0``,
``n``, ``alpha``, ``batch_size``, ``images_per_chunk`` (images certified together; the unit of resume; an image's
noise depends on the run seed, its config and its dataset index only, ``benchmarks.image_keys``), ``radii`` (table
columns) and ``[[configs]]`` tables with ``model`` (a model reference: a zoo name, ``robustbench:<Name>``,
``torchvision:<arch>``, ``file:<path>``) and ``sigma``. ``--limit`` bounds the number of images certified per config
(the only per-example loop of this kind).

Denoised smoothing (Salman et al. 2020): a config may add ``denoiser`` (a zoo denoiser name; the base classifier is
then ``DenoisedClassifier(denoiser, model)``) and ``row`` (its row name in tables and plots). With
``paper_table = true`` the report adds, per sigma, the paper's Table 1-2 layout (certified accuracy at ``paper_radii``
with the clean smoothed accuracy, i.e. certified accuracy at radius 0, in parentheses, plus ACR) and the envelope
over sigma.

Sequential certification (issue 13): a config (or the suite) may set ``method = "sequential"`` (default ``"cohen"``,
fixed-n CERTIFY with ``n``); such a config runs ``certify_sequential`` with ``n_max`` (suite or config key), the
stopping grid ``grid`` (config key; default the suite's ``radii``) and ``sequential_method`` (``"staged_cp"``, the
default, or ``"mixture_cs"``), and optionally its tuning ``final_alpha_share`` / ``top_alpha_share`` / ``futility``
(suite or config keys; ``staged_cp`` only for the two shares; when set they are part of the config id). Its rows
add ``method``, ``num_samples`` (forward passes spent on the image, selection included), ``n_max`` and ``grid``;
fixed-n rows are unchanged. Summaries carry the mean and median forward passes per
image, and the report shows them (with the method) when the suite holds a sequential config.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from art_ext import zoo
from art_ext.deployment import declared_noise
from art_ext.smoothing import PixelNoise, certify, certify_sequential
from art_ext.smoothing.metrics import abstain_rate, average_certified_radius, certified_accuracy
from benchmarks import common, references, specs
from benchmarks import report as rep
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables
from benchmarks.image_keys import image_keys, noise_fields

log = logging.getLogger("benchmarks")


METHODS = ("cohen", "sequential")
SEQUENTIAL_METHODS = ("staged_cp", "mixture_cs")
TUNING_KEYS = ("final_alpha_share", "top_alpha_share", "futility")  # certify_sequential's keywords


def method_of(config: Mapping[str, Any], suite: Mapping[str, Any] | None = None) -> str:
    method = config.get("method", (suite or {}).get("method", "cohen"))
    if method not in METHODS:
        raise ValueError(f"certify kind: method must be one of {METHODS}, got {method!r} (config {config})")
    return method


def sequential_settings(config: Mapping[str, Any], suite: Mapping[str, Any]) -> dict[str, Any]:
    """n_max, stopping grid and bound of a sequential config, validated."""
    n_max = config.get("n_max", suite.get("n_max"))
    if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
        raise ValueError(f"certify kind: a sequential config needs n_max (an int >= 1, suite or config key), got "
                         f"{n_max!r}")
    grid = [float(r) for r in config.get("grid", suite["radii"])]
    method = config.get("sequential_method", suite.get("sequential_method", "staged_cp"))
    if method not in SEQUENTIAL_METHODS:
        raise ValueError(f"certify kind: sequential_method must be one of {SEQUENTIAL_METHODS}, got {method!r}")
    tuning = {key: float(config[key] if key in config else suite[key])
              for key in TUNING_KEYS if key in config or key in suite}
    for key in ("final_alpha_share", "top_alpha_share"):
        if key in tuning and method != "staged_cp":
            raise ValueError(f"certify kind: {key} applies to sequential_method 'staged_cp' only")
    return {"n_max": n_max, "grid": grid, "sequential_method": method, "tuning": tuning}



def _denoiser_check(value: Any) -> str | None:
    """A zoo denoiser (DnCNN / MemNet, trained at one sigma) or a zoo diffusion model (any sigma)."""
    if common.zoo_name("denoiser")(value) is None or common.zoo_name("diffusion")(value) is None:
        return None
    return (f"a zoo denoiser or diffusion name, one of: "
            f"{', '.join([*zoo.names(kind='denoiser'), *zoo.names(kind='diffusion')])}")


SCHEMA = {
    "dataset": Key(references.dataset_check),
    "split": Key(common.choice("train", "val", "test")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "n0": Key(common.integer(1), required=True),
    "n": Key(common.integer(1), required=True),
    "alpha": Key(common.number(gt=0, lt=1), required=True),
    "batch_size": Key(common.integer(1), required=True),
    "images_per_chunk": Key(common.integer(1)),
    "radii": Key(common.list_of(common.number(ge=0)), required=True),
    "paper_table": Key(common.boolean),
    "paper_radii": Key(common.list_of(common.number(gt=0))),
    "method": Key(common.choice("cohen", "sequential")),
    "n_max": Key(common.integer(1)),
    "sequential_method": Key(common.choice("staged_cp", "mixture_cs")),
    "final_alpha_share": Key(common.number(gt=0, lt=1)),
    "top_alpha_share": Key(common.number(ge=0, lt=1)),
    "futility": Key(common.number(ge=0, lt=1)),
    "configs": Tables({
        "model": Key(references.model_check, required=True),
        "sigma": Key(common.number(gt=0), required=True),
        "denoiser": Key(_denoiser_check),
        "multistep": Key(common.boolean),
        "num_steps": Key(common.integer(1)),
        "row": Key(common.string),
        "method": Key(common.choice("cohen", "sequential")),
        "n_max": Key(common.integer(1)),
        "grid": Key(common.list_of(common.number(gt=0))),
        "sequential_method": Key(common.choice("staged_cp", "mixture_cs")),
        "final_alpha_share": Key(common.number(gt=0, lt=1)),
        "top_alpha_share": Key(common.number(ge=0, lt=1)),
        "futility": Key(common.number(ge=0, lt=1)),
    }, required=True),
}


def prepare(suite: dict[str, Any], roots: references.Roots) -> dict[str, Any]:
    """Check the suite's references before any work (files present and well-formed; nothing is loaded) and return
    what the manifest records about them."""
    spec = spec_of(suite)
    dataset = references.parse_dataset(spec.dataset)
    if "resolution" in suite and dataset.scheme != "digits":
        raise common.SuiteError(f"resolution applies to dataset 'digits' only, not {dataset.text!r}")
    models = {model: references.parse_model(model).check(roots)
              for model in dict.fromkeys(c.model for c in spec.configs)}
    return {"dataset": dataset.check(roots, spec.split), "models": models}


# ---- the typed spec ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SequentialSpec:
    """A sequential config's settings (``sequential_settings``): n_max, stopping grid, bound and its tuning."""

    n_max: int
    grid: tuple[float, ...]
    method: str
    tuning: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ConfigSpec:
    """One ``[[configs]]`` table, typed: its config id, base classifier (``model``, optional ``denoiser`` with its
    diffusion options), sigma, ``row`` and method (``sequential``: None for fixed-n CERTIFY)."""

    id: str
    model: str
    sigma: float
    denoiser: str | None
    multistep: bool
    num_steps: int | None
    row: str | None
    method: str
    sequential: SequentialSpec | None

    @classmethod
    def from_table(cls, table: Mapping[str, Any], suite: Mapping[str, Any]) -> ConfigSpec:
        method = method_of(table, suite)
        seq = None
        if method == "sequential":
            got = sequential_settings(table, suite)
            seq = SequentialSpec(got["n_max"], tuple(got["grid"]), got["sequential_method"],
                                 tuple(sorted(got["tuning"].items())))
        return cls(id=config_id(dict(table), dict(suite)), model=table["model"], sigma=float(table["sigma"]),
                   denoiser=table.get("denoiser") or None, multistep=bool(table.get("multistep", False)),
                   num_steps=table.get("num_steps"), row=table.get("row") or None, method=method, sequential=seq)

    @property
    def labels(self) -> dict[str, str]:
        """The ``denoiser`` and ``row`` fields of its rows and summary (those that are set)."""
        return {key: value for key, value in (("denoiser", self.denoiser), ("row", self.row)) if value}


@dataclass(frozen=True)
class CertifySuiteSpec:
    """A ``certify`` suite, typed (``from_suite``), every default resolved once."""

    name: str
    description: str
    dataset: str
    split: str
    resolution: int
    limit: int | None
    n0: int
    n: int
    alpha: float
    batch_size: int
    images_per_chunk: int
    radii: tuple[float, ...]
    paper_table: bool
    paper_radii: tuple[float, ...]
    configs: tuple[ConfigSpec, ...]

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> CertifySuiteSpec:
        """The spec of a suite that passed the schema; raises ``SuiteError`` naming the config and the field."""
        radii = tuple(float(r) for r in suite["radii"])
        paper_radii = tuple(float(r) for r in suite.get("paper_radii", PAPER_RADII))
        if suite.get("paper_table"):
            missing = [r for r in (0.0, *paper_radii) if r not in radii]
            if missing:
                raise common.SuiteError(f"paper_radii and 0.0 must be among the suite's radii; missing {missing}")
        configs = []
        for index, table in enumerate(suite["configs"]):
            _check_diffusion_options(table, index)
            try:
                config = ConfigSpec.from_table(table, suite)
            except ValueError as err:
                raise common.SuiteError(f"configs[{index}]: {err}") from None
            if config.sequential is not None:
                specs.check_certifiable({"n": config.sequential.n_max, "alpha": float(suite["alpha"])},
                                        f"configs[{index}].n_max: ")
            configs.append(config)
        return cls(name=str(suite.get("name", "certify")), description=str(suite.get("description", "")),
                   dataset=str(suite.get("dataset", specs.DEFAULT_DATASET)),
                   split=str(suite.get("split", specs.DEFAULT_SPLIT)),
                   resolution=int(suite.get("resolution", specs.DEFAULT_RESOLUTION)), limit=suite.get("limit"),
                   n0=int(suite["n0"]), n=int(suite["n"]), alpha=float(suite["alpha"]),
                   batch_size=int(suite["batch_size"]), images_per_chunk=int(suite.get("images_per_chunk", 10)),
                   radii=radii, paper_table=bool(suite.get("paper_table", False)), paper_radii=paper_radii,
                   configs=tuple(configs))


#: the pixel radii of the paper's tables when the suite names none
PAPER_RADII = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def _check_diffusion_options(config: Mapping[str, Any], index: int) -> None:
    if "multistep" in config or "num_steps" in config:
        if config.get("denoiser") not in zoo.names(kind="diffusion"):
            raise common.SuiteError(f"configs[{index}]: multistep / num_steps apply to a zoo diffusion denoiser "
                                    f"only (one of {', '.join(zoo.names(kind='diffusion'))})")
        if "num_steps" in config and not config.get("multistep"):
            raise common.SuiteError(f"configs[{index}].num_steps needs multistep = true")


def spec_of(suite: Mapping[str, Any] | CertifySuiteSpec) -> CertifySuiteSpec:
    """The ``CertifySuiteSpec`` of a suite (built once per process and suite)."""
    return specs.typed(CertifySuiteSpec, suite)


def check(suite: dict[str, Any]) -> None:
    """Rules across keys, before any work: the spec builds (``CertifySuiteSpec.from_suite``)."""
    spec_of(suite)


def config_id(config: dict[str, Any], suite: dict[str, Any] | None = None) -> str:
    if config.get("denoiser"):
        denoiser = config["denoiser"]
        if config.get("multistep"):  # diffusion: a multistep chain is another base classifier
            denoiser += f"[multistep,{config.get('num_steps', 'all')}]"
        cid = f"{denoiser}+{config['model']}@sigma={float(config['sigma']):g}"
    else:
        cid = f"{config['model']}@sigma={float(config['sigma']):g}"
    if method_of(config, suite) == "cohen":
        return cid  # the ids of fixed-n rows are unchanged
    seq = sequential_settings(config, suite or {"radii": config.get("grid", [])})
    grid = ",".join(f"{r:g}" for r in seq["grid"])
    tuning = "".join(f",{key}={value:g}" for key, value in sorted(seq["tuning"].items()))  # only when set
    return f"{cid}/sequential({seq['sequential_method']},n_max={seq['n_max']},grid={grid}{tuning})"


def pairs(suite: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(model, denoiser, sigma) of every denoised config, for the preflight (``benchmarks.preflight``)."""
    return [(c.model, c.denoiser, c.sigma) for c in spec_of(suite).configs if c.denoiser]


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, config id) of every config, for the uniqueness check before any work."""
    return [(f"configs[{i}]", c.id) for i, c in enumerate(spec_of(suite).configs)]


def load_base(config: ConfigSpec | Mapping[str, Any], ctx: common.RunContext | WorkerEnv
              ) -> tuple[torch.nn.Module, Any]:
    """The base classifier of a config (eval mode) and the loaded classifier (its training sigma is known for zoo
    models only)."""
    if not isinstance(config, ConfigSpec):
        config = ConfigSpec.from_table(config, {"radii": []})
    roots = references.Roots(ctx.data_root, ctx.model_dir)
    model = references.parse_model(config.model).load(roots, ctx.device, verbose=ctx.verbose)
    if not config.denoiser:
        return model.module, model
    from art_ext.defences.denoised_smoothing import DenoisedClassifier

    if config.denoiser in zoo.names(kind="diffusion"):  # Carlini et al.: one model for every sigma
        diffusion = zoo.diffusion_denoiser(config.denoiser, config.sigma, device=ctx.device,
                                           multistep=config.multistep, num_steps=config.num_steps)
        return DenoisedClassifier(diffusion, model.module).eval(), model
    denoiser = zoo.load(config.denoiser, kind="denoiser", device=ctx.device, verbose=ctx.verbose)
    if common.denoiser_sigma(denoiser) != config.sigma:
        log.warning("%s: denoiser trained at sigma=%g, certified at sigma=%g", config.id,
                    common.denoiser_sigma(denoiser), config.sigma)
    return DenoisedClassifier(denoiser.module, model.module).eval(), model


def load_dataset(suite: Mapping[str, Any] | CertifySuiteSpec, limit: int | None,
                 roots: references.Roots | None = None):
    spec = spec_of(suite)
    return references.parse_dataset(spec.dataset).load(roots or references.Roots(), spec.split,
                                                       resolution=spec.resolution, limit=limit)


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    spec = spec_of(suite)
    data = load_dataset(spec, ctx.limit, references.Roots(ctx.data_root, ctx.model_dir))
    chunk = spec.images_per_chunk
    units = []
    for index, config in enumerate(spec.configs):
        for start in range(0, len(data), chunk):
            indices = tuple(range(start, min(start + chunk, len(data))))
            if all(ctx.is_done(config.id, i) for i in indices):
                continue
            # the unit names its config by position in the suite (picklable for any backend)
            units.append(Unit(config.id, indices, common.seed_for(ctx.seed, config.id), {"config": index}))
    ctx.run_units(units, compute, suite, desc=spec.name)


def noise_space_of(config: ConfigSpec | Mapping[str, Any]) -> Any:
    """The noise space a config's denoiser was trained for (``None``: pixel noise). A normalized-noise UNet
    (``RescaledLossDenoiserEntry``) declares ``NormalizedNoise(mean, std)``: its config's ``sigma`` is in normalized
    units and certification must add the noise there; the reported radius stays in pixel units."""
    name = config.denoiser if isinstance(config, ConfigSpec) else config.get("denoiser")
    if not name or name not in zoo.names(kind="denoiser"):
        return None
    _, space = declared_noise(zoo.get_entry(name, kind="denoiser"))
    return None if isinstance(space, PixelNoise) else space


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one chunk of images of one config (``run`` lists the units)."""
    spec = spec_of(suite)
    config, cid, indices = spec.configs[unit.spec["config"]], unit.config, list(unit.indices)
    data = cached(("certify-data", json.dumps(spec.dataset), spec.split, spec.resolution, env.limit),
                  lambda: load_dataset(spec, env.limit, references.Roots(env.data_root, env.model_dir)))
    seq = config.sequential
    base, model = cached(("certify-base", cid, str(env.device)), lambda: load_base(config, env))
    space = noise_space_of(config)
    extra: dict[str, Any] = {**config.labels, **noise_fields(config.sigma, space)}
    keys = image_keys(env.seed, cid, indices)  # the unit's images share nothing but the kernels
    x = data.x[indices].to(env.device)
    t0 = time.perf_counter()
    if seq is None:
        certs = certify(
            base, x, n0=spec.n0, n=spec.n, sigma=config.sigma, alpha=spec.alpha, num_classes=data.num_classes,
            batch_size=spec.batch_size, keys=keys, noise_space=space,
        )
        per_image: list[dict[str, Any]] = [{} for _ in indices]
    else:
        certs = certify_sequential(
            base, x, n0=spec.n0, n_max=seq.n_max, radii=list(seq.grid), sigma=config.sigma, alpha=spec.alpha,
            num_classes=data.num_classes, batch_size=spec.batch_size, keys=keys, method=seq.method,
            noise_space=space, **dict(seq.tuning),
        )
        assert certs.num_samples is not None
        per_image = [{"method": "sequential", "num_samples": int(k), "n_max": seq.n_max,
                      "grid": list(seq.grid), "sequential_method": seq.method}
                     for k in certs.num_samples.tolist()]
    seconds = (time.perf_counter() - t0) / len(indices)
    labels, radii = certs.label.tolist(), certs.radius.tolist()
    p_lower = certs.p_a_lower.tolist()
    rows = [
        {
            "kind": "certify", "config": cid, "model": config.model, "sigma": config.sigma,
            "training_sigma": model.training_sigma, "index": i, "label": int(data.y[i]),
            "prediction": labels[j], "radius": radii[j], "p_a_lower": p_lower[j],
            "correct": labels[j] == int(data.y[i]), "seconds": round(seconds, 4), **extra,
            **per_image[j],
        }
        for j, i in enumerate(indices)
    ]
    return rows


def summarize(suite: Mapping[str, Any] | CertifySuiteSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary record per config, in suite order, computed from rows only."""
    spec = spec_of(suite)
    radii = list(spec.radii)
    out = []
    for config in spec.configs:
        cid = config.id
        mine = sorted((r for r in rows if r["config"] == cid), key=lambda r: r["index"])
        if not mine:
            continue
        pair = (np.array([r["prediction"] for r in mine]), np.array([r["radius"] for r in mine]))
        labels = np.array([r["label"] for r in mine])
        predictions = Counter(r["prediction"] for r in mine if r["prediction"] >= 0)
        top_class, top_count = predictions.most_common(1)[0] if predictions else (None, 0)
        passes = np.array([r.get("num_samples", spec.n0 + spec.n) for r in mine], dtype=np.float64)
        accuracy = certified_accuracy(pair, labels, radii)
        abstain = abstain_rate(pair)
        credited = np.where(pair[0] == labels, pair[1], 0.0)  # ACR's per-image terms: radius if correct, else 0
        out.append({
            "method": config.method, "mean_passes": float(passes.mean()),
            "median_passes": float(np.median(passes)),
            **config.labels, "config": cid, "model": config.model, "sigma": config.sigma,
            "training_sigma": mine[0].get("training_sigma"), "examples": len(mine),
            "certified_accuracy": accuracy,
            "certified_accuracy_se": {r: rep.binomial_se(a, len(mine)) for r, a in accuracy.items()},
            "acr": average_certified_radius(pair, labels), "acr_se": rep.se_of_mean(credited),
            "abstain": abstain, "abstain_se": rep.binomial_se(abstain, len(mine)),
            "top_class_share": top_count / len(mine), "top_class": top_class,
            "seconds_per_example": float(np.mean([r["seconds"] for r in mine])),
        })
    return out


def has_sequential(suite: Mapping[str, Any] | CertifySuiteSpec) -> bool:
    return any(config.sequential is not None for config in spec_of(suite).configs)


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json``, ``summary.md`` and the certified-accuracy plot from the rows (``report.certify``)."""
    from benchmarks.report import certify as certify_report

    spec = spec_of(suite)
    return certify_report.write(spec, summarize(spec, rows), rows, out, manifest)
