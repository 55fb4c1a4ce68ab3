"""The ``compare`` suite kind: the robustbench_cifar10 suite offline end to end (tiny CIFAR-10 root, random-init
RobustBench checkpoints of the real architectures), schema errors before any work, the rigor checks on models built to
trip them, the per-example worst case over attacks, and clean accuracy computed once per (model, defence)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from art_ext.deployment import Deployment
from art_ext.testing import write_cifar10_root
from benchmarks import common, run
from benchmarks.kinds import compare
from benchmarks.kinds.compare.spec import CompareSpec
from benchmarks.report import binomial_se

SUITE = common.SUITES_DIR / "robustbench_cifar10.toml"


def robustbench_architecture(name: str, threat: str) -> nn.Module:
    """A RobustBench zoo architecture with random weights (seed 0), as tests/benchmarks/test_references.py builds."""
    from art_ext.models import robustbench as rb

    rb._install_import_shims()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_dicts[BenchmarkDataset.cifar_10][ThreatModel(threat)][name]["model"]().eval()


def small_copy(path: Path, tmp_path: Path, replacements: dict[str, str]) -> Path:
    """The suite file with some top-level lines replaced (small attack budgets for a test run)."""
    text = path.read_text()
    for key, value in replacements.items():
        text, count = re.subn(rf"^{re.escape(key)} = .*$", f"{key} = {value}", text, flags=re.M)
        assert count == 1, key
    out = tmp_path / path.name
    out.write_text(text)
    return out


@pytest.fixture
def offline_robustbench(tmp_path, monkeypatch):
    from art_ext.models import robustbench as rb

    rb._install_import_shims()
    import robustbench.utils

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(robustbench.utils, "download_gdrive", no_download, raising=False)
    write_cifar10_root(tmp_path / "data", per_batch=4)
    for name, threat in (("Wong2020Fast", "Linf"), ("Rade2021Helper_R18_ddpm", "Linf"),
                         ("Rice2020Overfitting", "L2")):
        path = tmp_path / "models" / "cifar10" / threat / f"{name}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(robustbench_architecture(name, threat).state_dict(), path)
    return tmp_path


@pytest.mark.slow
def test_robustbench_cifar10_runs_offline_end_to_end(offline_robustbench, capsys):
    tmp = offline_robustbench
    suite = small_copy(SUITE, tmp, {"steps": "2", "nattack_iter": "2", "nattack_pop": "4", "nattack_queries": "40",
                                    "chunk": "2",
                                    "attacks": '["none", "pgd", "apgd-ce", "apgd-dlr", "nattack"]'})
    out = tmp / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--limit", "2", "--quiet", "--device", "cpu",
                     "--data-root", str(tmp / "data"), "--model-dir", str(tmp / "models")]) == 0
    rows = common.read_rows(out)
    # clean once: exactly one clean row per (model, defence, image), and one row per attack per image
    configs = Counter(r["config"] for r in rows)
    for model in ("robustbench:Wong2020Fast", "robustbench:Rade2021Helper_R18_ddpm",
                  "robustbench:Rice2020Overfitting:L2"):
        tag = compare.tag_of(model, "none")
        assert configs[f"{tag}/clean"] == 2 and configs[f"{tag}/rigor"] == 2
        eps = 0.5 if model.endswith(":L2") else 0.03137254901960784
        for attack in ("pgd", "apgd-ce", "apgd-dlr", "nattack"):
            assert configs[compare.attack_config(tag, attack, eps)] == 2
    assert {r["norm"] for r in rows if "Rice" in r["model"]} == {"l2"}
    summary = json.loads((out / "summary.json").read_text())
    wong = next(p for p in summary["pairs"] if p["model"] == "robustbench:Wong2020Fast")
    none_row = next(a for a in wong["attacks"] if a["attack"] == "none")
    assert none_row["robust_mean"] == wong["clean_mean"]  # the "none" attack is the clean accuracy, same rows
    # the leaderboard snapshot sits beside our numbers for the same model, threat and eps
    board = {b["model"]: b for b in summary["leaderboard"]}
    assert board["robustbench:Wong2020Fast"]["leaderboard"]["clean"] == pytest.approx(0.8334)
    assert board["robustbench:Rice2020Overfitting:L2"]["leaderboard"]["autoattack"] == pytest.approx(0.6768)
    text = (out / "summary.md").read_text()
    assert "## Leaderboard layout" in text and "| robustbench:Wong2020Fast | 0.0313725 | 2 |" in text
    assert "± one standard error" in text and "## Evaluation-rigor checks" in text
    # a random-init network is far from the leaderboard's clean accuracy on 2 images only when beyond one SE: the
    # flag is computed, not assumed (p = 0 or 1 has SE 0, so any difference is flagged)
    wong_board = board["robustbench:Wong2020Fast"]
    assert ("clean differs" in " ".join(wong_board["flags"])) == (abs(wong_board["clean"] - 0.8334) >
                                                                  binomial_se(wong_board["clean"], 2))


COMPARE_BASE = {"kind": "compare", "norm": "l2", "eps": 0.5, "models": ["digits_cnn"], "defences": ["none"],
                "attacks": ["pgd"]}


@pytest.fixture
def assert_one_line_error(tmp_path, write_suite, capsys):
    """``assert_one_line_error(changes, message)``: COMPARE_BASE with ``changes`` fails with exit 2, one stderr line
    matching ``message``, and no output folder."""

    def check(changes: dict, message: str) -> None:
        path = write_suite(**{**COMPARE_BASE, **changes}, file="bad.toml")
        with pytest.raises(SystemExit) as err:
            run.main(["--suite", str(path), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"])
        assert err.value.code == 2
        stderr = capsys.readouterr().err
        assert len(stderr.strip().splitlines()) == 1 and re.search(message, stderr), stderr
        assert not (tmp_path / "out").exists()

    return check


@pytest.mark.parametrize("changes, message", [
    ({"simga": 3}, "unknown key 'simga'"),
    ({"eps": [0.1, 0.2]}, r"eps = \[0.1, 0.2\] is invalid; expected a number > 0 \(finite\) or a list of 3 or more"),
    ({"defences": ["none", "denoiser:nope"]}, "defences = .* is invalid; expected a list whose every value is 'none'"),
    ({"attacks": ["pgd", "cw"]}, "attacks = .* is invalid"),
    ({"models": [{"model": "digits_cnn", "norm": "l3"}]}, "models = .* is invalid"),
    ({"attacks": ["pgd", "pgd"]}, "without repeated values"),
])
def test_schema_errors_are_one_line_before_any_work(assert_one_line_error, changes, message):
    assert_one_line_error(changes, message)


def test_certify_table_needs_a_smoothed_defence(tmp_path, write_suite, capsys):
    path = write_suite(**COMPARE_BASE, certify={"n0": 10, "n": 100, "alpha": 0.01}, file="bad.toml")
    with pytest.raises(SystemExit):
        run.main(["--suite", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert "[certify] needs a smoothed defence" in capsys.readouterr().err


# ---- rigor checks on models built to trip them ---------------------------------------------------------------------
class Quantised(nn.Module):
    """Bit-depth reduction in front of a classifier: zero input gradient almost everywhere (a masking defence)."""

    def __init__(self, inner: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


@pytest.mark.slow
def test_rigor_checks_flag_randomized_zero_gradient_and_masking_models(tmp_path):
    """The quantised digits_cnn has exactly zero gradients (PGD cannot move) while NAttack still breaks images
    (the gradient-free gap); the noisy model's two identical forwards differ. Traced modules: file: references."""
    from art_ext import zoo

    cnn = zoo.load("digits_cnn").module.eval()
    probe = torch.rand(2, 1, 16, 16)
    for name, module in (("quantised", Quantised(cnn)), ("noisy", Noisy(cnn)), ("plain", cnn)):
        torch.jit.save(torch.jit.trace(module, probe, check_trace=False), str(tmp_path / f"{name}.pt"))
    suite = tmp_path / "rigor.toml"
    suite.write_text(
        'kind = "compare"\ndataset = "digits"\nlimit = 12\nchunk = 12\nnorm = "l2"\neps = 1.5\nsteps = 10\n'
        'nattack_iter = 60\nnattack_pop = 30\nnattack_queries = 2000\nscore_draws = 2\n'
        f'models = ["file:{tmp_path / "quantised.pt"}", "file:{tmp_path / "noisy.pt"}", '
        f'"file:{tmp_path / "plain.pt"}"]\n'
        'defences = ["none"]\nattacks = ["none", "pgd", "nattack"]\n')
    out = tmp_path / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    pairs = {Path(p["model"][5:]).stem: p for p in json.loads((out / "summary.json").read_text())["pairs"]}
    q, n, plain = pairs["quantised"]["rigor"], pairs["noisy"]["rigor"], pairs["plain"]["rigor"]
    assert q["grad_zero_fraction"] == 1.0 and q["randomized_fraction"] == 0.0
    assert q["gradient_free"]["flagged"] and q["gradient_free"]["count"] >= 1
    assert n["randomized_fraction"] == 1.0 and n["grad_zero_fraction"] == 0.0
    assert plain["randomized_fraction"] == 0.0 and plain["grad_zero_fraction"] == 0.0 and not plain["flags"]
    assert len(q["monotonicity"]) == 1 and q["monotonicity"][0]["curve"] == "pgd probe"  # single eps: the probe ran
    text = (out / "summary.md").read_text()
    assert "⚠" in text and "gradient masking symptom" in text


