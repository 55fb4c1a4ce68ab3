"""Model and dataset references (benchmarks/references.py) on small files made here, offline; and the certify
and attacks kinds end to end on a tiny CIFAR-10 root with a ``file:`` model and a random-init RobustBench
checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from art_ext.ops.hashing import state_dict_sha256
from art_ext.testing import write_cifar10_root
from benchmarks import common, run
from benchmarks.common import SuiteError
from benchmarks.references import Roots, identify, parse_dataset, parse_model, suite_models


def cifar_cnn() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 15 * 15, 10)).eval()


def robustbench_architecture(name: str, threat: str = "Linf") -> nn.Module:
    from art_ext.models import robustbench as rb

    rb._install_import_shims()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_dicts[BenchmarkDataset.cifar_10][ThreatModel(threat)][name]["model"]().eval()


X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# ---- parsing -----------------------------------------------------------------------------------------------------
def test_model_references_parse_into_their_schemes():
    assert parse_model("digits_cnn") == parse_model("zoo:digits_cnn").__class__("digits_cnn", "zoo", "digits_cnn")
    assert parse_model("zoo:digits_cnn").name == "digits_cnn"
    rb = parse_model("robustbench:Rice2020Overfitting:L2:cifar10")
    assert (rb.scheme, rb.name, rb.threat, rb.dataset) == ("robustbench", "Rice2020Overfitting", "L2", "cifar10")
    assert (parse_model("robustbench:Standard").threat, parse_model("robustbench:Standard").dataset) == \
        ("Linf", "cifar10")
    tv = parse_model("torchvision:resnet18:/w/r.pth")
    assert (tv.scheme, tv.name, tv.path) == ("torchvision", "resnet18", "/w/r.pth")
    assert parse_model("torchvision:resnet18").path is None
    assert parse_model("file:some/model.pt").name == "some/model.pt"
    assert not parse_model("file:some/model.pt").trusted
    trusted = parse_model("file+trusted:some/model.pt")
    assert (trusted.scheme, trusted.name, trusted.trusted) == ("file", "some/model.pt", True)
    for bad in ("", "robustbench:", "robustbench:A:B:C:D", "hub:resnet", "file:", "file+trusted:", 3):
        with pytest.raises(SuiteError, match="expected"):
            parse_model(bad)


def test_dataset_references_parse_and_bad_ones_name_the_forms():
    assert parse_dataset("digits").scheme == "digits" and parse_dataset("cifar10").scheme == "cifar10"
    assert parse_dataset("imagefolder:/data/val").path == "/data/val"
    with pytest.raises(SuiteError, match="expected digits, cifar10, imagefolder:<path>"):
        parse_dataset("CIFAR10")


def test_roots_come_from_options_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ART_EXT_DATA_ROOT", str(tmp_path / "env_data"))
    monkeypatch.setenv("ART_EXT_MODEL_DIR", str(tmp_path / "env_models"))
    assert Roots.from_options(None, None) == Roots(tmp_path / "env_data", tmp_path / "env_models")
    assert Roots.from_options(tmp_path / "d", None).data_root == tmp_path / "d"
    monkeypatch.delenv("ART_EXT_DATA_ROOT")
    monkeypatch.delenv("ART_EXT_MODEL_DIR")
    assert Roots.from_options(None, None) == Roots(None, None)


# ---- models ------------------------------------------------------------------------------------------------------
def test_file_reference_loads_a_torchscript_module_and_a_trusted_saved_module(tmp_path):
    model = cifar_cnn()
    torch.save(model, tmp_path / "whole.pt")
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    for scheme, name in (("file+trusted", "whole.pt"), ("file", "scripted.pt")):
        ref = parse_model(f"{scheme}:{tmp_path / name}")
        assert ref.check(Roots())["file"] == str((tmp_path / name).resolve())
        loaded = ref.load(Roots())
        assert not loaded.module.training and loaded.training_sigma is None
        with torch.no_grad():
            torch.testing.assert_close(loaded.module(X), model(X))
    assert isinstance(parse_model(f"file:{tmp_path / 'scripted.pt'}").load(Roots()).module, torch.jit.ScriptModule)


def test_loaded_models_carry_the_sha256_of_their_weights(tmp_path):
    from art_ext import zoo

    model = cifar_cnn()
    torch.save(model, tmp_path / "whole.pt")
    loaded = parse_model(f"file+trusted:{tmp_path / 'whole.pt'}").load(Roots())
    assert loaded.weights_sha256 == state_dict_sha256(model) and loaded.source == "file"
    lenet = parse_model("digits_lenet").load(Roots())
    assert lenet.weights_sha256 == zoo.load("digits_lenet").sha256 == state_dict_sha256(lenet.module)
    assert lenet.source.startswith("zoo:")


def test_identify_hashes_every_model_a_suite_names_and_its_examples(tmp_path):
    from art_ext import zoo
    from art_ext.data import load_digits

    torch.save(cifar_cnn(), tmp_path / "whole.pt")
    suite = {"dataset": "digits", "split": "val", "configs": [
        {"model": "digits_cnn", "denoiser": "digits_dncnn_mse_025", "row": "not a model"},
        {"model": "zoo:digits_lenet"}], "defences": ["none", "denoiser:digits_dncnn_stab_050"]}
    file_ref = f"file+trusted:{tmp_path / 'whole.pt'}"
    assert suite_models(suite, [file_ref]) == sorted(
        ["digits_cnn", "digits_dncnn_mse_025", "zoo:digits_lenet", "digits_dncnn_stab_050", file_ref])
    # the CIFAR-10 model does not take digits (the preflight's concern, tests/benchmarks/test_specs.py): hashes only
    identity = identify(suite, Roots(), references=[file_ref], limit=5, preflight=False)
    with pytest.raises(SuiteError, match="does not take the examples of dataset 'digits'"):
        identify(suite, Roots(), references=[file_ref], limit=5)
    assert identity["models"]["digits_dncnn_mse_025"]["sha256"] == zoo.load("digits_dncnn_mse_025").sha256
    assert identity["models"][file_ref] == {"sha256": state_dict_sha256(cifar_cnn()), "source": "file"}
    val = load_digits("val").head(5)
    assert identity["dataset"] == {"reference": "digits", "split": "val", "limit": 5, "examples": 5,
                                   "sha256": state_dict_sha256({"x": val.x, "y": val.y})}


def test_file_reference_refuses_a_state_dict(tmp_path):
    torch.save(cifar_cnn().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(SuiteError, match=r"sd\.pt holds a OrderedDict, not a torch module \(a state_dict"):
        parse_model(f"file:{tmp_path / 'sd.pt'}").load(Roots())


def test_broken_checkpoints_are_named_with_their_path(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(cifar_cnn(), good)
    (tmp_path / "page.pt").write_text("<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("weights")
    cases = {"missing.pt": "not found", "page.pt": "is an HTML page", "cut.pt": "is truncated",
             "empty.pt": "is empty", "text.pt": "is not a torch checkpoint"}
    for name, problem in cases.items():
        path = tmp_path / name
        with pytest.raises(SuiteError, match=f"{path}.* {problem}|{path} {problem}"):
            parse_model(f"file:{path}").check(Roots())


def test_robustbench_reference_loads_a_random_init_checkpoint_offline(tmp_path, monkeypatch):
    from art_ext.models import robustbench as rb

    rb._install_import_shims()  # robustbench 1.1.1 does not import on this environment without them
    import robustbench.utils

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(robustbench.utils, "download_gdrive", no_download, raising=False)
    reference = robustbench_architecture("Wong2020Fast")  # PreActResNet-18, the example
    path = tmp_path / "cifar10" / "Linf" / "Wong2020Fast.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict()}, path)
    ref = parse_model("robustbench:Wong2020Fast")
    roots = Roots(model_dir=tmp_path)
    assert ref.check(roots)["file"] == str(path.resolve())
    loaded = ref.load(roots)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(X), reference(X))
    assert not loaded.module.training


def test_robustbench_reference_errors_name_the_expected_path(tmp_path):
    roots = Roots(model_dir=tmp_path)
    expected = tmp_path / "cifar10" / "L2" / "Rice2020Overfitting.pt"
    with pytest.raises(SuiteError, match=f"{expected} not found"):
        parse_model("robustbench:Rice2020Overfitting:L2").check(roots)
    expected.parent.mkdir(parents=True)
    expected.write_text("<html>quota exceeded</html>")
    with pytest.raises(SuiteError, match=f"{expected} is an HTML page"):
        parse_model("robustbench:Rice2020Overfitting:L2").load(roots)
    with pytest.raises(SuiteError, match="unknown RobustBench model 'Wong2020Fats'.*Wong2020Fast"):
        parse_model("robustbench:Wong2020Fats").check(roots)
    with pytest.raises(SuiteError, match="threat must be one of Linf, L2"):
        parse_model("robustbench:Standard:l2").check(roots)


def test_torchvision_reference_reads_local_weights_and_normalizes_inside(tmp_path):
    import torchvision

    from art_ext.data.image_folder import IMAGENET_MEAN, IMAGENET_STD

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    path = tmp_path / "torchvision" / "mobilenet_v3_small.pth"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    loaded = parse_model("torchvision:mobilenet_v3_small").load(Roots(model_dir=tmp_path))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(X), net((X - mean) / std))  # 7 classes read from the weights
    explicit = parse_model(f"torchvision:mobilenet_v3_small:{path}").load(Roots())
    with torch.no_grad():
        torch.testing.assert_close(explicit.module(X), loaded.module(X))
    with pytest.raises(SuiteError, match="does not fit resnet18"):
        parse_model(f"torchvision:resnet18:{path}").load(Roots())
    with pytest.raises(SuiteError, match="unknown torchvision classification architecture 'resnet19'"):
        parse_model("torchvision:resnet19").check(Roots(model_dir=tmp_path))


def test_torchvision_reference_reads_safetensors_weights(tmp_path):
    """A state_dict in the safetensors format loads into a torchvision architecture like its torch.save copy; a
    truncated safetensors file and a weights-only file given as file: are one-line errors."""
    import torchvision
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    pth, safe = tmp_path / "m.pth", tmp_path / "m.safetensors"
    torch.save(net.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(safe))
    from_pth = parse_model(f"torchvision:mobilenet_v3_small:{pth}").load(Roots())
    from_safe = parse_model(f"torchvision:mobilenet_v3_small:{safe}").load(Roots())
    assert from_pth.weights_sha256 == from_safe.weights_sha256  # the same tensors, read two ways
    with torch.no_grad():
        # same-kernel: the same weights in the same architecture on the same input
        assert torch.equal(from_pth.module(X), from_safe.module(X))
    with pytest.raises(SuiteError, match="holds weights only \\(safetensors\\)"):
        parse_model(f"file:{safe}").check(Roots())
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(safe.read_bytes()[:4])
    with pytest.raises(SuiteError, match="is not a safetensors file"):
        parse_model(f"torchvision:mobilenet_v3_small:{broken}").load(Roots())


def test_zoo_reference_is_the_zoo_model():
    from art_ext import zoo

    loaded = parse_model("zoo:digits_lenet").load(Roots())
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), zoo.load("digits_lenet").module(x))
    assert loaded.training_sigma == 0.0
    with pytest.raises(SuiteError, match="unknown zoo classifier 'Wong2020Fast'.*robustbench:<Name>"):
        parse_model("Wong2020Fast").check(Roots())


# ---- datasets ----------------------------------------------------------------------------------------------------
def test_cifar10_reference_reads_the_data_root(tmp_path):
    written = write_cifar10_root(tmp_path)
    ref = parse_dataset("cifar10")
    data = ref.load(Roots(data_root=tmp_path), "test", limit=3)
    data_values, labels = written["test_batch"]
    # same-kernel: the same bytes / 255, elementwise
    assert torch.equal(data.x, torch.from_numpy(data_values[:3].reshape(3, 3, 32, 32)).float() / 255)
    assert data.y.tolist() == labels[:3]
    assert len(ref.load(Roots(data_root=tmp_path), "train")) == 20
    with pytest.raises(SuiteError, match="needs a data root"):
        ref.check(Roots())
    with pytest.raises(SuiteError, match="has no split 'val'"):
        ref.check(Roots(data_root=tmp_path), "val")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(SuiteError, match=f"test_batch not found in {tmp_path / 'cifar-10-batches-py'}"):
        ref.check(Roots(data_root=tmp_path))


def test_imagefolder_and_digits_references(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{k}.png")
    data = parse_dataset(f"imagefolder:{tmp_path / 'images'}").load(Roots(), limit=3)
    assert data.x.shape == (3, 3, 224, 224) and data.classes == ("cat", "dog") and data.y.tolist() == [0, 0, 1]
    with pytest.raises(SuiteError, match="does not exist"):
        parse_dataset(f"imagefolder:{tmp_path / 'nope'}").check(Roots())
    from art_ext.data import load_digits

    # same-kernel: the same loader, the same bytes
    assert torch.equal(parse_dataset("digits").load(Roots(), "val", limit=5).x, load_digits("val").x[:5])


# ---- end to end: the certify kind on CIFAR-10 with file: and robustbench: models ---------------------------------
CIFAR_SUITE = """\
kind = "certify"
description = "tiny CIFAR-10 certify"
dataset = "cifar10"
limit = 3
n0 = 10
n = 40
alpha = 0.01
batch_size = 100
images_per_chunk = 2
radii = [0.0, 0.25]

