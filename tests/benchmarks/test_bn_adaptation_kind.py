"""The ``bn_adaptation`` suite kind on a tiny suite: all three parts write rows, resume equals an uninterrupted run."""

import json

import pytest

from benchmarks import common, run

SUITE = {
    "kind": "bn_adaptation", "description": "tiny bn_adaptation suite", "limit": 4, "seeds": 2,
    "adaptation_images": 100,
    "noise_accuracy": {"models": ["digits_cnn"], "sigmas": [0.0, 0.5]},
    "ablation": {"model": "digits_cnn", "sigma": 0.5, "rhos": [0.0, 1.0], "adaptation_sizes": [8, 100]},
    "certify": {"n0": 10, "n_auto": 30, "n": 100, "alpha": 0.01, "batch_size": 500, "sigma": 0.5,
                "sigmas": [0.25, 0.5], "images_per_chunk": 2, "radii": [0.0, 0.25, 0.5],
                "configs": [{"name": "fixed", "model": "digits_cnn"},
                            {"name": "adapt + auto", "model": "digits_cnn", "adapt": True, "auto": True}]},
}


def strip_timing(rows):
    return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in rows)


@pytest.mark.slow
def test_tiny_suite_runs_resumes_and_reports(tmp_path, write_suite):
    suite_file = write_suite(**SUITE, file="tiny_bn.toml")
    full, partial = tmp_path / "full", tmp_path / "partial"
    assert run.main(["--suite", str(suite_file), "--out", str(full), "--quiet"]) == 0
    rows = common.read_rows(full)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("noise_accuracy") == 2 * 2 * 2 and kinds.count("rho") == 4
    assert kinds.count("adaptation_size") == 4 and kinds.count("certify") == 8
    by_config = {(r["config"], r["index"]): r for r in rows}
    # rho = 0 is the unadapted model on the same test noise as every other rho of that seed
    for seed in range(2):
        assert 0 <= by_config[("rho/digits_cnn/sigma=0.5/rho=0", seed)]["accuracy"] <= 1
    adapted_rows = [r for r in rows if r["config"] == "cert/adapt + auto"]
    assert all(r["sigma"] in (0.25, 0.5) for r in adapted_rows)
    assert all(r["certified_label"] in (-1, r["prediction"]) for r in adapted_rows)  # certificates only for f(x)
    summary = (full / "summary.md").read_text()
    assert "Table 3 analog" in summary and "| adapt + auto | 4 |" in summary and "σ selected by Auto-Noise" in summary
    # one convention: mean ± SE of the mean over the 2 seeds, stated; every report has a titled plot
    assert "mean ± one standard error of the mean over 2 seeds" in summary and "± 2 sd" not in summary
    assert (full / "noise_accuracy.png").is_file() and "Plot `noise_accuracy.png`" in summary
    assert "500 images, 2 seeds" in summary and "seed 0" in summary and "α = 0.01" in summary

    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet"]) == 0
    lines = (partial / "rows.jsonl").read_text().splitlines(keepends=True)
    cut = len(lines) - 3  # lose the last two certification rows and half of a third
    (partial / "rows.jsonl").write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet", "--resume"]) == 0
    assert strip_timing(common.read_rows(partial)) == strip_timing(rows)
