"""Markdown of the ``certified_training`` kind, from its summary (``benchmarks.kinds.certified_training.summarize``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks import report as rep
from benchmarks.kinds.certified_training import CertifiedTrainingSpec, spec_of

CAPTION = rep.uncertainty_caption(rep.BINOMIAL + ", in percentage points", "SE of the mean over the images for ACR",
                                  "paired SE over the images for both ΔACR columns")


def markdown_table(spec: CertifiedTrainingSpec | Mapping[str, Any], summary: list[dict[str, Any]]) -> str:
    """Certified accuracy (%) per radius, ACR, ΔACR against the Gaussian row of the same σ, for ART's rows ΔACR
    against art_ext's model of the same method and σ, and the timings."""
    radii = list(spec_of(spec).radii)
    body = []
    for s in summary:
        n = s["examples"]
        delta = (rep.cell(s["delta_acr_vs_gaussian"], s["delta_acr_se"], signed=True)
                 if "delta_acr_vs_gaussian" in s else "–")
        versus = (rep.cell(s["delta_acr_vs_art_ext"], s["delta_acr_vs_art_ext_se"], signed=True)
                  if "delta_acr_vs_art_ext" in s else "–")
        train = "–" if s["train_seconds"] is None else f"{s['train_seconds']:.0f}"
        body.append([s["name"], s["implementation"], f"{s['sigma']:g}", n,
                     *(rep.accuracy_cell(s["certified_accuracy"][r], n, digits=1, percent=True) for r in radii),
                     rep.cell(s["acr"], s["acr_se"]), delta, versus, train, f"{s['seconds_per_example']:.2f}"])
    return rep.markdown_table(["method", "implementation", "σ", "images", *(f"{r:g}" for r in radii), "ACR",
                               "ΔACR vs Gaussian", "ΔACR ART − art_ext", "train s", "certify s/img"], body,
                              caption=CAPTION)


def settings(spec: CertifiedTrainingSpec | Mapping[str, Any], limit: Any) -> str:
    """What was certified and how to read ΔACR and 'train s' (the sentences after the run line)."""
    spec = spec_of(spec)
    return (f"CERTIFY (art_ext) with n0 = {spec.n0}, N = {spec.n:,}, α = {spec.alpha} on the first {limit} test "
            "images; every config at one σ sees the same noise per image, so ΔACR against the Gaussian-augmentation "
            "row of its σ, and for ART's rows ΔACR against art_ext's model of the same method and σ, are paired "
            "differences. 'train s' is the training time: for art_ext rows as recorded with "
            f"the zoo weights, for ART rows measured in this run ({spec.torch_threads} thread(s)). {rep.TIMING_NOTE}")


#: the heading of the one table
HEADING = "Certified accuracy (%) at L2 radius, ACR and training time"


def markdown(spec: CertifiedTrainingSpec | Mapping[str, Any], summary: list[dict[str, Any]],
             manifest: dict[str, Any]) -> str:
    """The whole ``summary.md``: the run's settings and the table."""
    spec = spec_of(spec)
    return "\n".join([
        f"# Suite `{spec.name}`: {spec.description}",
        "",
        f"{rep.run_line(manifest)} {settings(spec, manifest.get('limit'))}",
        "",
        f"## {HEADING}",
        "",
        markdown_table(spec, summary) if summary else "(no certification rows yet)",
        "",
    ])


def write(spec: CertifiedTrainingSpec | Mapping[str, Any], summary: list[dict[str, Any]], out: Path,
          manifest: dict[str, Any]) -> str:
    """Write ``summary.json`` and ``summary.md``; returns the Markdown."""
    return rep.write_summary(out, summary, markdown(spec, summary, manifest))
