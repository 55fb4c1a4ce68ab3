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


# ---- the four kinds that computed from the raw suite: typed, frozen, defaults resolved once ---------------------
def test_the_certify_spec_resolves_defaults_and_sequential_settings_once():
    from benchmarks.kinds import certify

    suite = common.load_suite("sequential")
    spec = certify.spec_of(suite)
    assert spec is certify.spec_of(suite)  # built once per process and suite
    assert (spec.n0, spec.n, spec.alpha, spec.images_per_chunk, spec.paper_table) == (100, 10000, 0.001, 50, False)
    fixed, grid = spec.configs[0], spec.configs[1]
    assert fixed.sequential is None and fixed.row == "noise025 fixed-n" and fixed.method == "cohen"
    assert grid.sequential is not None and grid.sequential.n_max == 10000
    assert grid.sequential.grid == (0.25, 0.5, 0.75, 1.0) and grid.sequential.method == "staged_cp"
    assert grid.id.endswith("/sequential(staged_cp,n_max=10000,grid=0.25,0.5,0.75,1)")
    assert [c.id for c in spec.configs] == [cid for _, cid in KINDS["certify"].config_ids(suite)]
    with pytest.raises(AttributeError):
        grid.sigma = 1.0  # type: ignore[misc]
    denoised = certify.spec_of(common.load_suite("denoised_smoothing"))
    assert denoised.paper_table and denoised.paper_radii == (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    assert denoised.configs[1].labels == {"denoiser": "digits_dncnn_mse_025", "row": "MSE"}


def test_a_sequential_n_max_that_cannot_certify_names_its_config(tmp_path, tiny_suite, fails):
    configs = [LENET, {**MLP, "method": "sequential", "n_max": 5, "grid": [0.25]}]
    line = fails(["--suite", str(tiny_suite(configs=configs)), "--out", str(tmp_path / "out")])
    assert "configs[1].n_max: n = 5 with alpha = 0.01 can never certify" in line


def test_the_bn_adaptation_spec_holds_its_three_parts_typed():
    from benchmarks.kinds import bn_adaptation

    spec = bn_adaptation.spec_of(common.load_suite("bn_adaptation"))
    assert (spec.seeds, spec.adaptation_images, spec.torch_threads, spec.limit) == (5, 500, 1, 50)
    assert spec.noise_accuracy.sigmas == (0.0, 0.25, 0.5, 0.75) and spec.ablation.adaptation_sizes[-1] == 1000
    assert (spec.certify.rho, spec.certify.images_per_chunk, spec.certify.sigma) == (1.0, 10, 0.5)
    assert [(c.id, c.adapt, c.auto) for c in spec.certify.configs][:2] == [
        ("cert/AT-L2 (σ=0.5)", False, False), ("cert/AT-L2 + Auto-Noise", False, True)]
    with pytest.raises(AttributeError):
        spec.certify.n = 1  # type: ignore[misc]


def test_the_smoothed_inference_spec_resolves_its_seeds_and_attack_defaults():
    from benchmarks.kinds import smoothed_inference

    suite = common.load_suite("smoothed_inference")
    spec = smoothed_inference.spec_of(suite)
    assert (spec.val_seeds, spec.test_seeds, spec.images_per_chunk) == (2, 5, 100)
    assert spec.attack.num_random_init == 1 and spec.attack.norm == "linf" and spec.num_samples[-1] == 256
    del suite["val_seeds"], suite["test_seeds"]
    suite["attack"].pop("num_random_init")
    spec = smoothed_inference.spec_of(dict(suite, seeds=3))
    assert (spec.val_seeds, spec.test_seeds, spec.attack.num_random_init) == (3, 3, 1)


def test_the_normalized_noise_spec_lists_its_configs_and_the_pairs_they_run():
    from benchmarks.kinds import normalized_noise

    suite = common.load_suite("normalized_noise")
    spec = normalized_noise.spec_of(suite)
    assert (spec.attack_draws, spec.images_per_chunk, spec.split) == (10, 10, "test")
    cohen = next(c for c in spec.configs if c.denoiser is None)
    assert cohen.sigma == 0.25 and cohen.models(spec.transfer_models) == ("digits_cnn_noise025",)
    table_one = spec.configs[0]
    assert table_one.table == "I" and table_one.models(spec.transfer_models) == spec.transfer_models
    pairs = normalized_noise.pairs(suite)
    assert ("digits_mlp", "digits_unet_nn_025", None) in pairs and ("digits_cnn", "digits_unet_nn_050", None) in pairs
    assert not any(model == "digits_cnn_noise025" for model, _, _ in pairs)


# ---- the preflight runs each (model, defence) pair -------------------------------------------------------------------
def test_every_kind_with_denoisers_lists_the_pairs_it_runs():
    certify_pairs = KINDS["certify"].pairs(common.load_suite("denoised_smoothing"))
    assert ("digits_cnn", "digits_dncnn_mse_025", 0.25) in certify_pairs
    assert all(denoiser for _, denoiser, _ in certify_pairs) and len(certify_pairs) == len(set(certify_pairs))
    assert KINDS["certify"].pairs(common.load_suite("default")) == []
    compare = common.load_suite("compare_digits")
    expected = {(m if isinstance(m, str) else m["model"], d.removeprefix("denoiser:"), None)
                for m in compare["models"] for d in compare["defences"] if d.startswith("denoiser:")}
    assert set(KINDS["compare"].pairs(compare)) == expected and expected
    attacks = KINDS["attacks"].pairs(common.load_suite("attacks"))
    assert attacks == [(t["model"], t["denoiser"], t["sigma"]) for t in common.load_suite("attacks")["targets"]
                       if t["deployment"] == "denoised"]


def test_a_denoiser_that_the_classifier_cannot_follow_fails_before_any_row(tmp_path, tiny_suite, fails):
    # each model passes on its own (the CIFAR-10 classifier takes CIFAR-10; the diffusion model needs a sigma, so only
    # its pair runs it), but the digits diffusion model cannot denoise a CIFAR-10 example in front of the classifier
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        classifier = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 10))
    torch.save(classifier.eval(), tmp_path / "cifar.pt")
    ref = f"file+trusted:{tmp_path / 'cifar.pt'}"
    data_root = tmp_path / "data"
    write_cifar10_root(data_root, per_batch=1)
    out = tmp_path / "out"
    suite = tiny_suite(dataset="cifar10", resolution=None, configs=[
        {"model": ref, "sigma": 0.5}, {"model": ref, "denoiser": "digits_ddpm", "sigma": 0.5}])
    line = fails(["--suite", str(suite), "--out", str(out), "--data-root", str(data_root)])
    assert f"the pair denoiser 'digits_ddpm' + model {ref!r} does not take the examples of dataset 'cifar10' (one " \
           "example has shape [1, 3, 32, 32])" in line
    assert not out.exists()