[[configs]]
model = "file:{model}"
sigma = 0.25

[[configs]]
model = "robustbench:Wong2020Fast"
sigma = 0.5
"""


def cifar_run(tmp_path, monkeypatch, suite_text: str) -> tuple[list[str], Path, Path]:
    """A tiny CIFAR-10 root, a TorchScript CNN and a random-init Wong2020Fast checkpoint; the runner's argv for
    ``suite_text`` (formatted with the CNN's path), its --out folder and the checkpoint."""
    monkeypatch.delenv("ART_EXT_DATA_ROOT", raising=False)
    write_cifar10_root(tmp_path / "data")
    torch.jit.save(torch.jit.script(cifar_cnn()), str(tmp_path / "cnn.pt"))  # TorchScript: file: loads it
    checkpoint = tmp_path / "models" / "cifar10" / "Linf" / "Wong2020Fast.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save(robustbench_architecture("Wong2020Fast").state_dict(), checkpoint)
    suite = tmp_path / "suite.toml"
    suite.write_text(suite_text.format(model=tmp_path / "cnn.pt"))
    out = tmp_path / "out"
    argv = ["--suite", str(suite), "--out", str(out), "--quiet", "--data-root", str(tmp_path / "data"),
            "--model-dir", str(tmp_path / "models")]
    return argv, out, checkpoint


def test_certify_runs_on_cifar10_with_file_and_robustbench_models(tmp_path, capsys, monkeypatch):
    argv, out, checkpoint = cifar_run(tmp_path, monkeypatch, CIFAR_SUITE)
    assert run.main(argv) == 0
    rows = common.read_rows(out)
    assert len(rows) == 6 and {r["model"] for r in rows} == {f"file:{tmp_path / 'cnn.pt'}", "robustbench:Wong2020Fast"}
    assert all(r["training_sigma"] is None and 0 <= r["label"] < 10 for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["references"]["dataset"]["folder"] == str((tmp_path / "data" / "cifar-10-batches-py").resolve())
    assert manifest["references"]["models"]["robustbench:Wong2020Fast"]["file"] == str(checkpoint.resolve())
    summary = (out / "summary.md").read_text()
    assert "| robustbench:Wong2020Fast | – | 0.5 | 3 |" in summary and "cifar10 test split;" in summary
    # the same suite without --data-root fails before any work, in one line
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv[:5] + argv[7:])
    assert exit_info.value.code == 2 and "needs a data root" in capsys.readouterr().err



ATTACKS_CIFAR_SUITE = """
kind = "attacks"
dataset = "cifar10"
limit = 2
chunk = 2
eps = 0.25
norm = "l2"
max_iter = 3
score_draws = 2

[[targets]]
name = "file_cnn"
model = "file:{model}"
deployment = "plain"
attacks = [{{ name = "none" }}, {{ name = "pgd" }}]

[[targets]]
name = "wong_smoothed"
model = "robustbench:Wong2020Fast"
deployment = "smoothed"
sigma = 0.25
smoothing_samples = 2
attacks = [{{ name = "none" }}, {{ name = "pgd" }}]
"""


@pytest.mark.slow
def test_attacks_kind_runs_on_cifar10_with_file_and_robustbench_models(tmp_path, monkeypatch):
    argv, out, checkpoint = cifar_run(tmp_path, monkeypatch, ATTACKS_CIFAR_SUITE)
    assert run.main(argv) == 0
    rows = common.read_rows(out)
    # per target: 2 clean rows and 2 PGD rows on the first two CIFAR-10 test images, labels from the data
    assert sorted({r["config"] for r in rows}) == ["file_cnn/clean", "file_cnn/pgd", "wong_smoothed/clean",
                                                   "wong_smoothed/pgd"]
    assert len(rows) == 8 and all(0 <= r["label"] < 10 for r in rows)
    assert all(r["l2_distance"] <= 0.25 + 1e-5 for r in rows if r.get("attack") == "pgd")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["references"]["models"]["robustbench:Wong2020Fast"]["file"] == str(checkpoint.resolve())
    assert "cifar10" in (out / "summary.md").read_text()
