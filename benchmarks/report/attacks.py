"""Markdown and plot of the ``attacks`` kind, from its summary (``benchmarks.kinds.attacks.summarize``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report as rep
from benchmarks.specs import AttacksSpec


def markdown_table(summary: list[dict[str, Any]], grid: bool = False) -> str:
    header = ["target", "attack", *(["eps"] if grid else []), "images", "k draws", "clean acc", "robust acc (mean)",
              "robust acc (worst of k)", "mean L2", "queries", "s/img"]
    rows = []
    for s in summary:
        n = s["examples"]
        queries = f"{s['mean_queries']:.0f}" if s["mean_queries"] is not None else "–"
        rows.append([s["target"], s["attack"], *([f"{s['eps']:g}"] if grid else []), n, s["draws"],
                     rep.accuracy_cell(s["clean"], n), rep.accuracy_cell(s["robust_mean"], n),
                     rep.accuracy_cell(s["robust_worst"], n), f"{s['mean_l2']:.3f}", queries,
                     f"{s['seconds_per_example']:.3f}"])
    caption = rep.uncertainty_caption(
        rep.BINOMIAL + "; for randomized targets p is the mean over images of the per-image rate over k draws, "
        "for which the binomial SE is an upper bound")
    return rep.markdown_table(header, rows, caption=caption)


def plot_robust_accuracy(spec: AttacksSpec, summary: list[dict[str, Any]], path: Path, seed: int
                         ) -> rep.Plot:
    """Robust accuracy per attack, mean and worst of k draws, ± one SE: against eps when the suite has an eps
    grid, else one point per attack; one panel per target."""
    plt = rep.pyplot()
    targets = list(dict.fromkeys(s["target"] for s in summary))
    cols = min(2, len(targets))
    rows_ = (len(targets) + cols - 1) // cols
    fig, axes = plt.subplots(rows_, cols, figsize=(6.5 * cols, 4.2 * rows_), squeeze=False)
    by_name = {t.name: t for t in spec.targets}
    # strict=False: the grid has rows_ * cols panels, one more than the targets when their count is odd
    for ax, name in zip(axes.flat, targets, strict=False):
        mine = [s for s in summary if s["target"] == name]
        attacks = list(dict.fromkeys(s["attack"] for s in mine))
        over_eps = spec.grid and any(sum(s["attack"] == a for s in mine) > 1 for a in attacks)
        for i, label in enumerate(attacks):
            points = sorted((s for s in mine if s["attack"] == label), key=lambda s: s["eps"])
            if over_eps:
                if label == "none":  # eps-independent: the clean accuracy as a line
                    ax.axhline(points[0]["robust_mean"], color="grey", ls=":", label="none (clean)")
                    continue
                xs = [s["eps"] for s in points]
                ax.errorbar(xs, [s["robust_mean"] for s in points], yerr=[s["robust_mean_se"] for s in points],
                            marker=rep.marker(i), capsize=2, label=f"{label} mean")
                if points[0]["draws"] > 1:
                    ax.errorbar(xs, [s["robust_worst"] for s in points], yerr=[s["robust_worst_se"] for s in points],
                                marker=rep.marker(i), ls="--", mfc="none", capsize=2, label=f"{label} worst of k")
            else:
                s = points[0]
                ax.errorbar([i - 0.12], [s["robust_mean"]], yerr=[s["robust_mean_se"]], marker="o", color="C0",
                            capsize=2, label="mean of k draws" if i == 0 else None)
                ax.errorbar([i + 0.12], [s["robust_worst"]], yerr=[s["robust_worst_se"]], marker="v", color="C3",
                            capsize=2, label="worst of k draws" if i == 0 else None)
        if over_eps:
            ax.set_xlabel(f"eps ({spec.norm}, pixel units)")
        else:
            ax.set_xticks(range(len(attacks)), [a.replace("(", "\n(") for a in attacks], fontsize=7, rotation=30,
                          ha="right")
            ax.set_xlim(-0.6, len(attacks) - 0.4)
        target = by_name.get(name)
        randomized = target is not None and target.deployment in ("smoothed", "denoised")
        samples = target.smoothing_samples if target is not None else None
        ax.set_title(name + (f"; M = {samples} noise samples" if randomized else ""), fontsize=8)
        ax.set_ylabel("robust accuracy")
        rep.zero_visible(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    eps_text = f"eps ∈ {list(spec.eps)}" if spec.grid else f"eps = {spec.eps[0]:g}"
    info = rep.PlotInfo(
        images=max(s["examples"] for s in summary), seed=seed,
        extra=(f"{spec.norm} {eps_text}", f"k = {spec.score_draws} draws (randomized targets)"))
    return rep.save(fig, path, f"Robust accuracy per attack ± 1 SE: {info.caption()}")


def write(spec: AttacksSpec, summary: list[dict[str, Any]], out: Path, manifest: dict[str, Any]) -> str:
    """Write ``summary.json``, ``summary.md`` and the plot; returns the Markdown."""
    grid = spec.grid
    why = rep.plots_unavailable()
    plots = [plot_robust_accuracy(spec, summary, out / "robust_accuracy.png", manifest["seed"])] \
        if summary and why is None else []
    eps_text = f"eps ∈ {list(spec.eps)}" if grid else f"eps={spec.eps[0]}"
    header = (
        f"# Suite `{spec.name}`: {spec.description}\n\n"
        f"Threat model {spec.norm} {eps_text} in [0,1] pixel units on {spec.dataset} "
        f"{spec.split} {spec.resolution}x{spec.resolution}. Randomized "
        f"targets are scored after the attack over k={spec.score_draws} independent draws of the deployed "
        f"model: 'mean' is the expected accuracy of one deployment, 'worst of k' counts an image robust only if all k "
        f"draws are correct. Clean accuracy is scored once per target on the images (its own k draws) and is the same "
        f"for every attack of the target; the 'none' attack is that clean evaluation (robust = clean). "
        f"{rep.TIMING_NOTE} {rep.run_line(manifest)}\n\n"
    )
    body = markdown_table(summary, grid) if summary else "(no rows yet)"
    plots_text = rep.plots_section(plots, why if summary else None) if (plots or why) else ""
    return rep.write_summary(out, summary, header + body + ("\n\n" + plots_text if plots_text else "") + "\n")
