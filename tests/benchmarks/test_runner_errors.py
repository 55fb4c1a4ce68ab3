"""The runner fails like a tool: one-line errors with exit status 2, everything checked before the first example,
no manifest left by a failed start, the refusal naming what differs, ``--list``, and what ``--limit`` bounds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from benchmarks import common, run
from benchmarks.kinds import KINDS

LENET, MLP = {"model": "digits_lenet", "sigma": 0.25}, {"model": "digits_mlp", "sigma": 0.5}  # the tiny suite's


def test_list_names_every_suite_with_kind_and_description(capsys):
    assert run.main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    shipped = sorted(common.SUITES_DIR.glob("*.toml"))
    assert len(out) == len(shipped)
    for line, path in zip(out, shipped, strict=True):
        suite = common.load_suite(str(path))
        assert line.split()[0] == path.stem and line.split()[1] == suite["kind"]
        assert line.endswith(suite["description"])


def test_unknown_suite_names_the_known_ones(fails):
    line = fails(["--suite", "nope"])
    assert "unknown suite 'nope'" in line and "default" in line and "smoothed_inference" in line


def test_malformed_toml_names_its_line(tmp_path, fails):
    path = tmp_path / "tiny.toml"
    path.write_text('kind = "certify"\nn0 = 10\nn = = 3\n')
    line = fails(["--suite", str(path), "--out", str(tmp_path / "out")])
    assert "is not valid TOML" in line and "line 3" in line
    assert not (tmp_path / "out").exists()


def test_unknown_key_in_a_config_names_it_and_the_known_keys(tmp_path, tiny_suite, fails):
    path = tiny_suite(configs=[{"model": "digits_lenet", "simga": 3}, MLP])
    line = fails(["--suite", str(path), "--out", str(tmp_path / "out")])
    known = ("known keys of configs[0]: denoiser, final_alpha_share, futility, grid, method, model, multistep, n_max, "
             "num_steps, row, sequential_method, sigma, top_alpha_share")
    assert "unknown key 'configs[0].simga'" in line and known in line


def test_unknown_top_level_and_nested_variant_keys(tmp_path, tiny_suite, fails):
    path = tiny_suite(samples=3)
    assert "unknown key 'samples'; known keys: alpha, batch_size" in fails(["--suite", str(path)])
    attacks = (common.SUITES_DIR / "attacks.toml").read_text()
    (tmp_path / "a.toml").write_text(attacks.replace('{ name = "pgd" },', '{ name = "pgd", samples = 8 },', 1))
    line = fails(["--suite", str(tmp_path / "a.toml")])
    assert "unknown key 'targets[0].attacks[1].samples'" in line and "num_random_init" in line


def test_invalid_value_in_a_later_config_is_found_before_any_row(tmp_path, tiny_suite, fails):
    out = tmp_path / "out"
    line = fails(["--suite", str(tiny_suite(configs=[LENET, {**MLP, "sigma": 0}])), "--out", str(out)])
    assert "configs[1].sigma = 0 is invalid; expected a number > 0" in line
    assert not out.exists()  # the first config (valid) never ran: no folder, no rows, no manifest


def _first_model(model: str) -> dict:
    return {"configs": [{**LENET, "model": model}, MLP]}


@pytest.mark.parametrize("changes, expected", [
    ({"n0": None}, "missing key 'n0'"),
    ({"kind": "certfy"}, "unknown kind 'certfy'; known kinds: attacks, bn_adaptation"),
    ({"alpha": 1.5}, "alpha = 1.5 is invalid; expected a number > 0 and < 1"),
    ({"radii": "0.25"}, "radii = '0.25' is invalid; expected a non-empty list"),
    ({"dataset": "mnist"}, "dataset = 'mnist' is invalid; expected a dataset reference"),
    (_first_model("Wong2020Fast"), "unknown zoo classifier 'Wong2020Fast'"),
    (_first_model("robustbench:Wong2020Fast"), "needs a model folder: pass --model-dir"),
    ({"dataset": "cifar10"}, "needs a data root: pass --data-root DIR"),
    (_first_model("file:nowhere.pt"), "nowhere.pt not found"),
])
def test_invalid_suites_fail_in_one_line(tmp_path, tiny_suite, fails, changes, expected, monkeypatch):
    monkeypatch.delenv("ART_EXT_MODEL_DIR", raising=False)
    monkeypatch.delenv("ART_EXT_DATA_ROOT", raising=False)
    path = tiny_suite(**changes)
    assert expected in fails(["--suite", str(path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_bad_options_fail_in_one_line(tiny_suite, fails):
    path = str(tiny_suite())
    assert "--limit must be >= 1, got 0" in fails(["--suite", path, "--limit", "0"])
    assert "--device 'tpu'" in fails(["--suite", path, "--device", "tpu"])
    assert "unrecognized arguments: --sed" in fails(["--suite", path, "--sed", "1"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:0"])
def test_cuda_without_cuda_is_a_message_and_leaves_no_folder(tmp_path, tiny_suite, fails, device):
    out = tmp_path / "out"
    line = fails(["--suite", str(tiny_suite()), "--out", str(out), "--device", device])
    assert f"--device '{device}': CUDA is not available" in line and "use --device cpu" in line
    assert not out.exists()


def test_gpu_is_cuda():
    if torch.cuda.is_available():
        assert run.resolve_device("gpu") == torch.device("cuda")
        assert run.resolve_device("gpu:0") == torch.device("cuda:0")
    else:
        with pytest.raises(common.SuiteError, match="CUDA is not available"):
            run.resolve_device("gpu")
    assert run.resolve_device("cpu") == torch.device("cpu")


def test_failed_run_without_rows_leaves_no_blocking_manifest(tmp_path, tiny_suite, monkeypatch):
    from benchmarks.kinds import certify as kind

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the first unit")

    path, out = str(tiny_suite()), tmp_path / "out"
    monkeypatch.setattr(kind, "certify", broken)
    with pytest.raises(RuntimeError, match="simulated failure"):  # a computation error is raised, not hidden
        run.main(["--suite", path, "--out", str(out), "--quiet"])
    assert not out.exists()
    out.mkdir()  # a folder the user made stays, but holds no manifest
    with pytest.raises(RuntimeError):
        run.main(["--suite", path, "--out", str(out), "--quiet", "--seed", "3"])
    assert out.is_dir() and list(out.iterdir()) == []
    monkeypatch.undo()
    assert run.main(["--suite", path, "--out", str(out), "--quiet"]) == 0  # another seed now starts cleanly
    assert len(common.read_rows(out)) == 4


def test_refusal_names_the_field_that_differs(tmp_path, tiny_suite, fails, capsys):
    path, out = tiny_suite(), tmp_path / "out"
    assert run.main(["--suite", str(path), "--out", str(out), "--quiet", "--limit", "1"]) == 0
    capsys.readouterr()
    before = (out / "rows.jsonl").read_text()
    line = fails(["--suite", str(path), "--out", str(out), "--quiet", "--limit", "2"])
    assert "holds a different run (limit: 1 there vs 2 here; --limit option: 1 there vs 2 here)" in line
    assert "seed: 0 there vs 4 here" in fails(["--suite", str(path), "--out", str(out), "--limit", "1", "--seed", "4"])
    tiny_suite(n=60)  # rewrites the file at path
    assert "suite (n: 50 there vs 60 here)" in fails(["--suite", str(path), "--out", str(out), "--limit", "1"])
    assert (out / "rows.jsonl").read_text() == before  # refused runs touched nothing


def _plan(suite: str, tmp_path: Path, data_root: Path | None = None, model_dir: Path | None = None) -> run.Plan:
    args = argparse.Namespace(suite=suite, out=tmp_path / suite, resume=False, limit=None, device="cpu", seed=0,
                              data_root=data_root, model_dir=model_dir)
    return run.plan(args)


def _file_roots(suite: dict, tmp_path: Path) -> tuple[Path | None, Path | None]:
    """A CIFAR-10 root and torch-format files at every robustbench: path a suite names (prepare checks files are
    present and in a torch format, never loads them)."""
    from art_ext.testing import write_cifar10_root
    from benchmarks import references

    data_root = model_dir = None
    if suite.get("dataset") == "cifar10":
        data_root = tmp_path / "data"
        write_cifar10_root(data_root, per_batch=1)
    refs = [m if isinstance(m, str) else m["model"] for m in suite.get("models", [])]
    for ref in map(references.parse_model, refs):
        if ref.scheme == "robustbench":
            model_dir = tmp_path / "models"
            path = ref.file(references.Roots(model_dir=model_dir))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({}, path)
    return data_root, model_dir


@pytest.mark.parametrize("path", sorted(common.SUITES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_suite_passes_its_schema(path, tmp_path):
    plan = _plan(path.stem, tmp_path, *_file_roots(common.load_suite(path.stem), tmp_path))
    assert plan.kind is KINDS[plan.suite["kind"]] and not plan.out.exists()


# ---- what --limit bounds ---------------------------------------------------------------------------------------
def test_limit_bounds_the_smoothed_inference_validation_part():
    from benchmarks.kinds import smoothed_inference as kind

    suite = common.load_suite("smoothed_inference")
    assert kind._splits(suite, 100) == [("val", 100, 2), ("test", 100, 5)]  # without --limit: as before
    assert kind._splits(suite, 7, 7) == [("val", 7, 2), ("test", 7, 5)]
    assert kind._splits(suite, 500, 500)[0] == ("val", 100, 2)  # never more than val_limit


def test_limit_bounds_every_part_of_bn_adaptation(tmp_path, monkeypatch):
    from benchmarks.kinds import bn_adaptation as kind

    seen: dict[str, set[int]] = {"accuracy": set(), "certify": set()}

    def fake_accuracy(model, data, **kwargs):
        seen["accuracy"].add(len(data))
        return 0.5

    def fake_certify(suite, ctx, clean, test):
        seen["certify"].add(len(test.head(ctx.limit)))

    monkeypatch.setattr(kind, "accuracy", fake_accuracy)
    monkeypatch.setattr(kind, "run_certify", fake_certify)
    suite = common.load_suite("bn_adaptation")
    suite.update(seeds=1, torch_threads=None)
    suite["noise_accuracy"] = {"models": ["digits_cnn"], "sigmas": [0.5]}
    suite["ablation"] = {**suite["ablation"], "model": "digits_cnn", "rhos": [1.0], "adaptation_sizes": [8]}
    for limit_option, expected in ((None, {"accuracy": {500}, "certify": {50}}),
                                   (3, {"accuracy": {3}, "certify": {3}})):
        seen = {"accuracy": set(), "certify": set()}
        ctx = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=limit_option or 50,
                                verbose=False, limit_option=limit_option)
        kind.run(suite, ctx)
        ctx.close()
        assert seen == expected
        (tmp_path / common.ROWS_FILE).unlink()


def test_manifest_records_the_limit_option_and_references(tmp_path, tiny_suite):
    out = tmp_path / "out"
    assert run.main(["--suite", str(tiny_suite()), "--out", str(out), "--quiet", "--limit", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["limit"] == 1 and manifest["limit_option"] == 1
    assert manifest["references"]["dataset"] == {"reference": "digits", "split": "test"}
    assert set(manifest["references"]["models"]) == {"digits_lenet", "digits_mlp"}
