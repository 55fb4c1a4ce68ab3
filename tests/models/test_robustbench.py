"""RobustBench models from a local model_dir, offline, through the import shims (random-init checkpoints)."""

import re

import pytest
import torch

from art_ext.models import robustbench as rb  # robustbench itself comes with the `test` extra


def _rice_l2_model() -> torch.nn.Module:
    rb._install_import_shims()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_dicts[BenchmarkDataset.cifar_10][ThreatModel.L2]["Rice2020Overfitting"]["model"]().eval()


def test_loads_a_placed_checkpoint_in_eval_mode(tmp_path):
    reference = _rice_l2_model()  # PreActResNet-18, 11.2M parameters
    path = rb.checkpoint_path("Rice2020Overfitting", model_dir=tmp_path, threat_model="L2")
    assert path == tmp_path / "cifar10" / "L2" / "Rice2020Overfitting.pt"
    path.parent.mkdir(parents=True)
    # a checkpoint saved from DataParallel, as many RobustBench files are: {"state_dict": {"module.<name>": ...}}
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model = rb.load_robustbench_model("Rice2020Overfitting", model_dir=tmp_path, threat_model="L2")
    assert not model.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_missing_checkpoint_names_the_path_and_downloads_nothing(tmp_path, monkeypatch):
    import robustbench.utils

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(robustbench.utils, "download_gdrive", no_download, raising=False)
    with pytest.raises(FileNotFoundError, match=r"cifar10/Linf/Standard\.pt"):
        rb.load_robustbench_model("Standard", model_dir=tmp_path)


def test_unknown_names_are_rejected_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown RobustBench model 'Standart'.*Standard"):
        rb.load_robustbench_model("Standart", model_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown threat_model 'l2'"):
        rb.load_robustbench_model("Standard", model_dir=tmp_path, threat_model="l2")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        rb.robustbench_model_names("mnist")


def test_leaderboard_lookups_refuse_unknown_threat_models_and_datasets():
    board = rb.leaderboard()
    # before: a mistyped threat model or dataset returned None / [] like a model missing from the snapshot
    with pytest.raises(ValueError, match=r"unknown threat_model 'linf'; expected one of \('Linf', 'L2'"):
        board.get("Wong2020Fast", threat_model="linf")
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-10'; expected one of \('cifar10', 'cifar100'"):
        board.names(dataset="cifar-10")
    assert board.get("Wong2020Fast", dataset="cifar100") is None  # a valid dataset the snapshot does not cover
    assert board.names(threat_model="L2") and board.get("NotInTheSnapshot") is None


def test_checkpoint_path_refuses_an_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; expected one of"):
        rb.checkpoint_path("Standard", model_dir=tmp_path, dataset="mnist")


def test_an_ensemble_needs_every_member_file_and_downloads_nothing(tmp_path, monkeypatch):
    import robustbench.utils

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(robustbench.utils, "download_gdrive", no_download, raising=False)
    files = rb.local_files("Chen2020Adversarial", model_dir=tmp_path)
    assert [f.name for f in files] == [f"Chen2020Adversarial.pt_m{i}.pt" for i in range(len(files))]
    assert len(files) >= 2
    path = rb.checkpoint_path("Chen2020Adversarial", model_dir=tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({}, path)  # the <Name>.pt file alone is not what robustbench reads for an ensemble
    with pytest.raises(FileNotFoundError, match=r"Chen2020Adversarial\.pt_m0\.pt not found \(and \d+ more\)"):
        rb.load_robustbench_model("Chen2020Adversarial", model_dir=tmp_path)


def test_a_model_whose_weights_come_from_timms_hub_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Debenedetti2022Light_XCiT-S12.*timm's hub.*never downloads"):
        rb.load_robustbench_model("Debenedetti2022Light_XCiT-S12", model_dir=tmp_path)


@pytest.mark.parametrize(("content", "message"), [
    (b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>",
     r"is an HTML page \(a failed or blocked download\?\), not a torch checkpoint: replace it with the real file"),
    (None, r"is truncated \(a torch zip archive without its end record\): copy or download it again"),
    (b"", r"is empty"),
    (b"plain text, no checkpoint", r"is not a torch checkpoint \(neither a torch zip archive nor a pickle\)"),
])
def test_a_broken_checkpoint_is_a_one_line_error_naming_the_file(tmp_path, content, message):
    """Before: torch's UnpicklingError ("invalid load key, '<'") or a zip error from deep inside robustbench."""
    path = rb.checkpoint_path("Standard", model_dir=tmp_path)
    path.parent.mkdir(parents=True)
    if content is None:  # a download cut short: the first half of a real torch zip archive
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"RobustBench model 'Standard': {re.escape(str(path))} "
                                         + message) as info:
        rb.load_robustbench_model("Standard", model_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_check_checkpoint_file_tells_the_two_torch_formats(tmp_path):
    zipped, legacy = tmp_path / "new.pt", tmp_path / "old.pt"
    torch.save({"w": torch.zeros(3)}, zipped)
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    assert rb.check_checkpoint_file(zipped) == "zip"
    assert rb.check_checkpoint_file(legacy) == "legacy"
    with pytest.raises(FileNotFoundError, match=r"missing\.pt not found \(nothing is downloaded\)"):
        rb.check_checkpoint_file(tmp_path / "missing.pt")
