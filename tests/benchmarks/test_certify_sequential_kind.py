"""The certify suite kind with method = "sequential": rows with forward passes, unchanged fixed-n rows, report."""

import json

import pytest
import torch

from art_ext import zoo
from art_ext.testing import tiny_cnn
from benchmarks import common
from benchmarks.kinds import certify as kind

FIXED_ROW_KEYS = {"kind", "config", "model", "sigma", "training_sigma", "index", "label", "prediction", "radius",
                  "p_a_lower", "correct", "seconds", "noise_space", "sigma_pixel"}

SUITE = {
    "name": "tiny_seq", "kind": "certify", "dataset": "digits", "split": "test", "n0": 10, "n": 400, "n_max": 400,
    "alpha": 0.01, "batch_size": 256, "images_per_chunk": 3, "radii": [0.0, 0.25, 0.5],
    "configs": [
        {"model": "digits_cnn", "sigma": 0.25},
        {"model": "digits_cnn", "sigma": 0.25, "method": "sequential", "grid": [0.25], "row": "seq"},
    ],
}


@pytest.fixture
def fake_zoo(monkeypatch):
    def load(name, *, kind=None, **kwargs):
        return zoo.ZooModel(tiny_cnn(size=16), zoo.get_entry(name, kind=kind), {})

    monkeypatch.setattr(zoo, "load", load)


def test_sequential_rows_passes_and_report(tmp_path, fake_zoo):
    ctx = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=6, verbose=False)
    kind.run(SUITE, ctx)
    ctx.close()
    rows = common.read_rows(tmp_path)
    fixed = [r for r in rows if r["config"] == "digits_cnn@sigma=0.25"]
    seq = [r for r in rows if r["config"] == "digits_cnn@sigma=0.25/sequential(staged_cp,n_max=400,grid=0.25)"]
    assert len(fixed) == 6 and len(seq) == 6
    assert all(set(r) == FIXED_ROW_KEYS for r in fixed)  # fixed-n rows: the fields they always had, and their noise
    assert all(r["method"] == "sequential" and r["n_max"] == 400 and r["grid"] == [0.25] for r in seq)
    assert all(10 < r["num_samples"] <= 410 for r in seq)

    manifest = {"seed": 0, "versions": {"torch": torch.__version__}, "device": "cpu", "git_sha": None}
    text = kind.report(SUITE, rows, tmp_path, manifest)
    summary = {s["config"]: s for s in json.loads((tmp_path / "summary.json").read_text())}
    assert summary["digits_cnn@sigma=0.25"]["mean_passes"] == 410.0
    mean_seq = sum(r["num_samples"] for r in seq) / 6
    assert summary[seq[0]["config"]]["mean_passes"] == pytest.approx(mean_seq)
    assert "passes/img mean | median |" in text and f"| {mean_seq:,.0f} |" in text
    cells = {line.split(" | ")[0].strip("| †"): line.split(" | ")[1] for line in text.splitlines()
             if line.startswith(("| seq", "| digits_cnn"))}
    assert cells == {"seq": "sequential", "digits_cnn": "cohen"}


def test_default_suite_is_unchanged_by_the_method_option():
    suite = common.load_suite("default")
    assert all(kind.method_of(c, suite) == "cohen" for c in suite["configs"])
    assert [kind.config_id(c, suite) for c in suite["configs"]] == [
        "digits_cnn@sigma=0.25", "digits_cnn_noise025@sigma=0.25", "digits_cnn@sigma=0.5",
        "digits_cnn_noise050@sigma=0.5"]
    assert not kind.has_sequential(suite)
    from benchmarks.report import certify as certify_report

    table = certify_report.markdown_table(suite, [])
    assert table.splitlines()[0] == certify_report.CAPTION  # the uncertainty caption line, then the unchanged columns
    assert table.splitlines()[2] == ("| model | train σ | σ | images | r=0.00 | r=0.25 | r=0.50 | r=0.75 | r=1.00 | "
                                     "ACR | abstain | s/img |")


def test_sequential_suite_loads_and_bad_settings_are_named():
    suite = common.load_suite("sequential")
    ids = [kind.config_id(c, suite) for c in suite["configs"]]
    assert len(set(ids)) == 6 and sum(kind.method_of(c, suite) == "sequential" for c in suite["configs"]) == 4
    with pytest.raises(ValueError, match="method must be one of"):
        kind.method_of({"model": "m", "sigma": 0.5, "method": "fast"})
    with pytest.raises(ValueError, match="needs n_max"):
        kind.config_id({"model": "m", "sigma": 0.5, "method": "sequential"}, {"radii": [0.5]})
    with pytest.raises(ValueError, match="sequential_method must be one of"):
        kind.sequential_settings({"sequential_method": "cs"}, {"radii": [0.5], "n_max": 10})


def test_sequential_tuning_keys_reach_certify_sequential_and_the_config_id(tmp_path, fake_zoo, monkeypatch):
    seen = []
    real = kind.certify_sequential

    def recording(*args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("final_alpha_share", "top_alpha_share", "futility")})
        return real(*args, **kwargs)

    monkeypatch.setattr(kind, "certify_sequential", recording)
    suite = dict(SUITE, futility=0.2, configs=[
        {"model": "digits_cnn", "sigma": 0.25, "method": "sequential", "grid": [0.25], "final_alpha_share": 0.6,
         "top_alpha_share": 0.3}])
    ctx = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=3, verbose=False)
    kind.run(suite, ctx)
    ctx.close()
    assert seen == [{"final_alpha_share": 0.6, "top_alpha_share": 0.3, "futility": 0.2}]
    rows = common.read_rows(tmp_path)
    assert {r["config"] for r in rows} == {
        "digits_cnn@sigma=0.25/sequential(staged_cp,n_max=400,grid=0.25,final_alpha_share=0.6,futility=0.2,"
        "top_alpha_share=0.3)"}
    # the share splits staged_cp's alpha over its looks: it is refused for the confidence sequence
    with pytest.raises(ValueError, match="final_alpha_share applies to sequential_method 'staged_cp' only"):
        kind.sequential_settings({"sequential_method": "mixture_cs", "final_alpha_share": 0.6}, dict(SUITE))
    with pytest.raises(ValueError, match="top_alpha_share applies to sequential_method 'staged_cp' only"):
        kind.sequential_settings({"sequential_method": "mixture_cs"}, dict(SUITE, top_alpha_share=0.2))
