"""Suite kind ``normalized_noise``: Kumar & Narayan's normalized-noise UNet against Cohen / Salman at equal pixel
radius (analogs of their Tables I, II and V on the embedded digits).

Suite file keys (``SCHEMA``; any other key is an error): ``dataset`` ("digits"), ``split``, ``resolution``, ``limit``
(images per part), ``images_per_chunk`` (the unit of resume; an image's noise depends on the run seed, its config and
its dataset index only, ``benchmarks.image_keys``), ``n0``, ``n``, ``alpha``,
``batch_size``, ``radii`` (pixel radii of Table II, 0 included for the clean column), ``transfer_models`` (zoo
classifiers of Table I), ``attack_draws`` (k noise draws scoring each Table V example) and ``[[configs]]`` tables:
``table`` ("I", "II" or "V"), ``row`` (its name), ``denoiser`` (a zoo denoiser: a DnCNN, pixel noise at its sigma,
or a normalized-noise UNet, noise in its own ``noise_space``), ``model`` (the zoo classifier, II and V) and ``sigma``
(II without a denoiser: Cohen's noise-trained classifier in pixel noise).

* Table I: accuracy of ``classifier(denoiser(x + noise))`` under one noise draw per image (the paper's "standard
  accuracy") for every ``transfer_models`` classifier.
* Table II: CERTIFY (Cohen et al.) with the noise in the denoiser's noise space; certified accuracy at pixel radii
  (``radius``), the clean smoothed accuracy in parentheses, and for normalized-noise rows the radius R_n = r / min(std)
  that the paper would print for the same column.
* Table V: 20-step PGD-L2 with BPDA (identity backward through noise + denoiser) on the deployed randomized pipeline,
  eps 0.5, with the paper's literal preset (eps_step 0.01: it cannot leave the 0.2-ball) and the sane one (eps_step
  2.5 eps / 20), plus (not in the paper) the sane preset with exact gradients through noise + denoiser (one
  noise draw per step); each final example is scored over ``attack_draws`` noise draws (mean accuracy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from art_ext import zoo
from art_ext.attacks import bpda_pgd, pgd, sane_config, table_v_config
from art_ext.attacks.epgd import noisy_cross_entropy
from art_ext.data import digits
from art_ext.defences.denoised_smoothing import DenoisedClassifier
from art_ext.deployment import declared_noise
from art_ext.smoothing import certify
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace, PixelNoise
from benchmarks import common, specs
from benchmarks.backends import Unit, WorkerEnv, cached
from benchmarks.common import Key, Tables
from benchmarks.image_keys import image_keys, keyed_noise, noise_fields, score_keyed

log = logging.getLogger("benchmarks")

TABLES = ("I", "II", "V")
PRESETS = ("paper", "sane", "exact")

SCHEMA = {
    "dataset": Key(common.choice("digits")),
    "split": Key(common.choice("train", "val", "test")),
    "resolution": Key(common.integer(8)),
    "limit": Key(common.integer(1)),
    "images_per_chunk": Key(common.integer(1)),
    "n0": Key(common.integer(1), required=True),
    "n": Key(common.integer(1), required=True),
    "alpha": Key(common.number(gt=0, lt=1), required=True),
    "batch_size": Key(common.integer(1), required=True),
    "radii": Key(common.list_of(common.number(ge=0)), required=True),
    "transfer_models": Key(common.list_of(common.zoo_name("classifier")), required=True),
    "attack_draws": Key(common.integer(1)),
    "configs": Tables({
        "table": Key(common.choice(*TABLES), required=True),
        "row": Key(common.string, required=True),
        "denoiser": Key(common.zoo_name("denoiser")),
        "model": Key(common.zoo_name("classifier")),
        "sigma": Key(common.number(gt=0)),
    }, required=True),
}


def check(suite: dict[str, Any]) -> None:
    """Cross-key checks, before any work."""
    if 0.0 not in [float(r) for r in suite["radii"]]:
        raise common.SuiteError("radii must include 0.0 (the clean column of Table II)")
    for i, config in enumerate(suite["configs"]):
        where = f"configs[{i}] ({config['row']!r})"
        table = config["table"]
        if table == "I" and ("model" in config or "sigma" in config or "denoiser" not in config):
            raise common.SuiteError(f"{where}: a Table I config names a denoiser only (the models are transfer_models)")
        if table in ("II", "V") and "model" not in config:
            raise common.SuiteError(f"{where}: a Table {table} config needs model")
        if table == "V" and "denoiser" not in config:
            raise common.SuiteError(f"{where}: a Table V config needs a denoiser")
        if ("denoiser" in config) == ("sigma" in config):
            raise common.SuiteError(f"{where}: give either denoiser (its sigma is the one it was trained for) or sigma "
                             "(no denoiser: a noise-trained classifier), not both or neither")
    spec_of(suite)


@dataclass(frozen=True)
class ConfigSpec:
    """One ``[[configs]]`` table, typed: its config id, table, row, denoiser, classifier and (no denoiser) sigma."""

    id: str
    table: str
    row: str
    denoiser: str | None
    model: str | None
    sigma: float | None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ConfigSpec:
        return cls(id=config_id(table), table=table["table"], row=table["row"], denoiser=table.get("denoiser"),
                   model=table.get("model"), sigma=float(table["sigma"]) if "sigma" in table else None)

    def models(self, transfer_models: tuple[str, ...]) -> tuple[str, ...]:
        """The classifiers of its rows: every transfer model for Table I, its own model otherwise."""
        return transfer_models if self.table == "I" else (str(self.model),)


@dataclass(frozen=True)
class NormalizedNoiseSpec:
    """A ``normalized_noise`` suite, typed (``from_suite``), every default resolved once."""

    name: str
    description: str
    split: str
    resolution: int
    limit: int | None
    images_per_chunk: int
    n0: int
    n: int
    alpha: float
    batch_size: int
    radii: tuple[float, ...]
    transfer_models: tuple[str, ...]
    attack_draws: int
    configs: tuple[ConfigSpec, ...]

    @classmethod
    def from_suite(cls, suite: Mapping[str, Any]) -> NormalizedNoiseSpec:
        """The spec of a suite that passed the schema and ``check``."""
        return cls(
            name=str(suite.get("name", "normalized_noise")), description=str(suite.get("description", "")),
            split=str(suite.get("split", specs.DEFAULT_SPLIT)),
            resolution=int(suite.get("resolution", specs.DEFAULT_RESOLUTION)), limit=suite.get("limit"),
            images_per_chunk=int(suite.get("images_per_chunk", 25)), n0=int(suite["n0"]), n=int(suite["n"]),
            alpha=float(suite["alpha"]), batch_size=int(suite["batch_size"]),
            radii=tuple(float(r) for r in suite["radii"]), transfer_models=tuple(suite["transfer_models"]),
            attack_draws=int(suite.get("attack_draws", 10)),
            configs=tuple(ConfigSpec.from_table(c) for c in suite["configs"]))


def spec_of(suite: Mapping[str, Any] | NormalizedNoiseSpec) -> NormalizedNoiseSpec:
    """The ``NormalizedNoiseSpec`` of a suite (built once per process and suite)."""
    return specs.typed(NormalizedNoiseSpec, suite)


def config_id(config: Mapping[str, Any]) -> str:
    return f"{config['table']}/{config['row']}"


def pairs(suite: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(model, denoiser, None) of every classifier run behind a denoiser, for the preflight."""
    spec = spec_of(suite)
    return [(m, c.denoiser, None) for c in spec.configs if c.denoiser for m in c.models(spec.transfer_models)]


