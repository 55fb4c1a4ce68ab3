"""The attacks kind on a tiny suite: one clean accuracy per target, 'none' = clean, timings exclude model loading,
resume equals an uninterrupted run, an eps grid, and the report from rows."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import common, run
from benchmarks.kinds import attacks as kind

SUITE = {
    "kind": "attacks", "description": "tiny attacks suite", "limit": 6, "chunk": 3, "eps": 0.5, "norm": "l2",
    "max_iter": 3, "score_draws": 4,
    "targets": [{"name": "standard", "model": "digits_cnn", "deployment": "plain",
                 "attacks": [{"name": "none"}, {"name": "pgd"}]},
                {"name": "smoothed", "model": "digits_cnn_noise050", "deployment": "smoothed", "sigma": 0.5,
                 "smoothing_samples": 4,
                 "attacks": [{"name": "none"}, {"name": "pgd"}, {"name": "epgd", "samples": 2}]}],
}

LOAD_SECONDS = 1000.0  # what the fake loader adds to the fake clock


class FakeClock:
    """A clock that advances 1 ms per reading and LOAD_SECONDS per model load: a row's recorded time shows exactly
    whether a load fell inside its timed span (no real timing involved)."""

    def __init__(self) -> None:
        self.now, self.loads = 0.0, 0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    real_load = kind.load_module

    def slow_load(*args):
        fake.now += LOAD_SECONDS
        fake.loads += 1
        return real_load(*args)

    monkeypatch.setattr(kind, "clock", fake)
    monkeypatch.setattr(kind, "load_module", slow_load)
    return fake


@pytest.fixture
def attacks_suite(write_suite):
    """``attacks_suite(eps=0.5)`` writes SUITE at that eps."""
    return lambda eps=0.5: write_suite(**{**SUITE, "eps": eps}, file="tiny_attacks.toml")


@pytest.mark.slow
def test_clean_once_per_target_none_is_clean_and_timing_excludes_loading(tmp_path, attacks_suite, clock):
    suite_file = attacks_suite()
    out = tmp_path / "full"
    assert run.main(["--suite", str(suite_file), "--out", str(out), "--quiet"]) == 0
    rows = common.read_rows(out)
    assert clock.loads == 2  # one load per target, before its work units
    assert all(r["seconds"] < 1.0 for r in rows)  # a load inside a timed span would add 1000 / 3 s per image
    assert {r["config"] for r in rows} == {"standard/clean", "standard/pgd", "smoothed/clean", "smoothed/pgd",
                                           "smoothed/epgd(samples=2)"}  # 'none' computes nothing of its own
    suite = common.load_suite(str(suite_file))
    summary = kind.summarize(suite, rows)
    for target in ("standard", "smoothed"):
        mine = [s for s in summary if s["target"] == target]
        clean = [r for r in rows if r["config"] == f"{target}/clean"]
        expected = sum(r["clean_rate"] for r in clean) / len(clean)
        assert len(mine) == len(suite["targets"][0 if target == "standard" else 1]["attacks"])
        assert all(s["clean"] == pytest.approx(expected) for s in mine)  # one clean accuracy for every row
        none = next(s for s in mine if s["attack"] == "none")
        assert none["robust_mean"] == none["clean"] and none["clean_se"] == none["robust_mean_se"]
        assert none["robust_worst"] == pytest.approx(sum(r["clean_all_draws"] for r in clean) / len(clean))
    assert all(r["draws"] == 4 for r in rows if r["target"] == "smoothed")  # randomized: k draws, clean included
    pgd = next(s for s in summary if s["config"] == "standard/pgd")
    assert pgd["robust_mean"] < pgd["clean"]  # the attack does something, so 'none' == clean is not vacuous
    text = (out / "summary.md").read_text()
    assert "one-off model training and loading are excluded" in text
    assert "Plot `robust_accuracy.png`" in text and "6 images" in text and "seed 0" in text


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run_and_report_regenerates(tmp_path, attacks_suite, clock):
    suite_file = attacks_suite()
    full, partial = tmp_path / "full", tmp_path / "partial"
    assert run.main(["--suite", str(suite_file), "--out", str(full), "--quiet"]) == 0
    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet"]) == 0
    lines = (partial / "rows.jsonl").read_text().splitlines(keepends=True)
    cut = len(lines) - 4  # lose the last three rows and half of a fourth
    (partial / "rows.jsonl").write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    assert run.main(["--suite", str(suite_file), "--out", str(partial), "--quiet"]) == 0

    def untimed(rows):
        return sorted(json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True) for r in rows)

    assert untimed(common.read_rows(partial)) == untimed(common.read_rows(full))
    suite, manifest = common.load_suite(str(suite_file)), json.loads((full / "manifest.json").read_text())
    again = tmp_path / "again"
    again.mkdir()
    assert kind.report(suite, common.read_rows(full), again, manifest) == (full / "summary.md").read_text()
    assert (again / "summary.json").read_text() == (full / "summary.json").read_text()


@pytest.mark.slow
def test_eps_grid_runs_every_attack_at_every_radius(tmp_path, attacks_suite, clock):
    suite_file = attacks_suite(eps=[0.25, 1.0])
    out = tmp_path / "grid"
    assert run.main(["--suite", str(suite_file), "--out", str(out), "--quiet", "--limit", "3"]) == 0
    configs = {r["config"] for r in common.read_rows(out)}
    assert {"standard/pgd@eps=0.25", "standard/pgd@eps=1", "smoothed/epgd(samples=2)@eps=1"} <= configs
    summary = json.loads((out / "summary.json").read_text())
    pgd = {s["eps"]: s for s in summary if s["target"] == "standard" and s["attack"] == "pgd"}
    assert set(pgd) == {0.25, 1.0} and pgd[1.0]["robust_mean"] <= pgd[0.25]["robust_mean"]
    assert "| standard | pgd | 1 | 3 |" in (out / "summary.md").read_text()


def test_eps_must_be_a_number_or_a_grid(tmp_path, attacks_suite, capsys):
    suite_file = attacks_suite(eps="big")
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(suite_file), "--out", str(tmp_path / "x"), "--quiet"])
    assert refused.value.code == 2 and "eps = 'big' is invalid; expected a number > 0 (finite) or a list" in \
        capsys.readouterr().err


def test_a_denoised_target_is_scored_as_a_fixed_function():
    """The denoised deployment's base (denoiser then classifier) is built in eval mode: scoring it under keyed noise
    must not meet the fixed-function guard (the shipped attacks suite scores such a target)."""
    from art_ext.models import DnCNN
    from art_ext.smoothing import NoiseKeys
    from art_ext.testing import tiny_cnn, tiny_images
    from benchmarks.image_keys import score_deployment
    from benchmarks.kinds.attacks import deploy
    from benchmarks.specs import TargetSpec

    models = {"model": tiny_cnn(size=8), "denoiser": DnCNN(in_channels=1, depth=3, width=4).eval()}
    spec = TargetSpec(name="t", model="digits_cnn", deployment="denoised", attacks=(), sigma=0.25, smoothing_samples=4,
                      denoiser="digits_dncnn_stabmse_025")
    target = deploy(spec, models, 10, torch.Generator().manual_seed(0))
    assert not target.base.training and target.randomized and target.sigma_pixel == 0.25
    x, y = tiny_images(3), torch.tensor([0, 1, 2])
    score = score_deployment(target, x, y, NoiseKeys.from_seed(0, range(3)), draws=2)
    assert 0.0 <= score.mean_accuracy <= 1.0


def test_every_attack_output_is_projected_before_scoring(monkeypatch):
    """The attacks kind passes every attack's output through the deployment's one final projection: an attack that
    returns a point outside the eps-ball and the bounds is scored at its projection."""
    from art_ext.ops.norms import lp_norm
    from art_ext.smoothing import NoiseKeys
    from art_ext.testing import tiny_cnn, tiny_images
    from benchmarks.kinds import attacks as kind
    from benchmarks.specs import TargetSpec

    monkeypatch.setattr(kind, "pgd", lambda model, x, y, cfg, keys=None: x + 3.0)
    from benchmarks.specs import AttackSpec, AttacksSpec

    target = kind.deploy(TargetSpec(name="t", model="digits_cnn", deployment="plain", attacks=()),
                         {"model": tiny_cnn(size=8)}, 10, None)
    x, y = tiny_images(3), torch.tensor([0, 1, 2])
    pgd = AttackSpec.from_table({"name": "pgd"})
    spec = AttacksSpec.from_suite({"eps": 0.5, "norm": "l2", "max_iter": 2, "targets": []})
    x_adv, _ = kind.run_attack(spec, pgd, target, x, y, NoiseKeys.from_seed(0, range(3)))
    assert (lp_norm(x_adv - x, "l2") <= 0.5 * (1 + 1e-5)).all() and x_adv.min() >= 0 and x_adv.max() <= 1
