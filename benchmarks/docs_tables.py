"""The tables of each kind's results page (``benchmarks/docs_pages.py``), rendered from a committed run folder's
``summary.json`` (and ``rows.jsonl`` where the summary does not hold every table) by the kind's own report code.

``RENDERERS`` maps a kind to its function ``(suite, summary, folder) -> Markdown``. JSON turns float dict keys into
strings and sorts keys; the renderers put both back (``_float_keys``, the suite's order).

Examples:
    >>> _float_keys({"0.0": 0.9, "0.25": 0.7})
    {0.0: 0.9, 0.25: 0.7}
    >>> _number(10000)
    '10,000'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"

# ---- reading a run folder ------------------------------------------------------------------------------------------


class PageError(ValueError):
    """A run folder that cannot be turned into a page (a missing file, a kind without a renderer)."""


def _float_keys(mapping: dict[str, Any]) -> dict[float, Any]:
    """JSON turns the float keys of a summary (radii) into strings; the table code indexes with floats."""
    return {float(key): value for key, value in mapping.items()}


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _shown(path: Path) -> str:
    """A path as messages show it: relative to the checkout when it lies inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise PageError(f"{_shown(path)} is missing: a results folder needs manifest.json and "
                        "summary.json (python3 benchmarks/run.py --suite <name> --out docs/results/<name>)")
    return json.loads(path.read_text(encoding="utf-8"))


def run_folders(results: Path = RESULTS) -> list[Path]:
    """The committed run folders: ``docs/results/<suite>/`` holding a ``manifest.json``, sorted by name."""
    return sorted(p for p in results.iterdir() if p.is_dir() and (p / common.MANIFEST_FILE).is_file())


# ---- tables per kind -----------------------------------------------------------------------------------------------


def _certify_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.report import certify

    records = [{**s, "certified_accuracy": _float_keys(s["certified_accuracy"]),
                "certified_accuracy_se": _float_keys(s["certified_accuracy_se"])} for s in summary]
    text = "## Certified accuracy\n\n" + certify.markdown_table(suite, records)
    if suite.get("paper_table"):
        text += "\n\n## In the paper's layout\n\n" + certify.paper_tables(suite, records)
    return text


def _attacks_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.report import attacks

    return "## Robust accuracy\n\n" + attacks.markdown_table(summary, isinstance(suite["eps"], list))


def _bn_adaptation_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.kinds.bn_adaptation import spec_of
    from benchmarks.report import bn_adaptation as bn

    rows = common.read_rows(folder)
    if not rows:
        raise PageError(f"{_shown(folder)}/rows.jsonl is missing: the bn_adaptation page renders its "
                        "noise-accuracy and ablation tables from the rows")
    records = [{**s, "certified_accuracy": _float_keys(s["certified_accuracy"]),
                "certified_accuracy_se": _float_keys(s["certified_accuracy_se"])} for s in summary]
    part, ablation = suite["certify"], suite["ablation"]
    return "\n".join([
        "## Top-1 accuracy (%) under Gaussian noise (Table 3 analog)",
        "",
        bn.table_noise_accuracy(spec_of(suite), rows),
        "",
        f"## Accuracy (%) of {ablation['model']} at σ = {ablation['sigma']} against ρ (Table 6 analog)",
        "",
        bn.table_ablation(spec_of(suite), rows, "rho", "rho", "ρ"),
        "",
        f"## Accuracy (%) of {ablation['model']} at σ = {ablation['sigma']} against the number of adaptation "
        "images (Table 7 analog)",
        "",
        bn.table_ablation(spec_of(suite), rows, "adaptation_size", "images", "images"),
        "",
        "## Certified accuracy (%) and ACR (Table 1 analog)",
        "",
        f"CERTIFY with N0 = {part['n0']}, N = {_number(part['n'])}, α = {part['alpha']}; Auto-Noise selects σ with "
        f"N_auto = {_number(part['n_auto'])} draws per σ ∈ {{{', '.join(f'{s:g}' for s in part['sigmas'])}}}; the "
        f"fixed rows use σ = {part['sigma']}. 'output acc.' is the accuracy of what the method outputs: f(x) for the "
        "adaptation rows, the smoothed label otherwise. Auto-Noise radii certify the smoothed classifier at each "
        "image's selected σ, not the σ-selecting rule.",
        "",
        bn.table_certify(spec_of(suite), records),
        "",
        "## σ selected by Auto-Noise (number of test images)",
        "",
        bn.table_sigma_histogram(spec_of(suite), records),
    ])


def _smoothed_inference_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks import report as rep
    from benchmarks.kinds import smoothed_inference as si

    rows = common.read_rows(folder)
    if not rows:
        raise PageError(f"{_shown(folder)}/rows.jsonl is missing: the smoothed_inference page renders its per-M "
                        "tables from the rows")
    attack = suite["attack"]
    table = [[t["model"], t["method"], f"{t['sigma']:g}", t["M"], t["clean"], t["pgd"], t["epgd"], t["seeds"]]
             for t in summary["table"]]
    parts = [
        "## Accuracy (%) at the σ and M chosen on the validation split",
        "",
        f"Attacks on the noisy base at the smoothing σ: PGD-{attack['norm']} ε = {attack['eps']}, step "
        f"{attack['eps_step']}, {attack['max_iter']} steps, {attack.get('num_random_init', 1)} random start, one noisy "
        f"pass per step; EPGD the same with {attack['epgd_samples']} noisy passes averaged per step. Ties abstain and "
        "count as wrong. σ and M were chosen on the validation split (best mean accuracy under PGD), never on the test "
        "split.",
        "",
        rep.markdown_table(["model", "method", "σ", "M", "clean", "PGD", "EPGD", "seeds"], table, caption=si.CAPTION),
    ]
    grid = si.accuracy_grid(suite, rows)
    ms = summary["M"]
    for model in suite["models"]:
        for mode in suite["modes"]:
            choice = summary["selected_on_val"].get(f"{model}/{mode}")
            if choice is None:
                continue
            per_m = [[name, *(si.seed_cell(acc, j) for j in range(len(ms)))] for name in si.INPUTS
                     if (acc := grid.get((model, "test", name, mode, choice["sigma"]))) is not None]
            parts += ["", f"## {model}, {mode} voting: accuracy (%) against M at σ = {choice['sigma']:g}", "",
                      rep.markdown_table(["input", *(f"M={m}" for m in ms)], per_m, caption=si.CAPTION)]
    return "\n".join(parts)


