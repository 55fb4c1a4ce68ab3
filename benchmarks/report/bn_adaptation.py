"""Markdown and plots of the ``bn_adaptation`` kind, from its rows and certify summary
(``benchmarks.kinds.bn_adaptation.summarize_certify``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report as rep
from benchmarks.kinds.bn_adaptation import BNAdaptationSpec, spec_of, test_images

#: what ± means in the seed-averaged tables (parts 1-2) and in the certification table (part 3)
SEED_CAPTION = rep.uncertainty_caption(rep.SEED_MEAN)
CERT_CAPTION = rep.uncertainty_caption(rep.BINOMIAL + ", in percentage points",
                                       "SE of the mean over the images for ACR")


def table_noise_accuracy(suite: BNAdaptationSpec, rows) -> str:
    part = suite.noise_accuracy
    sigmas = list(part.sigmas)
    table = []
    for name in part.models:
        for adapted in (False, True):
            cells = []
            for s in sigmas:
                vals = [r["accuracy"] for r in rows if r["config"] == f"acc/{name}/sigma={s:g}/bn={int(adapted)}"]
                cells.append(rep.mean_cell(vals, digits=1, percent=True) if vals else "–")
            table.append([f"{name}{' + adaptive BN' if adapted else ''}", *cells])
    return rep.markdown_table(["model", *(f"σ={s:g}" for s in sigmas)], table, caption=SEED_CAPTION)


def table_ablation(suite: BNAdaptationSpec, rows, kind: str, key: str, label: str) -> str:
    part = suite.ablation
    values: tuple[float, ...] | tuple[int, ...] = part.rhos if kind == "rho" else part.adaptation_sizes
    mine = [r for r in rows if r["kind"] == kind]
    cells = [rep.mean_cell([r["accuracy"] for r in mine if r[key] == v], digits=1, percent=True)
             if any(r[key] == v for r in mine) else "–" for v in values]
    return rep.markdown_table([label, *(f"{v:g}" for v in values)], [["accuracy (%)", *cells]], caption=SEED_CAPTION)


def table_certify(suite: BNAdaptationSpec, summary) -> str:
    radii = list(suite.certify.radii)
    table = []
    for s in summary:
        n = s["examples"]
        table.append([s["name"], n, rep.accuracy_cell(s["prediction_accuracy"], n, digits=1, percent=True),
                      *(rep.accuracy_cell(s["certified_accuracy"][r], n, digits=1, percent=True) for r in radii),
                      rep.cell(s["acr"], s["acr_se"]), f"{s['seconds_per_example']:.2f}"])
    return rep.markdown_table(["method", "images", "output acc.", *(f"{r:g}" for r in radii), "ACR", "s/img"], table,
                              caption=CERT_CAPTION)


def table_sigma_histogram(suite: BNAdaptationSpec, summary) -> str:
    sigmas = list(suite.certify.sigmas)
    table = [[s["name"], *(str(s["sigma_histogram"].get(f"{v:g}", 0)) for v in sigmas)] for s in summary if s["auto"]]
    return rep.markdown_table(["method", *(f"σ={s:g}" for s in sigmas)], table)


def accuracy_images(suite: BNAdaptationSpec, manifest: dict[str, Any]) -> int:
    """The number of test images parts 1-2 evaluate: ``--limit`` or the whole test split."""
    return len(test_images(suite).head(manifest.get("limit_option")))


def plot_noise_accuracy(suite: BNAdaptationSpec, rows, path: Path, info: rep.PlotInfo) -> rep.Plot:
    """Part 1 (Table 3 analog): accuracy under noise against sigma, with and without BN adaptation, ± SE over
    seeds."""
    plt = rep.pyplot()
    part = suite.noise_accuracy
    sigmas = list(part.sigmas)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(part.models):
        for adapted in (False, True):
            points = [(s, [r["accuracy"] for r in rows if r["config"] == f"acc/{name}/sigma={s:g}/bn={int(adapted)}"])
                      for s in sigmas]
            points = [(s, v) for s, v in points if v]
            if not points:
                continue
            se = [rep.se_of_mean(v) if len(v) > 1 else 0.0 for _, v in points]
            ax.errorbar([s for s, _ in points], [float(np.mean(v)) for _, v in points], yerr=se,
                        marker=rep.marker(i), ls="-" if adapted else "--", mfc=None if adapted else "none", capsize=2,
                        color=f"C{i}", label=f"{name}{' + adaptive BN' if adapted else ''}")
    ax.set_xlabel("σ of the test noise (pixel units)")
    ax.set_ylabel("top-1 accuracy under noise")
    rep.zero_visible(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return rep.save(fig, path, f"Accuracy under Gaussian noise ± 1 SE over seeds: {info.caption()}")


def plot_sigma_histogram(suite: BNAdaptationSpec, summary, path: Path,
                         info: rep.PlotInfo | None = None) -> rep.Plot | None:
    plt = rep.pyplot()
    autos = [s for s in summary if s["auto"]]
    if not autos:
        return None
    sigmas = list(suite.certify.sigmas)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(autos)
    for k, s in enumerate(autos):
        counts = [s["sigma_histogram"].get(f"{v:g}", 0) for v in sigmas]
        ax.bar(np.arange(len(sigmas)) + k * width, counts, width, label=s["name"])
    ax.set_xticks(np.arange(len(sigmas)) + 0.4 - width / 2, [f"{v:g}" for v in sigmas])
    ax.set_xlabel("σ selected by Auto-Noise")
    ax.set_ylabel("test images")
    ax.legend(fontsize=7)
    return rep.save(fig, path, "σ selected by Auto-Noise" + (f": {info.caption()}" if info else ""))


def write(suite: BNAdaptationSpec | Mapping[str, Any], summary: list[dict[str, Any]], rows: list[dict[str, Any]],
          out: Path, manifest: dict[str, Any]) -> str:
    """Write ``summary.json``, ``summary.md`` and the plots; returns the Markdown."""
    suite = spec_of(suite)
    part, ablation = suite.certify, suite.ablation
    why = rep.plots_unavailable() if rows else None
    plots: list[rep.Plot] = []
    if rows and why is None:
        images = accuracy_images(suite, manifest)
        plots.append(plot_noise_accuracy(suite, rows, out / "noise_accuracy.png", rep.PlotInfo(
            images=images, seed=manifest["seed"], extra=(f"{suite.seeds} seeds, one noise draw per image",
                                                         f"{suite.adaptation_images} adaptation images"))))
        if summary:
            histogram = plot_sigma_histogram(suite, summary, out / "selected_sigmas.png", rep.PlotInfo(
                images=max(s["examples"] for s in summary), seed=manifest["seed"],
                noise_samples=f"N_auto = {part.n_auto:,} noise samples per σ", alpha=part.alpha))
            plots += [histogram] if histogram else []
    text = "\n".join([
        f"# Suite `{suite.name}`: {suite.description}",
        "",
        f"{rep.run_line(manifest)} BN adaptation uses the first {suite.adaptation_images} train images (rho = 1 "
        f"unless stated); accuracies are mean {rep.UNCERTAINTY} of the mean over {suite.seeds} seeds on "
        + (f"the first {manifest['limit_option']} test images (--limit)" if manifest.get("limit_option")
           else "the whole test split") + f", one noise draw per image. {rep.TIMING_NOTE}",
        "",
        "## Top-1 accuracy (%) under Gaussian noise (Table 3 analog)",
        "",
        table_noise_accuracy(suite, rows),
        "",
        f"## Accuracy (%) of {ablation.model} at σ = {ablation.sigma} vs ρ (Table 6 analog)",
        "",
        table_ablation(suite, rows, "rho", "rho", "ρ"),
        "",
        f"## Accuracy (%) of {ablation.model} at σ = {ablation.sigma} vs number of adaptation images "
        "(Table 7 analog)",
        "",
        table_ablation(suite, rows, "adaptation_size", "images", "images"),
        "",
        "## Certified accuracy (%) at L2 radius and ACR (Table 1 analog)",
        "",
        f"CERTIFY with n0 = {part.n0}, N = {part.n}, α = {part.alpha}; Auto-Noise selection with N_auto = "
        f"{part.n_auto} per σ ∈ {list(part.sigmas)}; fixed rows use σ = {part.sigma}. 'output acc.' is the "
        "accuracy of what the method outputs (f(x) for adaptation rows, the smoothed label otherwise). Auto-Noise "
        "radii certify the smoothed classifier at each image's selected σ, not the input-dependent rule.",
        "",
        table_certify(suite, summary) if summary else "(no certification rows yet)",
        "",
        "### σ selected by Auto-Noise (number of test images)",
        "",
        table_sigma_histogram(suite, summary) if summary else "",
        "",
        rep.plots_section(plots, why) if rows else "",
        "",
    ])
    return rep.write_summary(out, summary, text)
