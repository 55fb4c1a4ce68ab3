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

    result = doctest.testmod(docs_pages, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