def test_worst_case_over_attacks_is_per_example():
    clean = {0: {"rate": 1.0, "all_draws": True}, 1: {"rate": 1.0, "all_draws": True},
             2: {"rate": 0.0, "all_draws": False}}
    a = {0: {"rate": 0.0, "all_draws": False}, 1: {"rate": 1.0, "all_draws": True}, 2: {"rate": 1.0,
                                                                                         "all_draws": True}}
    b = {0: {"rate": 1.0, "all_draws": True}, 1: {"rate": 0.5, "all_draws": False}, 2: {"rate": 1.0,
                                                                                         "all_draws": True}}
    wc = compare.worst_case({"a": a, "b": b}, clean)
    # each attack alone leaves 2 of 3 robust; per example, only image 1 survives both (at rate 0.5), and the
    # clean-wrong image 2 never counts as robust
    assert wc == {0: (0.0, False), 1: (0.5, False), 2: (0.0, False)}
    assert compare.worst_case({"a": {0: a[0]}}, clean) == {0: (0.0, False)}  # only images every input holds


def test_apgd_leaves_the_global_rng_untouched():
    from art_ext.testing import tiny_cnn

    model = tiny_cnn().eval()
    target = Deployment.plain(model)
    x, y = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    spec = CompareSpec.from_suite({**COMPARE_BASE, "attacks": ["none", "apgd-ce"], "steps": 3})
    compare.run_attack("apgd-ce", spec, "linf", 0.1, target, x, y, seed=7)
    # same-kernel: the global RNG's own draws, not model outputs
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_units_and_their_configs_follow_the_suite():
    suite = {"models": ["digits_cnn", {"model": "digits_mlp", "norm": "linf", "eps": [0.1, 0.2, 0.3]}],
             "norm": "l2", "eps": 0.5, "chunk": 3, "defences": ["none", "smoothed_inference:soft"],
             "attacks": ["none", "pgd", "autoattack"], "attacks_randomized": ["none", "pgd"],
             "certify": {"n0": 1, "n": 2, "alpha": 0.1}}
    todo = compare.units(suite, 5)
    assert len(todo) == 2 * 2 * 2  # models x defences x chunks of 3 over 5 images
    assert todo[0]["indices"] == [0, 1, 2] and todo[1]["indices"] == [3, 4]
    assert {u["norm"] for u in todo if u["model"] == "digits_mlp"} == {"linf"}
    plain = compare.unit_configs(suite, todo[0])
    smoothed = compare.unit_configs(suite, todo[2])
    assert plain == ["digits_cnn|none/clean", "digits_cnn|none/rigor", "digits_cnn|none/pgd@eps=0.5",
                     "digits_cnn|none/autoattack@eps=0.5"]
    # the randomized defence runs attacks_randomized and has a certify table; one clean config for all attacks
    assert smoothed == ["digits_cnn|smoothed_inference:soft/clean", "digits_cnn|smoothed_inference:soft/rigor",
                        "digits_cnn|smoothed_inference:soft/pgd@eps=0.5", "digits_cnn|smoothed_inference:soft/certify"]
    mlp = compare.unit_configs(suite, todo[4])
    assert [c for c in mlp if "/pgd@" in c] == [f"digits_mlp|none/pgd@eps={e}" for e in (0.1, 0.2, 0.3)]


