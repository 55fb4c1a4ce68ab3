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


# ---- the zoo models' hyper-parameter selection (benchmarks/sweep_certified_training.py) ----------------------------

#: the validation-selection records committed beside a run (``sweep_certified_training --baselines --out``)
SELECTION_FILE = "selection.jsonl"
SELECTION_HEADING = "How the art_ext models' hyper-parameters were chosen"


def selection_table(records: list[dict[str, Any]]) -> str:
    """The validation sweep behind the certified zoo entries, one row per record, with a "chosen" column derived from
    the zoo itself: a record is chosen when its fingerprint is the shipped entry's.

    Checked, so the table cannot drift from the shipped models: every record is a candidate of
    ``art_ext.zoo.catalogue.certified.CANDIDATES`` (or the shipped Gaussian model it is compared with), every shipped
    certified entry is chosen exactly once, and the chosen candidate has the highest validation ACR of its method and
    σ (the selection rule).

    Raises:
        ValueError: a record that is no candidate, a shipped entry without its record, or a choice against the rule.
    """
    from art_ext import zoo
    from art_ext.zoo.catalogue.certified import CANDIDATES, ENTRIES, certified_entry, describe, sigma_tag

    known = {certified_entry(c, f"digits_cnn_{m}{sigma_tag(s)}").fingerprint(): describe(c).removeprefix(", ")
             for m, s, c in CANDIDATES}
    records = [r for r in records if not _is_art(r) and not _is_ablation(r)]
    best: dict[tuple[str, float], float] = {}
    for r in records:
        best[r["method"], r["sigma"]] = max(best.get((r["method"], r["sigma"]), -1.0), r["val_acr"])
    body, chosen = [], set()
    for r in records:
        shipped = zoo.get_entry(r["name"]).fingerprint()
        if r["method"] == "gaussian":
            if r["fingerprint"] != shipped:
                raise ValueError(f"selection: {r['name']} record {r['fingerprint']} is not the shipped model "
                                 f"({shipped}); rescore it with benchmarks/sweep_certified_training.py --baselines")
            candidate, mark = "Gaussian augmentation", "(baseline)"
        elif r["fingerprint"] not in known:
            raise ValueError(f"selection: record {r['name']} {r['fingerprint']} ({r['config']}) is not a candidate "
                             "of art_ext.zoo.catalogue.certified.CANDIDATES")
        else:
            candidate, mark = known[r["fingerprint"]], ""
            if r["fingerprint"] == shipped:
                if r["val_acr"] < best[r["method"], r["sigma"]]:
                    raise ValueError(f"selection: {r['name']} ships {candidate}, which is not the highest "
                                     f"validation ACR of its method and sigma")
                mark = "yes"
                chosen.add(r["name"])
        body.append([f"{r['sigma']:g}", r["method"], f"`{r['name']}`", candidate, f"{r['val_acr']:.3f}",
                     f"{100 * r['val_certified_accuracy_r0']:.1f}", f"{r['train_seconds']:.0f}", mark])
    missing = sorted({e.name for e in ENTRIES} - chosen)
    if missing:
        raise ValueError(f"selection: no record of the shipped {', '.join(missing)}")
    caption = ("Validation split only (the 200 validation images, CERTIFY n0 = 100, N = 1,000, α = 0.001): each "
               "candidate trained with the zoo's full recipe, the highest validation ACR of each method and σ "
               "shipped. 'train s' is the wall time recorded with the weights, on one thread of a shared CPU.")
    return rep.markdown_table(["σ", "method", "zoo entry", "candidate", "val ACR", "val cert. acc. r = 0 (%)",
                               "train s", "chosen"], body, caption=caption)


def _is_art(record: dict[str, Any]) -> bool:
    """A record of an ART model trained in a ``certified_training`` run (``sweep_certified_training --art-run``)."""
    return str(record.get("implementation", "art_ext")).startswith("ART ")


def _is_ablation(record: dict[str, Any]) -> bool:
    """A record trained with other random shifts than the zoo recipe's (``sweep_certified_training --max-shift``);
    records without the field were made with the recipe's."""
    from art_ext import zoo

    recipe = zoo.get_entry(record["name"], kind="classifier").train  # type: ignore[attr-defined]
    return "max_shift" in record and record["max_shift"] != recipe.max_shift


#: the heading of the recipe ablation
ABLATION_HEADING = "The recipe's random shifts"


def shift_ablation_table(records: list[dict[str, Any]]) -> str | None:
    """Validation ACR of each shipped model beside the same method and hyper-parameters trained without the recipe's
    random shifts (``sweep_certified_training --baselines --selected --max-shift 0``); None without such records.

    Raises:
        ValueError: an ablation record that is not a shipped model's recipe with other shifts, or one without the
            shipped model's own record.
    """
    from art_ext import zoo
    from art_ext.zoo.catalogue.certified import SELECTED, candidates
    from benchmarks.sweep_certified_training import sweep_entry

    shipped = {r["name"]: r for r in records
               if not _is_art(r) and not _is_ablation(r) and r["fingerprint"] == zoo.get_entry(r["name"]).fingerprint()}
    art = {(r["name"], r["sigma"]): r for r in records if _is_art(r)}
    body = []
    for r in (r for r in records if not _is_art(r) and _is_ablation(r)):
        config = None if r["method"] == "gaussian" else candidates(r["method"], r["sigma"])[
            SELECTED[r["method"], r["sigma"]]]
        expected = sweep_entry(r["method"], r["sigma"], config, r["max_shift"]).fingerprint()
        if r["fingerprint"] != expected:
            raise ValueError(f"selection: the max_shift = {r['max_shift']} record of {r['name']} ({r['fingerprint']}) "
                             f"is not the shipped recipe with other shifts ({expected})")
        reference = shipped.get(r["name"])
        if reference is None:
            raise ValueError(f"selection: the max_shift = {r['max_shift']} record of {r['name']} has no record of the "
                             "shipped model beside it")
        theirs = art.pop((r["name"], r["sigma"]), None)
        body.append([f"{r['sigma']:g}", r["method"], f"`{r['name']}`", f"{reference['val_acr']:.3f}",
                     f"{r['max_shift']}", f"{r['val_acr']:.3f}", f"{r['val_acr'] - reference['val_acr']:+.3f}",
                     "–" if theirs is None else f"{theirs['val_acr']:.3f}",
                     f"{100 * reference['val_certified_accuracy_r0']:.1f} / "
                     f"{100 * r['val_certified_accuracy_r0']:.1f}"])
    if art:
        raise ValueError(f"selection: ART records without an ablation row of their zoo entry: "
                         f"{', '.join(f'{name} σ={sigma:g}' for name, sigma in sorted(art))}")
    if not body:
        return None
    caption = ("Validation split only, as above: each shipped model's method and hyper-parameters trained again with "
               "the recipe's random shifts of up to 2 pixels replaced (every other setting, the seed included, "
               "unchanged); beside them, ART's model of the same method and σ from the run above, initialized from "
               "that zoo entry and trained by ART's `fit`, which shifts nothing (its weights checked against the "
               "sha256 its train row recorded). Certified accuracy at r = 0 (%) is shipped / without shifts.")
    return rep.markdown_table(["σ", "method", "zoo entry", "val ACR (shipped)", "max shift", "val ACR", "Δ val ACR",
                               "val ACR, ART", "val cert. acc. r = 0 (%)"], body, caption=caption)

