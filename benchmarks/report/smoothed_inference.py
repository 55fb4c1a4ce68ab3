"""Markdown and plots of the ``smoothed_inference`` kind, from its summary and rows
(``benchmarks.kinds.smoothed_inference``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import report as rep
from benchmarks.kinds.smoothed_inference import (
    CAPTION,
    INPUTS,
    SmoothedInferenceSpec,
    accuracy_grid,
    seed_cell,
    seed_se,
    spec_of,
)


def test_images(rows: list[dict[str, Any]], model: str) -> int:
    """How many test images a model's rows cover (from the rows only)."""
    return len({int(r["index"]) for r in rows if r["model"] == model and r["split"] == "test"})


def plot(suite: SmoothedInferenceSpec, grid: dict[tuple, np.ndarray], selected: dict[str, Any], out: Path,
         rows: list[dict[str, Any]] | None = None, seed: int = 0) -> list[rep.Plot]:
    plt = rep.pyplot()
    ms = list(suite.num_samples)
    sigmas = sorted(suite.sigmas)
    seeds = suite.test_seeds
    plots = []
    for model in suite.models:
        images = test_images(rows, model) if rows is not None else "test"
        info = rep.PlotInfo(images=images if isinstance(images, int) else "test images", seed=seed,
                            noise_samples=f"M ∈ {{{', '.join(map(str, ms))}}} noisy passes",
                            extra=(f"{seeds} test seeds",))
        # Fig. 1: accuracy vs sigma for several M (prediction smoothing), clean and under PGD, test split
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
        for ax, name in zip(axes, INPUTS, strict=True):
            shown = ms[:: max(1, len(ms) // 5)] + ([ms[-1]] if (len(ms) - 1) % max(1, len(ms) // 5) else [])
            for i, m in enumerate(shown):
                j = ms.index(m)
                ys = [grid[(model, "test", name, "prediction", s)][:, j].mean()
                      if (model, "test", name, "prediction", s) in grid else np.nan for s in sigmas]
                ax.plot(sigmas, ys, marker=rep.marker(i), label=f"M = {m}")
            ax.set_title(f"{name} (prediction smoothing, test)", fontsize=9)
            ax.set_xlabel("σ (pixel units)")
            rep.zero_visible(ax)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy (mean over seeds)")
        axes[0].legend(fontsize=8)
        plots.append(rep.save(fig, out / f"{model}_accuracy_vs_sigma.png",
                              f"{model}: accuracy vs σ: {info.caption()}", dpi=110))
        # Fig. 2: accuracy vs M per mode at the val-selected sigma, test split, mean ± SE over seeds
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
        for ax, name in zip(axes, INPUTS, strict=True):
            for i, mode in enumerate(suite.modes):
                choice = selected.get(f"{model}/{mode}")
                if not choice:
                    continue
                acc = grid.get((model, "test", name, mode, choice["sigma"]))
                if acc is None:
                    continue
                ax.errorbar(ms, acc.mean(axis=0), yerr=seed_se(acc), marker=rep.marker(i), capsize=2,
                            label=f"{mode} (σ = {choice['sigma']:g})")
            ax.set_xscale("log", base=2)
            ax.set_title(f"{name} (test; σ chosen on val)", fontsize=9)
            ax.set_xlabel("M (noisy passes)")
            rep.zero_visible(ax)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy ± 1 SE over seeds")
        axes[0].legend(fontsize=8)
        plots.append(rep.save(fig, out / f"{model}_accuracy_vs_samples.png",
                              f"{model}: accuracy vs M at the val-selected σ, ± 1 SE over seeds: {info.caption()}",
                              dpi=110))
    return plots


def write(suite: SmoothedInferenceSpec | Mapping[str, Any], summary: dict[str, Any], rows: list[dict[str, Any]],
          out: Path, manifest: dict[str, Any]) -> str:
    """Write ``summary.json``, ``summary.md`` and the plots; returns the Markdown."""
    suite = spec_of(suite)
    grid = accuracy_grid(suite, rows)
    why = rep.plots_unavailable() if rows else None
    plots = plot(suite, grid, summary["selected_on_val"], out, rows, manifest["seed"]) if rows and why is None \
        else []
    a = suite.attack
    lines = [
        f"# Suite `{suite.name}`: {suite.description}\n",
        "Smoothed inference (Nemcovsky et al., arXiv:1911.07198v2): accuracy (%) on the digits test split, "
        f"mean {rep.UNCERTAINTY} of the mean over seeds. Attacks on the noisy base at the smoothing σ: "
        f"PGD-{a.norm} ε={a.eps}, "
        f"step {a.eps_step}, {a.max_iter} steps, {a.num_random_init} random start (1 noisy pass "
        f"per step) and EPGD (same, {a.epgd_samples} noisy passes averaged per step). Ties abstain and count "
        "as wrong. **σ and M were chosen on the val split (best mean accuracy under PGD), never on test.** "
        f"{rep.run_line(manifest)}\n",
    ]
    table = [[t["model"], t["method"], f"{t['sigma']:g}", t["M"], t["clean"], t["pgd"], t["epgd"], t["seeds"]]
             for t in summary["table"]]
    if table:
        lines.append(rep.markdown_table(["model", "method", "σ", "M", "clean", "PGD", "EPGD", "seeds"], table,
                                        caption=CAPTION))
    else:
        lines.append("(no rows yet)")
    ms = summary["M"]
    for model in suite.models:
        for mode in suite.modes:
            choice = summary["selected_on_val"].get(f"{model}/{mode}")
            if choice is None:
                continue
            lines.append(f"\n**{model}, {mode}: test accuracy (%) vs M at the val-selected σ = {choice['sigma']:g}**\n")
            per_m = [[name, *(seed_cell(acc, j) for j in range(len(ms)))] for name in INPUTS
                     if (acc := grid.get((model, "test", name, mode, choice["sigma"]))) is not None]
            lines.append(rep.markdown_table(["input", *(f"M={m}" for m in ms)], per_m, caption=CAPTION))
    if plots or why:
        lines.append("\n" + rep.plots_section(plots, why))
    return rep.write_summary(out, summary, "\n".join(lines) + "\n")