# ---- suite values that were accepted and then failed (or were ignored) only once the work had started --------------
@pytest.mark.parametrize("changes, message", [
    # eps = 0: the single-eps PGD probe at 0.25 / 0.5 / 1 x eps is [0, 0, 0], refused by eps_monotonicity after work
    ({"eps": 0}, r"eps = 0 is invalid; expected a number > 0 .*or a list of 3 or more strictly increasing numbers > "
                 r"0"),
    ({"eps": [0.0, 0.25, 0.5]}, r"eps = \[0.0, 0.25, 0.5\] is invalid; expected a number > 0"),
    ({"eps": math.inf}, r"eps = inf is invalid; expected a number > 0 \(finite\)"),
    ({"models": [{"model": "digits_cnn", "eps": 0}]}, r"models = .* is invalid"),
    # Linf eps in 0-255 units: every image is inside the ball
    ({"norm": "linf", "eps": 8}, r"norm 'linf' with eps 8 for model 'digits_cnn': a Linf budget must be <= 1 "
                                 r"\(\[0, 1\] pixel units; 8/255 = 0.0314\)"),
    ({"models": [{"model": "digits_cnn", "norm": "linf", "eps": 4}]}, r"norm 'linf' with eps 4 for model 'digits_cnn'"),
    # [certify] that can never certify: every image abstains
    ({"defences": ["smoothed_inference:soft"], "certify": {"n0": 10, "n": 5, "alpha": 0.001}},
     r"\[certify\] n = 5 with alpha = 0.001 can never certify .*use n >= 11"),
    # settings nothing in the suite uses (silently ignored before)
    ({"nattack_iter": 50}, r"nattack_iter is set but attacks .* has no 'nattack'"),
    ({"autoattack_attacks": ["apgd-ce"]}, r"autoattack_attacks is set but attacks .* has no 'autoattack'"),
    ({"attacks": ["autoattack"], "autoattack_version": "rand", "autoattack_attacks": ["apgd-ce"]},
     r"autoattack_version and autoattack_attacks are both set"),
    ({"apgd_restarts": 3}, r"apgd_restarts is set but attacks .* has no 'apgd-ce' or 'apgd-dlr'"),
    ({"bn_images": 50}, r"bn_images is set but defences .* has no 'bn_adapt'"),
    ({"smoothing_samples": 4}, r"smoothing_samples is set but defences .* has no randomized defence"),
    ({"sigma": 0.5}, r"sigma is set but defences .* has no 'smoothed_inference:<mode>' or 'bn_adapt'"),
    ({"defences": ["bn_adapt"], "sigma": 0.5, "bn_sigma": 0.25}, r"sigma and bn_sigma are both set"),
])
def test_suite_values_that_cannot_work_are_one_line_errors_before_any_work(assert_one_line_error, changes, message):
    assert_one_line_error(changes, message)