def config_ids(suite: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, config id) of every config, for the uniqueness check before any work."""
    return [(f"configs[{i}]", c.id) for i, c in enumerate(spec_of(suite).configs)]


def _config(config: ConfigSpec | Mapping[str, Any]) -> ConfigSpec:
    return config if isinstance(config, ConfigSpec) else ConfigSpec.from_table(config)


def noise_of(config: ConfigSpec | Mapping[str, Any]) -> tuple[float, NoiseSpace]:
    """(sigma, noise space) of a config: a normalized-noise UNet's own space, pixel noise otherwise."""
    config = _config(config)
    if config.denoiser is None:
        return float(config.sigma or 0.0), PixelNoise()  # check: sigma is set when no denoiser is
    return declared_noise(zoo.get_entry(config.denoiser, kind="denoiser"))


def pipeline(config: ConfigSpec | Mapping[str, Any], model: nn.Module, device: torch.device) -> nn.Module:
    config = _config(config)
    if config.denoiser is None:
        return model
    den = zoo.load(config.denoiser, kind="denoiser", device=device).module
    return DenoisedClassifier(den, model).eval()


def _data(spec: NormalizedNoiseSpec):
    return digits.load_digits(spec.split, resolution=spec.resolution)


def run(suite: dict[str, Any], ctx: common.RunContext) -> None:
    """List the unfinished units (one per config, model and chunk of images) and run them on the backend."""
    spec = spec_of(suite)
    data = _data(spec)
    count = min(len(data), ctx.limit or (spec.limit if spec.limit is not None else len(data)))
    chunk = spec.images_per_chunk
    units = []
    for index, config in enumerate(spec.configs):
        for name in config.models(spec.transfer_models):
            cid = config.id + (f"/{name}" if config.table == "I" else "")
            for start in range(0, count, chunk):
                idx = tuple(range(start, min(start + chunk, count)))
                if all(ctx.is_done(cid, i) for i in idx):
                    continue
                # the unit names its config by position in the suite (picklable for any backend)
                units.append(Unit(cid, idx, common.seed_for(ctx.seed, cid, start), {"config": index, "model": name}))
    ctx.run_units(units, compute, suite, desc=spec.name)


