"""Typed specs and the preflight: the schema holes are one-line errors (exit 2) before any row, naming the config and
the field (infinite sigma, integers beyond int64, an n that cannot certify, colliding config ids, a negative seed,
eps by one rule), a model that does not fit the dataset fails before the first row, and every row that involves
noise records ``noise_space`` and ``sigma_pixel``."""

from __future__ import annotations

import json
import math
from types import MappingProxyType

import pytest

from art_ext.testing import write_cifar10_root
from benchmarks import common, run, specs
from benchmarks.kinds import KINDS

LENET, MLP = {"model": "digits_lenet", "sigma": 0.25}, {"model": "digits_mlp", "sigma": 0.5}
COMPARE = {"norm": "l2", "eps": 0.5, "models": ["digits_cnn"], "defences": ["none"], "attacks": ["none", "pgd"]}


@pytest.mark.parametrize("changes, expected", [
    ({"configs": [LENET, {**MLP, "sigma": math.inf}]}, "configs[1].sigma = inf is invalid; expected a number > 0"),
    ({"n": 2 ** 63}, "n = 9223372036854775808 is invalid; expected an integer >= 1 and <= 2**63 - 1"),
    ({"n": 3, "alpha": 0.01}, "n = 3 with alpha = 0.01 can never certify"),
    ({"configs": [{**LENET, "row": "a"}, {**LENET, "row": "b"}]},
     "configs[0] and configs[1] have the same config id 'digits_lenet@sigma=0.25'"),
])
def test_certify_schema_holes_are_one_line_errors_before_any_row(tmp_path, tiny_suite, fails, changes, expected):
    out = tmp_path / "out"
    assert expected in fails(["--suite", str(tiny_suite(**changes)), "--out", str(out)])
    assert not out.exists()


def test_a_negative_seed_is_refused(tiny_suite, fails):
    assert "--seed must be an integer in [0, 2**63 - 1], got -1" in fails(["--suite", str(tiny_suite()),
                                                                           "--seed", "-1"])


@pytest.mark.parametrize("kind, changes, expected", [
    ("compare", {"models": ["digits_cnn", {"model": "digits_cnn", "norm": "linf", "eps": 0.1}]},
     "models[0] with defences[0] and models[1] with defences[0] have the same config id 'digits_cnn|none'"),
    ("compare", {"defences": ["smoothed_inference:soft"], "sigma": math.inf},
     "sigma = inf is invalid; expected a number > 0 (finite)"),
    ("compare", {"defences": ["smoothed_inference:soft"], "certify": {"n0": 10, "n": 3, "alpha": 0.01}},
     "[certify] n = 3 with alpha = 0.01 can never certify"),
    ("compare", {"eps": [0.5, 0.25, 1.0]}, "expected a number > 0 (finite) or a list of 3 or more strictly increasing"),
])
def test_compare_schema_holes(tmp_path, write_suite, fails, kind, changes, expected):
    path = write_suite(kind, **{**COMPARE, **changes})
    assert expected in fails(["--suite", str(path), "--out", str(tmp_path / "out")])


def _attacks_suite(write_suite, **target_changes):
    attacks = (common.SUITES_DIR / "attacks.toml")
    suite = common.load_suite(str(attacks))
    suite.pop("name")
    suite["targets"] = [{**suite["targets"][0], **target_changes}]
    return write_suite(**suite)


@pytest.mark.parametrize("target_changes, expected", [
    ({"attacks": [{"name": "pgd"}, {"name": "pgd"}]},
     "targets[0].attacks[0] and targets[0].attacks[1] have the same config id"),
    ({"sigma": 0.25}, "targets[0].sigma is set but deployment 'plain' does not read it"),
    ({"attacks": [{"name": "pgd", "eps": 0}]}, "targets[0].attacks[0].eps = 0 is invalid; expected a number > 0"),
])
def test_attacks_schema_holes(tmp_path, write_suite, fails, target_changes, expected):
    assert expected in fails(["--suite", str(_attacks_suite(write_suite, **target_changes)),
                              "--out", str(tmp_path / "out")])


def test_a_digits_model_in_a_cifar10_suite_fails_before_any_row(tmp_path, tiny_suite, fails):
    data_root = tmp_path / "data"
    write_cifar10_root(data_root, per_batch=1)
    out = tmp_path / "out"
    line = fails(["--suite", str(tiny_suite(dataset="cifar10", resolution=None)), "--out", str(out),
                  "--data-root", str(data_root)])
    assert "model 'digits_lenet' does not take the examples of dataset 'cifar10' (one example has shape " \
           "[1, 3, 32, 32])" in line
    assert not out.exists()


def test_build_gives_a_frozen_typed_spec():
    suite = common.load_suite("default")
    spec = specs.build(suite, KINDS["certify"], "suite 'default'")
    assert (spec.name, spec.kind, spec.dataset, spec.split, spec.resolution, spec.limit) == \
        ("default", "certify", "digits", "test", 16, 200)
    assert spec.config_ids == ("digits_cnn@sigma=0.25", "digits_cnn_noise025@sigma=0.25", "digits_cnn@sigma=0.5",
                               "digits_cnn_noise050@sigma=0.5")
    assert isinstance(spec.suite, MappingProxyType) and isinstance(spec.suite["configs"], tuple)
    with pytest.raises(TypeError):
        spec.suite["configs"][0]["sigma"] = 1.0  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_rows_that_involve_noise_record_noise_space_and_pixel_sigma(tmp_path, tiny_suite):
    out = tmp_path / "out"
    assert run.main(["--suite", str(tiny_suite()), "--out", str(out), "--quiet", "--limit", "1"]) == 0
    rows = [json.loads(line) for line in (out / common.ROWS_FILE).read_text().splitlines()]
    assert {(r["sigma"], r["noise_space"], r["sigma_pixel"]) for r in rows} == {
        (0.25, "PixelNoise()", 0.25), (0.5, "PixelNoise()", 0.5)}


def test_the_attacks_kind_spec_keeps_its_config_ids():
    suite = common.load_suite("attacks")
    spec = specs.attacks_spec(suite)
    assert spec.eps == (0.5,) and not spec.grid and spec.norm == "l2" and spec.score_draws == 10
    quantised = spec.targets[1]
    assert quantised.deployment == "quantised" and quantised.sigma is None
    # the label (and so the config id) names every parameter as the suite writes it
    assert [a.label for a in quantised.attacks] == ["none", "pgd", "bpda_pgd(eps_step=0.01)", "bpda_pgd",
                                                   "nattack(max_queries=10000, nes_iter=200, pop_size=100)"]
    assert quantised.attacks[2].eps_step == 0.01 and quantised.attacks[4].max_queries == 10000
    with pytest.raises(AttributeError):
        spec.targets[0].name = "other"  # type: ignore[misc]
    ids = [cid for _, cid in KINDS["attacks"].config_ids(suite)]
    assert "quantised(digits_cnn, 4 levels)/bpda_pgd(eps_step=0.01)" in ids and len(ids) == len(set(ids))