@pytest.mark.parametrize("name", ["compare_digits", "robustbench_cifar10"])
def test_the_shipped_compare_suites_pass_the_checks(name):
    suite = common.load_suite(name)
    common.validate(suite, compare.SCHEMA, name)
    compare.check(suite)


def test_a_normalized_noise_denoiser_is_smoothed_attacked_and_certified_in_its_noise_space(monkeypatch):
    """``denoiser:digits_unet_nn_100`` declares NormalizedNoise (std 0.319) at sigma_n = 1: compare must smooth,
    attack and certify with pixel noise of std 0.319 (not 1.0), record it in every row, and report pixel radii."""
    from types import SimpleNamespace

    from art_ext import zoo
    from art_ext.smoothing import certify
    from art_ext.smoothing.noise import NormalizedNoise
    from benchmarks import references
    from benchmarks.image_keys import image_keys

    entry = zoo.get_entry("digits_unet_nn_100", kind="denoiser")
    identity = nn.Identity()  # stands in for the UNet (its weights are not shipped): the noise is what is checked
    real_load = zoo.load

    def load(name, kind="classifier", device=None, **kwargs):
        if name == "digits_unet_nn_100":
            return SimpleNamespace(module=identity, entry=entry)
        return real_load(name, kind=kind, device=device, **kwargs)

    monkeypatch.setattr(zoo, "load", load)
    suite = {**COMPARE_BASE, "models": ["digits_lenet"], "defences": ["denoiser:digits_unet_nn_100"],
             "attacks": ["none", "pgd"], "steps": 2, "smoothing_samples": 2, "score_draws": 2,
             "certify": {"n0": 10, "n": 60, "alpha": 0.01, "batch_size": 60}}
    unit = compare.units(suite, 3)[0]
    rows = compare.compute_unit(suite, unit, "cpu", references.Roots(), seed=0, limit=3)
    assert {r["noise_space"] for r in rows} == {repr(NormalizedNoise(mean=(0.305,), std=(0.319,)))}
    assert [r["sigma_pixel"] for r in rows] == pytest.approx([0.319] * len(rows))  # 0.319 x sigma_n, sigma_n = 1
    certs = [r for r in rows if r["config"].endswith("/certify")]
    assert [r["sigma"] for r in certs] == [1.0] * 3
    # the radii are those of CERTIFY in the normalized space, converted to pixels (R_n * 0.319): recompute them
    data = compare.load_data(suite, 3, references.Roots())
    base = compare.deploy(compare._model("digits_lenet", "cpu", None, None), "denoiser:digits_unet_nn_100",
                          CompareSpec.from_suite(suite),
                          10, torch.device("cpu"), torch.Generator(), torch.Generator(), None).base
    expected = certify(base, data.x[:3], n0=10, n=60, sigma=1.0, alpha=0.01, num_classes=10, batch_size=60,
                       keys=image_keys(0, f"{compare.tag_of('digits_lenet', unit['defence'])}/certify", [0, 1, 2]),
                       noise_space=NormalizedNoise(mean=(0.305,), std=(0.319,)))
    assert expected.radius_noise_space is not None
    # same-kernel: the same certify call on the same images and keys
    assert [r["radius"] for r in certs] == expected.radius.tolist()
    torch.testing.assert_close(expected.radius, expected.radius_noise_space * 0.319, rtol=1e-6, atol=0)


def test_an_external_attacks_output_is_projected_onto_the_ball_and_the_bounds(monkeypatch):
    """torchattacks' APGD output passes the one final projection: a point it returns outside the eps-ball and the
    [0, 1] box is scored only after projection."""
    import torchattacks

    from art_ext.ops.norms import lp_norm
    from art_ext.testing import tiny_cnn

    class Overshoot:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, x, y):
            return x + 3.0  # far outside the ball and the box

    monkeypatch.setattr(torchattacks, "APGD", Overshoot)
    target = Deployment.plain(tiny_cnn().eval())
    x, y = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2])
    spec = CompareSpec.from_suite({**COMPARE_BASE, "attacks": ["none", "apgd-ce"]})
    for norm, eps in (("linf", 0.1), ("l2", 0.5)):
        x_adv, _ = compare.run_attack("apgd-ce", spec, norm, eps, target, x, y, seed=1)
        assert (lp_norm(x_adv - x, norm) <= eps * (1 + 1e-5)).all()
        assert x_adv.min() >= 0 and x_adv.max() <= 1