def compute(suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
    """The rows of one chunk of images for one (config, model) (``run`` lists the units)."""
    spec = spec_of(suite)
    config, name, idx = spec.configs[unit.spec["config"]], unit.spec["model"], list(unit.indices)
    sigma, space = noise_of(config)
    data = cached(("normalized-noise-data", spec.split, spec.resolution), lambda: _data(spec))
    base = cached(("normalized-noise-base", unit.config, str(env.device)),
                  lambda: pipeline(config, zoo.load(name, kind="classifier", device=env.device).module, env.device))
    x, y = data.x[idx].to(env.device), data.y[idx].to(env.device)
    rows = _unit(config.table, spec, base, x, y, sigma, space, image_keys(env.seed, unit.config, idx))
    return [{"config": unit.config, "index": i, "row": config.row, "table": config.table, "model": name,
             "sigma": sigma, **noise_fields(sigma, space), **r}
            for i, r in zip(idx, rows, strict=True)]


def _unit(table: str, spec: NormalizedNoiseSpec, base: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float,
          space: NoiseSpace, keys: NoiseKeys) -> list[dict[str, Any]]:
    if table == "I":
        with torch.no_grad():
            correct = (base(keyed_noise(x, sigma, keys, space)).argmax(1) == y).tolist()
        return [{"correct": bool(c)} for c in correct]
    if table == "II":
        certs = certify(base, x, n0=spec.n0, n=spec.n, sigma=sigma, alpha=spec.alpha, num_classes=10,
                        batch_size=spec.batch_size, keys=keys, noise_space=space)
        assert certs.radius_noise_space is not None
        return [{"prediction": int(p), "label": int(t), "radius": float(r), "radius_noise_space": float(rn)}
                for p, t, r, rn in zip(certs.label.tolist(), y.tolist(), certs.radius.tolist(),
                                       certs.radius_noise_space.tolist(), strict=True)]
    assert isinstance(base, DenoisedClassifier)
    out: list[dict[str, Any]] = [{} for _ in range(len(y))]
    for preset in PRESETS:
        x_adv = table_v_attack(base, x, y, preset, sigma, space, keys.derive(f"attack/{preset}"))
        score = score_keyed(lambda z, k: base(keyed_noise(z, sigma, k, space)), x_adv.detach(), y,
                            keys.derive(f"score/{preset}"), spec.attack_draws)
        for j, acc in enumerate(score.correct.float().mean(1).tolist()):
            out[j][f"acc_{preset}"] = acc
    return out


def table_v_attack(base: DenoisedClassifier, x: torch.Tensor, y: torch.Tensor, preset: str, sigma: float,
                   space: NoiseSpace, keys: NoiseKeys) -> torch.Tensor:
    """Table V's PGD-L2 on the deployed pipeline (noise + denoiser + classifier) with ``preset``'s config: BPDA
    through noise + denoiser ("paper", "sane") or exact gradients ("exact"). The deployed noise of step t is draw t
    of each image's key (``noisy_cross_entropy`` adds it in front of the denoiser), so x_adv[i] is a function of
    ``keys[i]``, not of the other images; BPDA's identity backward through noise + denoiser is the exact identity
    through the noise composed with BPDA through the denoiser."""
    cfg = table_v_config() if preset == "paper" else sane_config(0.5, 20, "l2")
    noisy = noisy_cross_entropy(sigma, keys, 1, space)
    if preset == "exact":  # not in the paper: the sane preset with exact gradients through noise + UNet
        return pgd(base, x, y, cfg, loss_fn=noisy, keys=keys)
    return bpda_pgd(base.classifier, x, y, cfg, defence=base.denoiser, loss_fn=noisy, keys=keys)


# ---- summary (rows only) -----------------------------------------------------------------------------------------
def summarize(suite: Mapping[str, Any] | NormalizedNoiseSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    spec = spec_of(suite)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    radii = list(spec.radii)
    out: dict[str, Any] = {"I": {}, "II": {}, "V": {}}
    for config in spec.configs:
        cid = config.id
        sigma, space = noise_of(config)
        if config.table == "I":
            out["I"][config.row] = {m: [float(r["correct"]) for r in by.get(f"{cid}/{m}", [])]
                                    for m in spec.transfer_models}
        elif config.table == "II":
            mine = by.get(cid, [])
            cert = {r: [float(x["prediction"] == x["label"] and x["radius"] >= r and (r == 0 or x["radius"] > 0))
                        for x in mine] for r in radii}
            out["II"][config.row] = {"certified": cert, "sigma": sigma, "space": space,
                                     "pixel_sigma": space.pixel_sigma(sigma)}
        else:
            mine = by.get(cid, [])
            out["V"][config.row] = {p: [x[f"acc_{p}"] for x in mine] for p in PRESETS} | {"sigma": sigma,
                                                                                            "space": space}
    return out


def report(suite: dict[str, Any], rows: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """``summary.json`` and ``summary.md`` from the rows (``benchmarks.report.normalized_noise``)."""
    from benchmarks.report import normalized_noise as nn_report

    spec = spec_of(suite)
    return nn_report.write(spec, summarize(spec, rows), out, manifest)
