"""Markdown of the ``normalized_noise`` kind (Tables I, II and V analogs), from its summary dict
(``benchmarks.kinds.normalized_noise.summarize``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from art_ext.smoothing.noise import NoiseSpace, NormalizedNoise
from benchmarks.kinds.normalized_noise import NormalizedNoiseSpec, spec_of
from benchmarks.report import proportion_cell, write_summary


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with its noise spaces written as their repr (JSON has no NoiseSpace)."""
    return {t: {row: {k: (v if not isinstance(v, NoiseSpace) else repr(v)) for k, v in d.items()}
                if isinstance(d, dict) else d for row, d in summary[t].items()} for t in summary}


def write(suite: NormalizedNoiseSpec | Mapping[str, Any], s: dict[str, Any], out: Path,
          manifest: dict[str, Any]) -> str:
    """Write ``summary.json`` and ``summary.md``; returns the Markdown."""
    return write_summary(out, _plain(s), markdown(suite, s, manifest))


def markdown(suite: NormalizedNoiseSpec | Mapping[str, Any], s: dict[str, Any], manifest: dict[str, Any]) -> str:
    suite = spec_of(suite)
    n_img = max((len(v) for d in s["I"].values() for v in d.values()), default=0)
    lines = [f"# Suite `{suite.name}`: {suite.description}", "",
             f"Digits {suite.split} split, seed {manifest['seed']}, git {manifest.get('git_sha')}. "
             "Every cell: mean ± one standard error (binomial SE sqrt(p(1-p)/N) over N images; Table V: SE of the "
             "per-image mean over the scoring draws). Pixel units on [0, 1] unless a column says R_n.", ""]
    if s["I"]:
        models = suite.transfer_models
        lines += [f"## Table I analog: accuracy (%) of classifier(denoiser(x + noise)), one noise draw per image, "
                  f"N = {n_img} images", "", "| classifier | " + " | ".join(s["I"]) + " |",
                  "|---|" + "---|" * len(s["I"])]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(proportion_cell(d[m]) for d in s["I"].values()) + " |")
        lines.append("")
    if s["II"]:
        radii = [r for r in suite.radii if r > 0]
        any_row = next(iter(s["II"].values()))
        n2 = len(any_row["certified"][0.0])
        lines += [f"## Table II analog: certified accuracy (%) at pixel L2 radius r, (clean smoothed accuracy) "
                  f"first; CERTIFY N0={suite.n0}, N={suite.n}, α={suite.alpha}, N_img = {n2}", "",
                  "| row | σ (space) | pixel σ | clean | " + " | ".join(f"r={r:g}" for r in radii) + " |",
                  "|---|---|---|---|" + "---|" * len(radii)]
        for row, d in s["II"].items():
            space = "normalized" if isinstance(d["space"], NormalizedNoise) else "pixel"
            lines.append(f"| {row} | {d['sigma']:g} ({space}) | {d['pixel_sigma']:.3f} | "
                         f"({proportion_cell(d['certified'][0.0])}) | " +
                         " | ".join(proportion_cell(d["certified"][r]) for r in radii) + " |")
        stds = [min(d["space"].std) for d in s["II"].values() if isinstance(d["space"], NormalizedNoise)]
        if stds:
            smallest = stds[0]
            lines += ["", f"The normalized radius the paper would print for each column (R_n = r / min(std), "
                      f"min(std) = {smallest:g}): " + ", ".join(f"r={r:g} ↔ R_n={r / smallest:.2f}" for r in radii)
                      + ".", ""]
    if s["V"]:
        lines += ["## Table V analog: accuracy (%) under 20-step BPDA PGD-L2, eps = 0.5 (pixel), on the deployed "
                  f"noise + denoiser + classifier; each example scored over {suite.attack_draws} draws",
                  "", "| row | σ (space) | BPDA, paper preset (eps_step 0.01, reach 0.2) | BPDA, sane preset (eps_step "
                  "0.0625) | exact gradient, sane preset (not in the paper) |", "|---|---|---|---|---|"]
        for row, d in s["V"].items():
            space = "normalized" if isinstance(d["space"], NormalizedNoise) else "pixel"
            lines.append(f"| {row} | {d['sigma']:g} ({space}) | {proportion_cell(d['paper'])} | "
                         f"{proportion_cell(d['sane'])} | "
                         f"{proportion_cell(d['exact'])} |")
    return "\n".join(lines) + "\n"
