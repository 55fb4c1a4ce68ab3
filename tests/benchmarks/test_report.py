"""The shared report module: standard errors, cells, tables, plot titles and limits, optional matplotlib, and
reports that regenerate identically from the same rows."""

from __future__ import annotations

import doctest
import json
import math
import random
import sys

import pytest

from benchmarks import report as rep
from benchmarks.kinds import certify
from benchmarks.report import certify as certify_report

MANIFEST = {"seed": 3, "git_sha": "abc", "versions": {"torch": "t"}, "device": "cpu"}


def test_binomial_se_and_se_of_mean_by_hand() -> None:
    assert math.isclose(rep.binomial_se(0.9, 100), 0.03)
    assert math.isclose(rep.binomial_se(0.825, 200), math.sqrt(0.825 * 0.175 / 200))
    assert rep.binomial_se(0.0, 10) == 0.0 and rep.binomial_se(1.0, 10) == 0.0
    assert math.isclose(rep.se_of_mean([1.0, 2.0, 3.0]), 1.0 / math.sqrt(3.0))  # sd 1, n 3
    assert math.isnan(rep.se_of_mean([0.5]))  # undefined for one value, never a silent 0
    for bad in ((1.5, 10), (-0.1, 10), (0.5, 0), (0.5, 2.0)):
        with pytest.raises(ValueError, match="binomial_se"):
            rep.binomial_se(*bad)
    with pytest.raises(ValueError, match="at least one"):
        rep.se_of_mean([])


def test_cells_and_table_caption() -> None:
    assert rep.accuracy_cell(0.825, 200) == "0.825 ± 0.027"
    assert rep.accuracy_cell(0.6, 10, digits=1, percent=True) == "60.0 ± 15.5"
    assert rep.mean_cell([0.5]) == "0.500 ± n/a"
    assert rep.cell(0.25, 0.0125, digits=2) == "0.25 ± 0.01"
    text = rep.markdown_table(["a", "b"], [[1, "x"]], caption=rep.uncertainty_caption(rep.BINOMIAL))
    lines = text.splitlines()
    assert lines[0].startswith("Cells: value ± one standard error (binomial SE") and lines[2] == "| a | b |"
    assert lines[4] == "| 1 | x |"
    with pytest.raises(ValueError, match="row 0 has 1 cells, the header 2"):
        rep.markdown_table(["a", "b"], [["only"]])


def test_module_examples_run() -> None:
    result = doctest.testmod(rep, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_plot_title_states_n_images_alpha_seed_and_zero_stays_visible(tmp_path) -> None:
    plt = rep.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 0], marker=rep.marker(0))  # a curve lying at zero
    rep.zero_visible(ax)
    info = rep.PlotInfo(images=200, seed=7, noise_samples=10_000, alpha=0.001)
    plot = rep.save(fig, tmp_path / "p.png", f"curves: {info.caption()}")
    assert plot.path.stat().st_size > 0
    title = fig._suptitle.get_text().replace("\n", " ")  # the text drawn on the figure
    for part in ("N = 10,000 noise samples", "200 images", "α = 0.001", "seed 7"):
        assert part in title and part in plot.title
    assert plot.ylims[0][0] < 0 and plot.ylims[0][1] > 1


def certify_case(tmp_path):
    suite = {"name": "t", "kind": "certify", "n0": 10, "n": 100, "alpha": 0.01, "batch_size": 10,
             "radii": [0.0, 0.5], "configs": [{"model": "m1", "sigma": 0.25}, {"model": "m0", "sigma": 0.25}]}
    rng = random.Random(0)
    rows = []
    for model in ("m1", "m0"):
        for i in range(8):
            right = model == "m1" and i % 4 != 0  # m0 is always wrong: its curve lies at zero
            rows.append({"config": f"{model}@sigma=0.25", "model": model, "sigma": 0.25, "training_sigma": None,
                         "index": i, "label": i % 3, "prediction": i % 3 if right else (i + 1) % 3,
                         "radius": round(rng.uniform(0.1, 1.0), 3), "correct": right, "seconds": 0.5})
    return suite, rows


def test_certify_report_uncertainty_plot_and_zero_curve(tmp_path) -> None:
    suite, rows = certify_case(tmp_path)
    text = certify.report(suite, rows, tmp_path, MANIFEST)
    # m1: 6 of 8 correct at r = 0 -> 0.750 ± sqrt(.75 * .25 / 8) = 0.153
    assert "| m1 | – | 0.25 | 8 | 0.750 ± 0.153 |" in text and "Cells: value ± one standard error" in text
    assert "one-off model training and loading are excluded" in text
    summary = certify.summarize(suite, rows)
    plot = certify_report.plot_curves(summary, rows, tmp_path / "c.png", certify_report.plot_info(suite, summary, 3))
    for part in ("N = 100 noise samples", "8 images", "α = 0.01", "seed 3"):
        assert part in plot.title
    assert all(low < 0 for low, _ in plot.ylims)  # m0's curve at 0 is drawn above the frame
    assert f"Plot `certified_accuracy.png`: {plot.title}" in text


def test_reports_regenerate_identically_from_the_same_rows(tmp_path) -> None:
    suite, rows = certify_case(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert certify.report(suite, rows, a, MANIFEST) == certify.report(suite, shuffled, b, MANIFEST)
    for name in ("summary.md", "summary.json", "certified_accuracy.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert json.loads((a / "summary.json").read_text())[0]["acr_se"] > 0


def test_without_matplotlib_the_report_says_why_and_draws_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    why = rep.plots_unavailable()
    assert why is not None and "art_ext[bench]" in why
    suite, rows = certify_case(tmp_path)
    text = certify.report(suite, rows, tmp_path, MANIFEST)
    assert f"No plots: {why}" in text and "| m1 |" in text and not list(tmp_path.glob("*.png"))
