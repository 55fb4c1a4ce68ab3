"""The benchmark runner: rows as produced, manifest, resume equals an uninterrupted run, refusal to overwrite."""

import json

import pytest

from art_ext import zoo
from art_ext.data import load_digits
from art_ext.ops.hashing import state_dict_sha256
from benchmarks import common, run


@pytest.fixture
def suite_file(tiny_suite):
    """The tiny suite on six 16x16 test images with n = 200 and three radii."""
    return tiny_suite(resolution=16, split="test", limit=6, n0=20, n=200, radii=[0.0, 0.25, 0.5])


def strip_timing(rows):
    return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in rows)


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path, suite_file):
    full, partial = tmp_path / "full", tmp_path / "partial"
    assert run.main(["--suite", str(suite_file), "--out", str(full), "--quiet"]) == 0
    rows = common.read_rows(full)
    assert len(rows) == 12 and {r["config"] for r in rows} == {"digits_lenet@sigma=0.25", "digits_mlp@sigma=0.5"}
    manifest = json.loads((full / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["limit"] == 6 and "torch" in manifest["versions"]
    assert "git_sha" in manifest and manifest["suite"]["n"] == 200
    summary = (full / "summary.md").read_text()
    assert "| digits_lenet | 0 | 0.25 | 6 |" in summary and (full / "certified_accuracy.png").stat().st_size > 0

    # simulate a crash: keep 5 finished rows and half of the 6th line
    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet"]) == 0
    lines = (partial / "rows.jsonl").read_text().splitlines(keepends=True)
    (partial / "rows.jsonl").write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet", "--seed", "1"])
    assert refused.value.code == 2
    assert len(common.read_rows(partial)) == 5  # the refused run touched nothing
    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet"]) == 0  # a rerun continues
    resumed = common.read_rows(partial)
    assert strip_timing(resumed) == strip_timing(rows)
    def untimed(out):
        summary = json.loads((out / "summary.json").read_text())
        return [{k: v for k, v in s.items() if k != "seconds_per_example"} for s in summary]

    assert untimed(partial) == untimed(full)


def test_manifest_records_the_weights_and_examples_by_content(tmp_path, suite_file, capsys):
    out = tmp_path / "out"
    assert run.main(["--suite", str(suite_file), "--out", str(out), "--quiet", "--limit", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("digits_lenet", "digits_mlp"):
        model = zoo.load(name)
        assert manifest["models"][name] == {"sha256": model.sha256, "source": f"zoo:{model.info['source']}"}
    test = load_digits("test").head(2)
    assert manifest["dataset"]["sha256"] == state_dict_sha256({"x": test.x, "y": test.y})
    assert manifest["dataset"]["examples"] == 2
    # a folder that holds a run of other weights is never continued
    manifest["models"]["digits_mlp"]["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(suite_file), "--out", str(out), "--quiet", "--limit", "2"])
    assert refused.value.code == 2
    assert "model 'digits_mlp': weights sha256 000000000000... there vs" in capsys.readouterr().err


def test_resume_needs_an_earlier_run(tmp_path, suite_file, capsys):
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(suite_file), "--out", str(tmp_path / "empty"), "--quiet", "--resume"])
    assert refused.value.code == 2 and "no earlier run" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # a refused start writes nothing


def test_seed_changes_results_and_limit_is_applied(tmp_path, suite_file):
    assert run.main(["--suite", str(suite_file), "--out", str(tmp_path / "a"), "--quiet", "--limit", "2",
                     "--seed", "5"]) == 0
    rows = common.read_rows(tmp_path / "a")
    assert len(rows) == 4 and {r["index"] for r in rows} == {0, 1}




def test_seed_for_is_stable_and_distinct():
    assert common.seed_for(0, "a", 1) == common.seed_for(0, "a", 1)
    assert len({common.seed_for(0, "a", i) for i in range(100)}) == 100
    assert 0 <= common.seed_for(123, "x") < 2**63
