"""Markdown and plot of the ``certify`` kind, from its summary (``benchmarks.kinds.certify.summarize``) and rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks import report as rep
from benchmarks.kinds.certify import CertifySuiteSpec, has_sequential, spec_of

CAPTION = rep.uncertainty_caption(rep.BINOMIAL + " for certified accuracies and the abstain rate",
                                  "SE of the mean over the images for ACR")


def markdown_table(suite: CertifySuiteSpec | Mapping[str, Any], summary: list[dict[str, Any]]) -> str:
    suite = spec_of(suite)
    radii = list(suite.radii)
    passes = has_sequential(suite)  # the default suite's table keeps its columns
    # suites with denoisers compare pipelines of very different cost: noise samples certified per second, base
    # forward (denoiser + classifier) included, from the rows' per-image times (load-dependent on a shared machine)
    throughput = any(c.denoiser for c in suite.configs)
    header = ["model", *(["method"] if passes else []), "train σ", "σ", "images", *(f"r={r:.2f}" for r in radii),
              "ACR", "abstain", "s/img", *(["samples/s"] if throughput else []),
              *(["passes/img mean", "median"] if passes else [])]
    rows, notes = [], []
    for s in summary:
        n = s["examples"]
        flag = ""
        if s["top_class_share"] >= 0.5:
            flag = " †"
            notes.append(
                f"† {s['config']}: the smoothed classifier predicts class {s['top_class']} for "
                f"{s['top_class_share']:.0%} of the images (near-constant under noise), so its certified points are "
                "mostly images of that class: read its certified accuracy and ACR as an artefact, not robustness."
            )
        rows.append([
            f"{s.get('row', s['model'])}{flag}", *([s["method"]] if passes else []), _sigma(s["training_sigma"]),
            f"{s['sigma']:g}", n, *(rep.accuracy_cell(s["certified_accuracy"][r], n) for r in radii),
            rep.cell(s["acr"], s["acr_se"]), rep.accuracy_cell(s["abstain"], n), f"{s['seconds_per_example']:.2f}",
            *([f"{samples_per_second(suite, s):,.0f}"] if throughput else []),
            *([f"{s['mean_passes']:,.0f}", f"{s['median_passes']:,.0f}"] if passes else []),
        ])
    return "\n".join([rep.markdown_table(header, rows, caption=CAPTION)] + ([""] + notes if notes else []))


def samples_per_second(suite: CertifySuiteSpec | Mapping[str, Any], s: dict[str, Any]) -> float:
    """Noise samples (forward passes: selection + estimation) certified per second for one summary record."""
    suite = spec_of(suite)
    passes = s["mean_passes"] if s.get("mean_passes") is not None else suite.n0 + suite.n
    return passes / s["seconds_per_example"] if s["seconds_per_example"] > 0 else float("nan")


def _sigma(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def plot_info(suite: CertifySuiteSpec | Mapping[str, Any], summary_rows: list[dict[str, Any]],
              seed: int) -> rep.PlotInfo:
    """What the certified-accuracy plot states: N, images, alpha, seed."""
    suite = spec_of(suite)
    n: int | str = suite.n
    if has_sequential(suite):
        n_max = sorted({c.sequential.n_max for c in suite.configs if c.sequential is not None})
        n = f"N = {suite.n:,} noise samples (fixed-n rows), n_max = {', '.join(f'{m:,}' for m in n_max)} " \
            "(sequential rows)"
    images = sorted({s["examples"] for s in summary_rows})
    return rep.PlotInfo(images=images[0] if len(images) == 1 else f"{min(images)}-{max(images)} images",
                        seed=seed, noise_samples=n, alpha=suite.alpha, extra=(f"N0 = {suite.n0}",))


def plot_curves(summary_rows: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path,
                info: rep.PlotInfo | None = None) -> rep.Plot:
    """Certified accuracy against L2 radius, one panel per sigma; markers keep a curve at 0 visible."""
    from art_ext.smoothing.metrics import certified_accuracy_curve

    plt = rep.pyplot()
    sigmas = sorted({s["sigma"] for s in summary_rows})
    fig, axes = plt.subplots(1, len(sigmas), figsize=(5 * len(sigmas), 4.0), squeeze=False)
    top = max((r["radius"] for r in rows), default=1.0) * 1.05 or 1.0
    for ax, sigma in zip(axes[0], sigmas, strict=True):
        for i, s in enumerate(s for s in summary_rows if s["sigma"] == sigma):
            mine = [r for r in rows if r["config"] == s["config"]]
            pair = ([r["prediction"] for r in mine], [r["radius"] for r in mine])
            grid, acc = certified_accuracy_curve(pair, [r["label"] for r in mine], max_radius=top, num=400)
            ax.plot(grid, acc, marker=rep.marker(i), markevery=40, ms=4,
                    label=f"{s.get('row', s['model'])} (ACR {s['acr']:.2f})")
        ax.set_title(f"σ = {sigma:g}", fontsize=9)
        ax.set_xlabel("L2 radius (pixel units)")
        ax.set_ylabel("certified accuracy")
        rep.zero_visible(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    caption = "Certified accuracy (CERTIFY, abstain = wrong)" + (f": {info.caption()}" if info else "")
    return rep.save(fig, path, caption)


def _cell(s: dict[str, Any], radius: float) -> str:
    """"(clean) certified ± SE", in percent."""
    return (f"({100 * s['certified_accuracy'][0.0]:.0f}) "
            + rep.cell(s["certified_accuracy"][radius], s["certified_accuracy_se"][radius], digits=0, percent=True))


def paper_tables(suite: CertifySuiteSpec | Mapping[str, Any], summary: list[dict[str, Any]]) -> str:
    """Salman et al. Tables 1-2 layout: per sigma, then the envelope (best sigma per radius) over sigmas.

    Cells are "(clean) certified" in percent; "clean" is the smoothed classifier's certified accuracy at radius 0
    (correct and not abstaining).
    """
    suite = spec_of(suite)
    radii = list(suite.paper_radii)  # with 0.0 among the suite's radii (``CertifySuiteSpec.from_suite``)
    head = "| " + " | ".join(["row", *(f"r={r:g}" for r in radii), "ACR"]) + " |"
    sep = "|" + "---|" * (len(radii) + 2)
    parts = []
    for sigma in sorted({s["sigma"] for s in summary}):
        mine = [s for s in summary if s["sigma"] == sigma]
        lines = [f"### σ = {sigma:g} (cells: (clean smoothed accuracy) certified accuracy ± one binomial SE, %; "
                 f"{mine[0]['examples']} images)", "", head, sep]
        for s in mine:
            cells = " | ".join(_cell(s, r) for r in radii)
            lines.append(f"| {s.get('row', s['model'])} | {cells} | {s['acr']:.3f} |")
        ranking = sorted(mine, key=lambda s: -s["acr"])
        lines += ["", "Ranking by ACR: " + " > ".join(f"{s.get('row', s['model'])} ({s['acr']:.3f})"
                                                     for s in ranking)]
        parts.append("\n".join(lines))
    labels = list(dict.fromkeys(s.get("row", s["model"]) for s in summary))
    lines = ["### Envelope over σ (as the paper's tables: best σ per radius, its clean accuracy in parentheses)", "",
             head.replace("| ACR |", "| best ACR |"), sep]
    for label in labels:
        mine = [s for s in summary if s.get("row", s["model"]) == label]
        best = [max(mine, key=lambda s: (s["certified_accuracy"][r], s["certified_accuracy"][0.0])) for r in radii]
        cells = " | ".join(_cell(b, r) for b, r in zip(best, radii, strict=True))
        lines.append(f"| {label} | {cells} | {max(s['acr'] for s in mine):.3f} |")
    parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write(suite: CertifySuiteSpec | Mapping[str, Any], summary: list[dict[str, Any]], rows: list[dict[str, Any]],
          out: Path, manifest: dict[str, Any]) -> str:
    """Write ``summary.json``, ``summary.md`` and the plot; returns the Markdown."""
    suite = spec_of(suite)
    why = rep.plots_unavailable() if summary else None
    plots = [plot_curves(summary, rows, out / "certified_accuracy.png", plot_info(suite, summary, manifest["seed"]))] \
        if summary and why is None else []
    header = (
        f"# Suite `{suite.name}`: {suite.description}\n\n"
        f"CERTIFY (Cohen et al. 2019) with N0={suite.n0}, N={suite.n}, α={suite.alpha}; "
        f"{suite.dataset} {suite.split} split"
        + (f" at {suite.resolution}x{suite.resolution}" if suite.dataset == "digits" else "")
        + "; radii are L2 in [0,1] pixel units; abstain "
        f"counts as wrong. {rep.TIMING_NOTE} {rep.run_line(manifest)}"
        + (" 'train σ' is known for zoo models only (– otherwise)." if any(s["training_sigma"] is None
                                                                            for s in summary) else "")
        + "\n\n"
    )
    if has_sequential(suite):
        header += (
            "Sequential rows: `certify_sequential` (same n0 and α, stopped per image once its answer for the row's "
            "grid is settled, at most n_max draws; same per-image guarantee). passes/img counts every forward pass "
            "spent on an image, selection included.\n\n"
        )
    body = markdown_table(suite, summary) if summary else "(no rows yet)"
    if summary and suite.paper_table:
        body += "\n\n" + paper_tables(suite, summary)
    plots_text = rep.plots_section(plots, why) if summary else ""
    return rep.write_summary(out, summary, header + body + ("\n\n" + plots_text if plots_text else "") + "\n")
