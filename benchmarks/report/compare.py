"""Markdown and plot of the ``compare`` kind, from its summary dict (``benchmarks.kinds.compare.summarize``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.kinds.compare.spec import CompareSpec
from benchmarks.report import accuracy_cell, plots_unavailable, pyplot, write_summary


def _cell_or_dash(v: float | None, n: int) -> str:
    return "–" if v is None else accuracy_cell(v, n)


def markdown(spec: CompareSpec, summary: dict[str, Any], manifest: dict[str, Any]) -> str:
    lines = [f"# Suite `{spec.name}`: {spec.description}", "",
             f"Dataset {spec.dataset} {spec.split}; seed {manifest['seed']}, git "
             f"{manifest.get('git_sha')}, torch {manifest['versions'].get('torch')}, device {manifest['device']}. "
             f"Randomized defences are scored over k = {spec.score_draws} draws ('mean' = expected "
             f"accuracy of one deployment, 'worst of k' = correct under all k draws); gradient attacks differentiate "
             f"a fixed-noise soft-smoothing surrogate of them. Every value is ± one standard error, binomial "
             f"sqrt(p(1-p)/N) over the N images. 'worst over attacks' counts an image robust only under clean and "
             f"every attack (per example). s/img is attack time only: model loading, training and BN adaptation "
             f"are excluded." + (f" 'autoattack' here is the custom subset {list(spec.autoattack_attacks)}, not "
                                  f"the standard version." if spec.autoattack_attacks else ""), ""]
    # rigor
    lines += ["## Evaluation-rigor checks (before attacks)", "",
              "| model | defence | randomized outputs | zero grad | NaN grad | eps monotone | gradient-free gap | "
              "flags |",
              "|" + "---|" * 8]
    for p in summary["pairs"]:
        r = p["rigor"]
        if not r:
            continue
        mono = "; ".join(f"{m['curve']}: {'⚠ rises' if m['flagged'] else 'ok'}" for m in r["monotonicity"]) or "–"
        gap = r["gradient_free"]
        gap_s = "–" if gap is None else f"{'⚠ ' if gap['flagged'] else ''}{gap['count']} img (eps={gap['eps']:g})"
        lines.append(f"| {p['model']} | {p['defence']} | {r['randomized_fraction']:.0%} | "
                     f"{r['grad_zero_fraction']:.0%} | {r['grad_nonfinite_fraction']:.0%} | {mono} | {gap_s} | "
                     f"{'⚠ ' + len(r['flags']).__str__() if r['flags'] else 'none'} |")
    flagged = [(p, f) for p in summary["pairs"] for f in (p["rigor"] or {}).get("flags", [])]
    if flagged:
        lines += [""] + [f"- ⚠ {p['model']} / {p['defence']}: {f}" for p, f in flagged]
    # main table
    lines += ["", "## Clean and robust accuracy", "",
              "| model | defence | norm | eps | attack | images | k | robust acc (mean) | robust acc (worst of k) | "
              "s/img | queries |", "|" + "---|" * 11]
    for p in summary["pairs"]:
        n = p["examples"]
        lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | – | clean | {n} | {p['draws']} | "
                     f"{accuracy_cell(p['clean_mean'], n)} | {accuracy_cell(p['clean_worst'], n)} | – | – |")
        for eps in p["eps"]:
            for a in p["attacks"]:
                if a["eps"] != eps or a["attack"] == "none":
                    continue
                s = "–" if a["seconds_per_example"] is None else f"{a['seconds_per_example']:.3f}"
                q = "–" if a["mean_queries"] is None else f"{a['mean_queries']:.0f}"
                lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | {eps:g} | {a['attack']} | "
                             f"{a['examples']} | {p['draws']} | {accuracy_cell(a['robust_mean'], a['examples'])} | "
                             f"{accuracy_cell(a['robust_worst'], a['examples'])} | {s} | {q} |")
            w = next((w for w in p["worst_case"] if w["eps"] == eps), None)
            if w is not None:
                lines.append(f"| {p['model']} | {p['defence']} | {p['norm']} | {eps:g} | **worst over attacks** | "
                             f"{w['examples']} | {p['draws']} | {accuracy_cell(w['robust_mean'], w['examples'])} | "
                             f"{accuracy_cell(w['robust_worst'], w['examples'])} | – | – |")
    # leaderboard comparison
    board = summary.get("leaderboard", [])
    if board:
        from art_ext.models.robustbench import leaderboard

        snap = leaderboard()
        lines += ["", "## Leaderboard layout: ours beside RobustBench's", "",
                  f"Our numbers on the N-image subset (± one SE); the leaderboard's on the full 10,000-image test set "
                  f"(snapshot {snap.date}, {snap.source}; per-entry commit in summary.json). 'adaptive' = worst over "
                  f"our attacks per example. A difference larger than our SE is flagged.", "",
                  "| model | eps | images | our clean | our AutoAttack | our adaptive | RobustBench clean | "
                  "RobustBench AutoAttack | flags |", "|" + "---|" * 9]
        for b in board:
            lb = b["leaderboard"]
            lb_clean = "–" if lb is None else f"{lb['clean']:.4f}"
            lb_aa = "–" if lb is None else f"{lb['autoattack']:.4f}" + (" (unreliable)" if lb["unreliable"] else "")
            n = b["examples"]
            lines.append(f"| {b['model']} | {b['eps']:g} | {n} | {accuracy_cell(b['clean'], n)} | "
                         f"{_cell_or_dash(b['autoattack'], n)} | "
                         f"{_cell_or_dash(b['adaptive'], n)} | {lb_clean} | {lb_aa} | "
                         f"{'⚠ ' + '; '.join(b['flags']) if b['flags'] else '–'} |")
    # certify
    certs = [p for p in summary["pairs"] if p["certify"]]
    if certs:
        cfg = spec.certify
        assert cfg is not None  # certify rows exist only with a [certify] table
        radii = list(certs[0]["certify"]["certified"])
        lines += ["", "## Certified accuracy (Cohen et al. CERTIFY)", "",
                  f"n0 = {cfg.n0}, n = {cfg.n}, alpha = {cfg.alpha}; ± one binomial SE over the images. sigma "
                  "is in the defence's noise space, pixel sigma the pixel-space std of that noise (the smallest per "
                  "channel); radii are pixel L2 radii.", "",
                  "| model | defence | sigma | pixel sigma | images | " + " | ".join(f"r={r}" for r in radii) +
                  " | ACR |", "|" + "---|" * (len(radii) + 6)]
        for p in certs:
            c = p["certify"]
            lines.append(f"| {p['model']} | {p['defence']} | {c['sigma']:g} | {c['sigma_pixel']:.3g} | "
                         f"{c['examples']} | " + " | ".join(accuracy_cell(v, c["examples"])
                                                            for v in c["certified"].values()) + f" | {c['acr']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(spec: CompareSpec, summary: dict[str, Any], out: Path, manifest: dict[str, Any]) -> str | None:
    """Robust accuracy against eps per attack (mean and worst of k), one panel per (model, defence)."""
    pairs = [p for p in summary["pairs"] if len(p["eps"]) > 1]
    if not pairs:
        return None
    if plots_unavailable() is not None:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, p in zip(axes[0], pairs, strict=True):
        names = [a for a in spec.attacks_for(p["defence"]) if a != "none"]
        for name in names:
            pts = sorted((a["eps"], a["robust_mean"], a["robust_worst"]) for a in p["attacks"] if a["attack"] == name)
            if pts:
                e, m, w = zip(*pts, strict=True)
                line, = ax.plot(e, m, marker="o", label=f"{name} (mean)")
                if p["draws"] > 1:
                    ax.plot(e, w, marker="x", linestyle="--", color=line.get_color(), label=f"{name} (worst of k)")
        wc = sorted((w["eps"], w["robust_mean"]) for w in p["worst_case"])
        if wc:
            e, m = zip(*wc, strict=True)
            ax.plot(e, m, marker="s", color="black", label="worst over attacks")
        ax.set_ylim(-0.04, 1.02)
        ax.set_xlabel(f"eps ({p['norm']})")
        ax.set_ylabel("robust accuracy")
        ax.set_title(f"{p['model']} / {p['defence']}\n{p['examples']} images, k={p['draws']}, seed {manifest['seed']}",
                     fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "robust_vs_eps.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def write(spec: CompareSpec, summary: dict[str, Any], out: Path, manifest: dict[str, Any]) -> str:
    """Write ``summary.json``, ``summary.md`` and the plot; returns the Markdown."""
    text = markdown(spec, summary, manifest) if summary["pairs"] else "(no rows yet)\n"
    figure = plot(spec, summary, out, manifest)
    if figure:
        text += (f"\n![robust accuracy against eps]({figure}) (robust accuracy per attack against eps; "
                 f"{summary['pairs'][0]['examples']} images, seed {manifest['seed']})\n")
    return write_summary(out, summary, text)
