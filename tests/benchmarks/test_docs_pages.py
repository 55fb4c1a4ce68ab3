"""The results pages of the docs are generated, not typed: each regenerates byte for byte from its committed run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import docs_pages

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = docs_pages.run_folders()


def test_there_are_committed_runs():
    assert [f.name for f in FOLDERS], "docs/results/ holds no run folder"
    assert "default" in [f.name for f in FOLDERS]  # the Quick start's benchmark


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_page_regenerates_byte_identically(folder: Path):
    page = docs_pages.RESULTS / f"{folder.name}.md"
    assert page.is_file(), f"{page} is missing: run python3 benchmarks/docs_pages.py"
    assert page.read_text(encoding="utf-8") == docs_pages.suite_page(folder), (
        f"{page.name} differs from what its run folder gives: run python3 benchmarks/docs_pages.py")


def test_index_regenerates_byte_identically():
    assert (docs_pages.RESULTS / "index.md").read_text(encoding="utf-8") == docs_pages.index_page(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_page_states_the_run(folder: Path):
    """N, images, alpha, seed, machine, versions, every weight hash, the plots and how to regenerate."""
    manifest = json.loads((folder / "manifest.json").read_text())
    page = (docs_pages.RESULTS / f"{folder.name}.md").read_text(encoding="utf-8")
    for model in manifest["models"].values():
        assert model["sha256"] in page
    assert manifest["dataset"]["sha256"] in page
    assert manifest["device_name"] in page and f"torch {manifest['versions']['torch']}" in page
    assert f"| seed | {manifest['seed']} |" in page
    assert f"--suite {manifest['suite']['name']} --out docs/results/{folder.name}" in page
    for plot in folder.glob("*.png"):
        assert f"]({folder.name}/{plot.name})" in page
    assert (folder / "verdict.md").read_text(encoding="utf-8").strip() in page
    assert manifest["git_sha"] not in page  # provenance stays in the manifest


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_page_is_in_the_site_navigation(folder: Path):
    assert f"results/{folder.name}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


# ---- the generator on a copy ---------------------------------------------------------------------------------------
@pytest.fixture
def results_copy(tmp_path: Path) -> Path:
    source = docs_pages.RESULTS / "default"
    target = tmp_path / "results" / "default"
    target.mkdir(parents=True)
    for name in ("manifest.json", "summary.json", "verdict.md"):
        shutil.copy(source / name, target / name)
    return tmp_path / "results"


def test_a_changed_number_changes_the_page(results_copy: Path):
    before = docs_pages.pages(results_copy)[results_copy / "default.md"]
    summary_path = results_copy / "default" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary[0]["acr"] != 0.123456
    summary[0]["acr"] = 0.123456
    summary_path.write_text(json.dumps(summary))
    after = docs_pages.pages(results_copy)[results_copy / "default.md"]
    assert after != before and "| 0.123 ± " in after and "| 0.123 ± " not in before


def test_a_changed_verdict_changes_only_the_prose(results_copy: Path):
    before = docs_pages.pages(results_copy)[results_copy / "default.md"]
    (results_copy / "default" / "verdict.md").write_text("Another reading.\n")
    after = docs_pages.pages(results_copy)[results_copy / "default.md"]
    assert "Another reading." in after and "Another reading." not in before
    assert after.split("## Certified accuracy")[1] == before.split("## Certified accuracy")[1]


def test_missing_verdict_or_unknown_kind_is_an_error(results_copy: Path):
    (results_copy / "default" / "verdict.md").unlink()
    with pytest.raises(docs_pages.PageError, match="verdict.md is missing"):
        docs_pages.pages(results_copy)
    (results_copy / "default" / "verdict.md").write_text("x\n")
    manifest_path = results_copy / "default" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["suite"]["kind"] = "no_such_kind"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(docs_pages.PageError, match="no results page renderer for kind 'no_such_kind'"):
        docs_pages.pages(results_copy)


def test_check_mode(results_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(docs_pages, "RESULTS", results_copy)
    assert docs_pages.main(["--check"]) == 1  # nothing written yet
    assert "default.md is not up to date" in capsys.readouterr().err
    assert docs_pages.main([]) == 0
    assert (results_copy / "default.md").is_file() and (results_copy / "index.md").is_file()
    assert docs_pages.main(["--check"]) == 0


def test_module_examples():
    import doctest

    from benchmarks import docs_tables

    result = doctest.testmod(docs_tables, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ---- the renderers of the kinds whose report lives in benchmarks/report/<kind>.py -----------------------------------
CERTIFIED_TRAINING = {
    "description": "tiny certified_training", "dataset": "digits", "limit": 3, "n0": 10, "n": 60, "alpha": 0.01,
    "batch_size": 500, "images_per_chunk": 3, "radii": [0.0, 0.25],
    "configs": [{"name": "Gaussian σ=0.25", "method": "gaussian", "sigma": 0.25, "model": "digits_cnn_noise025"},
                {"name": "MACER σ=0.25", "method": "macer", "sigma": 0.25, "model": "digits_cnn_macer025"}],
}
COMPARE = {
    "description": "tiny compare", "dataset": "digits", "limit": 2, "chunk": 2, "norm": "l2", "eps": 0.5, "steps": 2,
    "score_draws": 2, "smoothing_samples": 4, "models": ["digits_cnn"],
    "defences": ["none", "smoothed_inference:soft"], "attacks": ["none", "pgd"],
    # radii whose strings sort otherwise than their values ("10" < "2"): the columns must keep the suite's order
    "certify": {"n0": 10, "n": 60, "alpha": 0.01, "batch_size": 100, "radii": [0.0, 0.25, 2.0, 10.0]},
}


def _run_into_results(tmp_path: Path, write_suite, kind: str, suite: dict) -> Path:
    """A run folder ``results/<suite>/`` made by the runner on a tiny suite, with a verdict."""
    from benchmarks import run

    path = write_suite(kind, **suite, file=f"tiny_{kind}.toml")
    folder = tmp_path / "results" / f"tiny_{kind}"
    assert run.main(["--suite", str(path), "--out", str(folder), "--quiet", "--device", "cpu"]) == 0
    (folder / "verdict.md").write_text("What the tiny run shows.\n")
    return folder


def _regenerates(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write the pages of ``folder``'s results directory, check that a second generation gives the same bytes, and
    return the suite page."""
    monkeypatch.setattr(docs_pages, "RESULTS", folder.parent)
    assert docs_pages.main([]) == 0
    assert docs_pages.main(["--check"]) == 0
    page = (folder.parent / f"{folder.name}.md").read_text(encoding="utf-8")
    assert page == docs_pages.suite_page(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["git_sha"] not in page  # provenance stays in the manifest
    assert "What the tiny run shows." in page
    return page


def _sections(summary_md: str) -> str:
    """The run's ``summary.md`` from its first section heading on (what the page must show unchanged)."""
    return summary_md[summary_md.index("\n## ") + 1:].rstrip("\n")


def test_a_certified_training_run_gives_its_page(tmp_path, write_suite, monkeypatch):
    folder = _run_into_results(tmp_path, write_suite, "certified_training", CERTIFIED_TRAINING)
    page = _regenerates(folder, monkeypatch)
    summary_md = (folder / "summary.md").read_text(encoding="utf-8")
    table = summary_md[summary_md.index("Cells: value ± one standard error"):].rstrip("\n")
    assert table in page and "| MACER σ=0.25 | art_ext | 0.25 | 3 |" in page  # the table as the run's report has it
    assert "CERTIFY (art_ext) with n0 = 10, N = 60, α = 0.01 on the first 3 test images" in page
    assert "| noise samples | N0 = 10, N = 60 |" in page


def test_a_compare_run_gives_its_page(tmp_path, write_suite, monkeypatch):
    folder = _run_into_results(tmp_path, write_suite, "compare", COMPARE)
    page = _regenerates(folder, monkeypatch)
    summary_md = (folder / "summary.md").read_text(encoding="utf-8")
    assert _sections(summary_md) in page  # every table, the certified one (radii as float keys) included
    assert "## Certified accuracy (Cohen et al. CERTIFY)" in page and "| r=0 | r=0.25 | r=2 | r=10 | ACR |" in page
    assert summary_md.split("\n")[2].split(". ", 1)[1] in page  # the reading notes, without the provenance
    assert "| noise samples | k = 2 scoring draws of each randomized defence; CERTIFY N0 = 10, N = 60 |" in page
    assert "| α | 0.01 |" in page


def _normalized_noise_folder(tmp_path: Path) -> Path:
    """A normalized_noise run folder written by the kind's own report from tiny rows (its Table V attacks take too
    long for a quick test): summary.json, summary.md, a manifest and a verdict."""
    from benchmarks.kinds import normalized_noise as kind

    suite = {"name": "tiny_nn", "kind": "normalized_noise", "description": "tiny", "limit": 2, "n0": 10, "n": 60,
             "alpha": 0.01, "batch_size": 500, "radii": [0.0, 0.1], "transfer_models": ["digits_mlp"],
             "attack_draws": 2,
             "configs": [{"table": "I", "row": "unet", "denoiser": "digits_unet_nn_100"},
                         {"table": "II", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"},
                         {"table": "II", "row": "cohen", "model": "digits_cnn_noise025", "sigma": 0.25},
                         {"table": "V", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"}]}
    rows = [{"config": "I/unet/digits_mlp", "index": i, "correct": i == 0} for i in range(2)]
    rows += [{"config": cid, "index": i, "prediction": 3, "label": 3 if i == 0 else 5, "radius": radius}
             for cid, radius in (("II/unet", 0.2), ("II/cohen", 0.05)) for i in range(2)]
    rows += [{"config": "V/unet", "index": i, "acc_paper": 1.0, "acc_sane": 0.5, "acc_exact": 0.5 * i}
             for i in range(2)]
    folder = tmp_path / "results" / "tiny_nn"
    folder.mkdir(parents=True)
    manifest = {"suite": suite, "seed": 0, "git_sha": "0123abcd", "versions": {"torch": "2"}, "device": "cpu",
                "device_name": "test machine", "limit": 2, "models": {}, "dataset": {"examples": 2}}
    kind.report(suite, rows, folder, manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "verdict.md").write_text("What the tiny run shows.\n")
    return folder


def test_a_normalized_noise_run_gives_its_page(tmp_path, monkeypatch):
    folder = _normalized_noise_folder(tmp_path)
    page = _regenerates(folder, monkeypatch)
    summary_md = (folder / "summary.md").read_text(encoding="utf-8")
    assert "(normalized)" in summary_md and "R_n=0.31" in summary_md
    assert _sections(summary_md) in page  # noise spaces and float radii restored from summary.json
    assert "| cohen | 0.25 (pixel) | 0.250 | (50.0 ± 35.4) | 0.0 ± 0.0 |" in page
    assert "| noise samples | N0 = 10, N = 60 (Table II); k = 2 scoring draws per attacked image (Table V) |" in page


def test_a_normalized_noise_row_whose_noise_space_changed_is_an_error(tmp_path):
    folder = _normalized_noise_folder(tmp_path)
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["V"]["unet"]["space"] = "PixelNoise()"
    summary_path.write_text(json.dumps(summary))
    with pytest.raises(docs_pages.PageError, match="Table V row 'unet' ran in noise space PixelNoise()"):
        docs_pages.suite_page(folder)
