"""The ``certified_training`` suite kind on a tiny suite: a zoo row and ART trainers trained in-run (1 epoch on 64
images), certified by art_ext's CERTIFY; train rows, per-image rows, paired ΔACR, resume, reproducible ART training."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import common, run
from benchmarks.kinds import KINDS

SUITE: dict[str, Any] = {
    "description": "tiny certified_training suite", "dataset": "digits", "limit": 3, "n0": 10, "n": 60,
    "alpha": 0.01, "batch_size": 500, "images_per_chunk": 2, "radii": [0.0, 0.25, 0.5], "train_images": 64,
    "configs": [
        {"name": "Gaussian", "method": "gaussian", "sigma": 0.25, "model": "digits_cnn_noise025"},
        {"name": "MACER (ART)", "method": "macer", "sigma": 0.25, "art": "PyTorchMACER", "init": "digits_cnn_noise025",
         "epochs": 1, "art_args": {"gaussian_samples": 2, "lmbda": 4.0}},
        {"name": "SmoothAdv (ART)", "method": "smoothadv", "sigma": 0.25, "art": "PyTorchSmoothAdv",
         "init": "digits_cnn_noise025", "epochs": 1, "art_args": {"num_steps": 1, "epsilon": 0.5}},
        {"name": "SmoothMix (ART)", "method": "smoothmix", "sigma": 0.25, "art": "PyTorchSmoothMix",
         "init": "digits_cnn_noise025", "epochs": 1, "art_args": {"num_steps": 1, "eta": 1.0}},
    ],
}


def strip_timing(rows):
    return sorted(common.untimed(r) for r in rows)


def test_the_kind_is_registered() -> None:
    assert "certified_training" in KINDS


@pytest.mark.slow
def test_tiny_suite_trains_art_in_run_certifies_reports_and_resumes(tmp_path, write_suite, fails) -> None:
    suite_file = write_suite("certified_training", **SUITE, file="tiny_ct.toml")
    full, again = tmp_path / "full", tmp_path / "again"
    assert run.main(["--suite", str(suite_file), "--out", str(full), "--quiet"]) == 0
    rows = common.read_rows(full)
    train = {r["name"]: r for r in rows if r["kind"] == "train"}
    certs = [r for r in rows if r["kind"] == "certify"]
    assert set(train) == {"Gaussian", "MACER (ART)", "SmoothAdv (ART)", "SmoothMix (ART)"}
    assert train["Gaussian"]["implementation"] == "art_ext" and train["Gaussian"]["seconds"] > 0
    assert train["MACER (ART)"]["implementation"] == "ART PyTorchMACER"
    assert len(certs) == 4 * 3 and {r["index"] for r in certs} == {0, 1, 2}
    assert all(r["certified_label"] in (-1, *range(10)) and r["radius"] >= 0 for r in certs)
    assert all(r["radius"] == 0 for r in certs if r["certified_label"] == -1)  # abstentions certify nothing
    assert (full / "art_models" / "MACER_ART_.pt").is_file()
    summary = json.loads((full / "summary.json").read_text())
    by_name = {s["name"]: s for s in summary}
    assert "delta_acr_vs_gaussian" not in by_name["Gaussian"] and "delta_acr_vs_gaussian" in by_name["MACER (ART)"]
    text = (full / "summary.md").read_text()
    assert "| MACER (ART) | ART PyTorchMACER | 0.25 | 3 |" in text and "ΔACR vs Gaussian" in text

    # ART's training is seeded from the run seed: a second run trains the same weights and certifies the same
    assert run.main(["--suite", str(suite_file), "--out", str(again), "--quiet"]) == 0
    assert strip_timing(common.read_rows(again)) == strip_timing(rows)

    # resume after losing the last certification rows: the saved ART weights are read back, rows are the same
    lines = (again / "rows.jsonl").read_text().splitlines(keepends=True)
    (again / "rows.jsonl").write_text("".join(lines[:-3]))
    assert run.main(["--suite", str(suite_file), "--out", str(again), "--quiet", "--resume"]) == 0
    assert strip_timing(common.read_rows(again)) == strip_timing(rows)

    # a continued run certifies only the ART weights its train row recorded: a replaced file is a one-line error
    (again / "rows.jsonl").write_text("".join(lines[:-3]))
    macer, smoothmix = again / "art_models" / "MACER_ART_.pt", again / "art_models" / "SmoothMix_ART_.pt"
    macer.write_bytes(smoothmix.read_bytes())
    message = fails(["--suite", str(suite_file), "--out", str(again), "--quiet", "--resume"])
    assert "MACER_ART_.pt holds weights with sha256" in message and "the file was replaced" in message
    assert not list((again / "art_models").glob("*.tmp"))  # saves go through a temporary file and a rename
    # the sweep scores a run's ART models only with the weights its train rows recorded (MACER's row comes first)
    from benchmarks.sweep_certified_training import art_run_records

    with pytest.raises(SystemExit, match="MACER_ART_.pt: its weights are not the ones the run's train row recorded"):
        art_run_records(again)


@pytest.mark.parametrize("change, message", [
    ({"model": "digits_cnn_noise025"}, "give either model (a zoo classifier) or art"),
    ({"art": None}, "give either model (a zoo classifier) or art"),
    ({"init": None}, "needs init"),
    ({"art": "PyTorchRandomizedSmoothing"}, "art = 'PyTorchRandomizedSmoothing' is invalid"),
    ({"art_args": {"lmbda": "big"}}, "expected an inline table of ART constructor arguments"),
])
def test_bad_configs_fail_before_any_work(change, message, tmp_path, write_suite, fails) -> None:
    art = {**SUITE["configs"][1], **change}
    art = {k: v for k, v in art.items() if v is not None}
    suite_file = write_suite("certified_training", **{**SUITE, "configs": [SUITE["configs"][0], art]},
                             file="bad_ct.toml")
    line = fails(["--suite", str(suite_file), "--out", str(tmp_path / "out"), "--quiet"])
    assert message in line
    assert not (tmp_path / "out" / "rows.jsonl").exists()


# ---- the typed spec ------------------------------------------------------------------------------------------------
def _with(config_index: int, change: dict, **suite_changes) -> dict:
    configs = [dict(c) for c in SUITE["configs"]]
    configs[config_index] = {k: v for k, v in {**configs[config_index], **change}.items() if v is not None}
    return {"name": "tiny_ct", "kind": "certified_training", **SUITE, "configs": configs, **suite_changes}


def test_the_spec_is_frozen_typed_and_built_once() -> None:
    from benchmarks.kinds.certified_training import CertifiedTrainingSpec, spec_of

    suite = _with(0, {})
    spec = spec_of(suite)
    assert isinstance(spec, CertifiedTrainingSpec) and spec_of(copy.deepcopy(suite)) is spec and spec_of(spec) is spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n = 1  # type: ignore[misc]
    assert (spec.n0, spec.n, spec.alpha, spec.radii) == (10, 60, 0.01, (0.0, 0.25, 0.5))
    assert (spec.images_per_chunk, spec.torch_threads, spec.train_images, spec.resolution) == (2, 1, 64, 16)
    gaussian, macer = spec.configs[0], spec.configs[1]
    assert (gaussian.implementation, gaussian.zoo_entry, gaussian.art, gaussian.epochs) == (
        "art_ext", "digits_cnn_noise025", None, None)
    assert (macer.implementation, macer.zoo_entry, macer.epochs) == ("ART PyTorchMACER", "digits_cnn_noise025", 1)
    assert macer.art_args == (("gaussian_samples", 2), ("lmbda", 4.0))
    assert (macer.train_id, macer.certify_id) == ("train/MACER (ART)", "cert/MACER (ART)")


@pytest.mark.parametrize("suite, message", [
    (_with(1, {"sigma": math.inf}), "configs[1].sigma = inf is invalid; expected a finite number > 0"),
    (_with(1, {"sigma": math.nan}), "configs[1].sigma = nan is invalid; expected a finite number > 0"),
    (_with(0, {"sigma": 0.0}), "configs[0].sigma = 0.0 is invalid; expected a finite number > 0"),
    (_with(1, {"method": "cohen"}), "configs[1].method = 'cohen' is invalid; expected one of 'gaussian'"),
    (_with(1, {"model": "digits_cnn_noise025"}), "configs[1].art: config 'MACER (ART)': give either model"),
    (_with(1, {"art": None}), "configs[1].model: config 'MACER (ART)': give either model (a zoo classifier) or art "
                              "(an ART trainer, with init), not neither"),
    (_with(1, {"init": None}), "configs[1].init: config 'MACER (ART)': art = 'PyTorchMACER' needs init"),
    (_with(0, {"epochs": 2}), "configs[0].epochs: init, art_args and epochs apply to art configs only"),
    (_with(1, {"art": "PyTorchRandomizedSmoothing"}), "configs[1].art = 'PyTorchRandomizedSmoothing' is invalid; "
                                                      "expected one of 'PyTorchMACER'"),
    (_with(1, {"art_args": {"lmbda": "big"}}), "configs[1].art_args = {'lmbda': 'big'} is invalid; expected an inline"),
    (_with(1, {"epochs": 0}), "configs[1].epochs = 0 is invalid; expected an integer >= 1"),
    (_with(0, {"model": "no_such_model"}), "configs[0].model = 'no_such_model' is invalid; expected a zoo classifier"),
    (_with(1, {"init": "no_such_model"}), "configs[1].init = 'no_such_model' is invalid; expected a zoo classifier"),
    (_with(0, {}, n=3, alpha=0.01), "n = 3 with alpha = 0.01 can never certify"),
    (_with(0, {}, alpha=1.0), "alpha = 1.0 is invalid; expected a number > 0 and < 1"),
    (_with(0, {}, radii=[0.0, -0.5]), "radii[1] = -0.5 is invalid; expected a finite number >= 0"),
    (_with(0, {}, radii=[0.0, math.inf]), "radii[1] = inf is invalid; expected a finite number >= 0"),
    (_with(2, {"name": "Gaussian"}), "configs[0].name and configs[2].name give the same name 'Gaussian'"),
    (_with(0, {"name": "MACER_ART_"}), "configs[0].name and configs[1].name give the same weights file name "
                                       "'MACER_ART_'"),
])
def test_the_spec_refuses_each_bad_field_by_name(suite, message) -> None:
    from benchmarks.kinds.certified_training import CertifiedTrainingSpec

    with pytest.raises(common.SuiteError) as err:
        CertifiedTrainingSpec.from_suite(suite)
    assert message in str(err.value)


@pytest.mark.parametrize("config_index, change, message", [
    (2, {"name": "Gaussian"}, "configs[0].name and configs[2].name give the same name 'Gaussian'"),
    (0, {"name": "MACER_ART_"}, "give the same weights file name 'MACER_ART_'"),
    (0, {"epochs": 2}, "configs[0].epochs: init, art_args and epochs apply to art configs only"),
])
def test_cross_field_errors_stop_the_runner_before_any_work(config_index, change, message, tmp_path, write_suite,
                                                             fails) -> None:
    suite = _with(config_index, change)
    suite.pop("name"), suite.pop("kind")
    line = fails(["--suite", str(write_suite("certified_training", **suite, file="bad_ct.toml")), "--out",
                  str(tmp_path / "out"), "--quiet"])
    assert message in line
    assert not (tmp_path / "out" / "rows.jsonl").exists()


def test_paired_differences_against_gaussian_and_art_ext_by_hand() -> None:
    """Synthetic rows (no training): ΔACR is the mean over the shared images of the credited radius (radius when the
    certificate is the label, else 0) minus the reference's, with the sample-SD standard error; an ART row is paired
    with art_ext's model of the same method and σ, art_ext's rows get no ART column."""
    from benchmarks.kinds import certified_training as ct
    from benchmarks.report import certified_training as report

    spec = ct.spec_of(SUITE)
    radii = {  # per config: (certified label, radius) for images 0, 1, 2 (every label is 0)
        "Gaussian": [(0, 0.2), (0, 0.4), (3, 0.5)],
        "MACER (ART)": [(0, 0.6), (-1, 0.0), (0, 0.3)],
        "SmoothAdv (ART)": [(0, 0.2), (0, 0.4), (3, 0.5)],
    }
    rows = [{"kind": "certify", "name": name, "index": i, "label": 0, "certified_label": c, "radius": r,
             "seconds": 1.0, "implementation": "x"}
            for name, pairs in radii.items() for i, (c, r) in enumerate(pairs)]
    mine = dataclasses.replace(spec, configs=(*spec.configs[:3], dataclasses.replace(
        spec.configs[0], name="MACER (art_ext)", method="macer", model="digits_cnn_noise025")))
    rows += [{**r, "name": "MACER (art_ext)"} for r in rows if r["name"] == "Gaussian"]
    by_name = {s["name"]: s for s in ct.summarize(mine, rows)}

    # MACER (ART) minus Gaussian: (0.6 - 0.2, 0 - 0.4, 0.3 - 0) = (0.4, -0.4, 0.3)
    diff = [0.4, -0.4, 0.3]
    mean = sum(diff) / 3
    se = math.sqrt(sum((d - mean) ** 2 for d in diff) / 2 / 3)
    assert by_name["MACER (ART)"]["delta_acr_vs_gaussian"] == pytest.approx(mean, abs=1e-12)
    assert by_name["MACER (ART)"]["delta_acr_se"] == pytest.approx(se, abs=1e-12)
    # its art_ext counterpart certifies as Gaussian does here, so ART minus art_ext is the same difference
    assert by_name["MACER (ART)"]["delta_acr_vs_art_ext"] == pytest.approx(mean, abs=1e-12)
    assert by_name["MACER (ART)"]["delta_acr_vs_art_ext_se"] == pytest.approx(se, abs=1e-12)
    # SmoothAdv (ART) has no art_ext counterpart in this suite; art_ext's rows get no ART column
    assert "delta_acr_vs_art_ext" not in by_name["SmoothAdv (ART)"]
    assert "delta_acr_vs_art_ext" not in by_name["MACER (art_ext)"]
    # same-kernel: identical rows, so every paired difference is x - x, exactly 0 on any CPU
    assert by_name["SmoothAdv (ART)"]["delta_acr_vs_gaussian"] == 0.0
    table = report.markdown_table(mine, list(by_name.values()))
    assert "| ΔACR vs Gaussian | ΔACR ART − art_ext |" in table
    macer_art = next(line for line in table.splitlines() if line.startswith("| MACER (ART) |"))
    assert f"| +0.100 ± {se:.3f} | +0.100 ± {se:.3f} |" in macer_art  # signed, both columns (mean = 0.3 / 3)


def _selection() -> list[dict[str, Any]]:
    from benchmarks.report import certified_training as report

    path = Path(__file__).resolve().parents[2] / "docs" / "results" / "certified_training" / report.SELECTION_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_committed_selection_names_every_shipped_certified_entry_as_chosen() -> None:
    from art_ext.zoo.catalogue.certified import ENTRIES
    from benchmarks.report import certified_training as report

    table = report.selection_table(_selection())
    chosen = {line.split("|")[3].strip(" `") for line in table.splitlines() if line.endswith("| yes |")}
    assert chosen == {e.name for e in ENTRIES}
    assert table.count("| (baseline) |") == 2


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[:1] + rows[2:], "no record of the shipped digits_cnn_smoothadv025"),
    (lambda rows: [{**r, "fingerprint": "000000000000"} if i == 2 else r for i, r in enumerate(rows)],
     "is not a candidate"),
    (lambda rows: [{**r, "val_acr": 0.9} if i == 2 else r for i, r in enumerate(rows)],
     "not the highest validation ACR"),
    (lambda rows: [{**r, "fingerprint": "000000000000"} if i == 0 else r for i, r in enumerate(rows)],
     "is not the shipped model"),
])
def test_a_selection_that_drifts_from_the_zoo_is_refused(change, message) -> None:
    from benchmarks.report import certified_training as report

    rows = _selection()
    assert rows[1]["name"] == "digits_cnn_smoothadv025" and rows[0]["method"] == "gaussian"  # what the cases edit
    with pytest.raises(ValueError, match=message):
        report.selection_table(change(rows))


def test_the_shift_ablation_pairs_each_record_with_its_shipped_model() -> None:
    """A ``--max-shift 0`` record is shown beside the shipped model of its name (Δ = its val ACR minus the shipped
    one's) and kept out of the selection table; a record that is not the shipped recipe with other shifts, or whose
    shipped model has no record, is refused."""
    from benchmarks.report import certified_training as report
    from benchmarks.sweep_certified_training import shipped_method, sweep_entry

    rows = [r for r in _selection() if "max_shift" not in r or r["max_shift"] == 2]
    assert report.shift_ablation_table(rows) is None
    macer = sweep_entry("macer", 0.5, shipped_method("macer", 0.5), 0)
    shipped = next(r for r in rows if r["name"] == "digits_cnn_macer050")
    record = {**shipped, "fingerprint": macer.fingerprint(), "max_shift": 0, "val_acr": shipped["val_acr"] + 0.25,
              "val_certified_accuracy_r0": 0.5}
    table = report.shift_ablation_table([*rows, record])
    assert table is not None
    line = next(line for line in table.splitlines() if "`digits_cnn_macer050`" in line)
    assert f"| {shipped['val_acr']:.3f} | 0 | {shipped['val_acr'] + 0.25:.3f} | +0.250 |" in line
    assert report.selection_table([*rows, record]) == report.selection_table(rows)  # not a selection candidate
    with pytest.raises(ValueError, match="is not the shipped recipe with other shifts"):
        report.shift_ablation_table([*rows, {**record, "fingerprint": shipped["fingerprint"]}])
    with pytest.raises(ValueError, match="has no record of the shipped model beside it"):
        report.shift_ablation_table([r for r in rows if r is not shipped] + [record])

    # an ART model of the same entry and σ (sweep --art-run) fills the ART column of that row, and only that row
    art = {"name": "digits_cnn_macer050", "method": "macer", "sigma": 0.5, "implementation": "ART PyTorchMACER",
           "sha256": "0" * 64, "max_shift": 0, "val_acr": 0.7, "val_certified_accuracy_r0": 0.8}
    table = report.shift_ablation_table([*rows, record, art])
    assert table is not None and "| Δ val ACR | val ACR, ART |" in table
    line = next(line for line in table.splitlines() if "`digits_cnn_macer050`" in line)
    assert f"| +0.250 | 0.700 | {100 * shipped['val_certified_accuracy_r0']:.1f} / 50.0 |" in line
    assert report.selection_table([*rows, record, art]) == report.selection_table(rows)
    with pytest.raises(ValueError, match="ART records without an ablation row of their zoo entry: digits_cnn_macer025"):
        report.shift_ablation_table([*rows, record, {**art, "name": "digits_cnn_macer025", "sigma": 0.25}])