def _without_provenance(text: str, manifest: dict[str, Any], folder: Path) -> str:
    """A kind's ``summary.md`` text without its title and the opening sentence of its first paragraph, which states
    the seed, git SHA and machine: the page's own title and run table state those, and the SHA stays in the
    manifest."""
    lines = text.rstrip("\n").split("\n")
    first, sep, rest = lines[2].partition(". ") if len(lines) > 2 and lines[0].startswith("# ") else ("", "", "")
    sha = str(manifest.get("git_sha"))
    if not sep or sha not in first:
        raise PageError(f"{_shown(folder)}: the report's Markdown does not open with a title and a sentence stating "
                        "the run (seed, git SHA); update benchmarks/docs_pages.py to its layout")
    body = "\n".join([rest, *lines[3:]])
    if sha in body:
        raise PageError(f"{_shown(folder)}: the report's Markdown states the git SHA beyond its first sentence")
    return body


def _certified_training_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.report import certified_training as ct

    manifest = _read_json(folder / common.MANIFEST_FILE)
    records = [{**s, "certified_accuracy": _float_keys(s["certified_accuracy"]),
                "certified_accuracy_se": _float_keys(s["certified_accuracy_se"])} for s in summary]
    parts = [f"## {ct.HEADING}", "", ct.settings(suite, manifest.get("limit")), "",
             ct.markdown_table(suite, records) if records else "(no certification rows yet)"]
    selection = folder / ct.SELECTION_FILE
    if selection.is_file():
        records = [json.loads(line) for line in selection.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            table, ablation = ct.selection_table(records), ct.shift_ablation_table(records)
        except ValueError as error:
            raise PageError(f"{_shown(selection)}: {error}") from error
        parts += ["", f"## {ct.SELECTION_HEADING}", "", table]
        if ablation is not None:
            parts += ["", f"## {ct.ABLATION_HEADING}", "", ablation]
    return "\n".join(parts)


def _compare_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.kinds.compare.spec import spec_of
    from benchmarks.report import compare

    manifest = _read_json(folder / common.MANIFEST_FILE)
    if not summary["pairs"]:
        return "(no rows yet)"
    spec = spec_of(suite)
    # certified accuracies are keyed by the radius as written (f"{r:g}"): JSON gives the keys back unchanged but
    # sorted as strings, and the table's columns follow the suite's radii
    radii = [f"{r:g}" for r in spec.certify.radii] if spec.certify is not None else []
    pairs = [{**p, "certify": p["certify"] and {**p["certify"],
                                                "certified": {r: p["certify"]["certified"][r] for r in radii}}}
             for p in summary["pairs"]]
    return _without_provenance(compare.markdown(spec, {**summary, "pairs": pairs}, manifest), manifest, folder)


def _normalized_noise_tables(suite: dict[str, Any], summary: Any, folder: Path) -> str:
    from benchmarks.kinds import normalized_noise as kind
    from benchmarks.report import normalized_noise

    manifest = _read_json(folder / common.MANIFEST_FILE)
    spec = kind.spec_of(suite)

    def space(table: str, row: str, written: str) -> Any:
        """The noise space of a row, from its config (summary.json holds its repr only); the zoo must agree."""
        config = next(c for c in spec.configs if c.table == table and c.row == row)
        declared = kind.noise_of(config)[1]
        if repr(declared) != written:
            raise PageError(f"{_shown(folder)}/summary.json: Table {table} row {row!r} ran in noise space {written}, "
                            f"but its denoiser now declares {declared!r}; rerun the suite")
        return declared

    def in_suite_order(table: str) -> dict[str, Any]:
        """summary.json sorts its keys; the tables list their rows in the suite's order."""
        order = [c.row for c in spec.configs if c.table == table]
        unknown = sorted(set(summary[table]) - set(order))
        if unknown:
            raise PageError(f"{_shown(folder)}/summary.json: Table {table} row {unknown[0]!r} is not in the suite")
        return {row: summary[table][row] for row in order if row in summary[table]}

    records = {
        "I": in_suite_order("I"),
        "II": {row: {**d, "certified": _float_keys(d["certified"]), "space": space("II", row, d["space"])}
               for row, d in in_suite_order("II").items()},
        "V": {row: {**d, "space": space("V", row, d["space"])} for row, d in in_suite_order("V").items()},
    }
    return _without_provenance(normalized_noise.markdown(spec, records, manifest), manifest, folder)


#: kind -> the page's tables, from (suite, summary.json, folder)
RENDERERS: dict[str, Callable[[dict[str, Any], Any, Path], str]] = {
    "certify": _certify_tables,
    "attacks": _attacks_tables,
    "bn_adaptation": _bn_adaptation_tables,
    "smoothed_inference": _smoothed_inference_tables,
    "certified_training": _certified_training_tables,
    "compare": _compare_tables,
    "normalized_noise": _normalized_noise_tables,
}
