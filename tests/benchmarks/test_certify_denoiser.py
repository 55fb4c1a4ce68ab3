"""The certify suite kind with a ``denoiser`` key: rows, resume keys and the paper-style report."""

import json

import torch

from art_ext import zoo
from art_ext.models.denoisers import DnCNN
from art_ext.testing import tiny_cnn
from benchmarks import common
from benchmarks.kinds import certify as kind


def _fake_zoo(monkeypatch, loaded: list[str]) -> None:
    def load(name, *, kind=None, **kwargs):
        loaded.append(name)
        entry = zoo.get_entry(name, kind=kind)
        if entry.kind == "classifier":
            return zoo.ZooModel(tiny_cnn(size=16), entry, {})  # untrained but input-sensitive votes
        torch.manual_seed(1)
        module = DnCNN(in_channels=1, depth=3, width=4)
        torch.nn.init.normal_(module.body[-1].weight, std=1.0)
        return zoo.ZooModel(module.eval(), entry, {})

    monkeypatch.setattr(zoo, "load", load)


SUITE = {
    "name": "tiny", "kind": "certify", "dataset": "digits", "split": "test", "n0": 10, "n": 100, "alpha": 0.01,
    "batch_size": 256, "images_per_chunk": 2, "radii": [0.0, 0.25, 0.5], "paper_table": True,
    "paper_radii": [0.25, 0.5],
    "configs": [
        {"model": "digits_cnn", "sigma": 0.5, "row": "no denoiser"},
        {"model": "digits_cnn", "sigma": 0.5, "denoiser": "digits_dncnn_mse_050", "row": "MSE"},
    ],
}


def test_default_config_ids_are_unchanged() -> None:
    assert kind.config_id({"model": "digits_cnn", "sigma": 0.25}) == "digits_cnn@sigma=0.25"
    assert kind.config_id({"model": "digits_cnn", "sigma": 0.5, "denoiser": "d"}) == "d+digits_cnn@sigma=0.5"


def test_denoiser_rows_and_paper_report(tmp_path, monkeypatch) -> None:
    loaded: list[str] = []
    _fake_zoo(monkeypatch, loaded)
    ctx = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=4, verbose=False)
    kind.run(SUITE, ctx)
    ctx.close()
    rows = common.read_rows(tmp_path)
    assert len(rows) == 8 and loaded == ["digits_cnn", "digits_cnn", "digits_dncnn_mse_050"]
    denoised = [r for r in rows if r["config"] == "digits_dncnn_mse_050+digits_cnn@sigma=0.5"]
    assert len(denoised) == 4 and all(r["denoiser"] == "digits_dncnn_mse_050" and r["row"] == "MSE"
                                      for r in denoised)
    plain = [r for r in rows if r["config"] == "digits_cnn@sigma=0.5"]
    assert all("denoiser" not in r for r in plain)
    # the denoiser changes the base classifier, so some certificate differs between the two configs
    assert [r["p_a_lower"] for r in plain] != [r["p_a_lower"] for r in denoised]

    manifest = {"seed": 0, "versions": {"torch": torch.__version__}, "device": "cpu", "git_sha": None}
    text = kind.report(SUITE, rows, tmp_path, manifest)
    assert "### σ = 0.5" in text and "Envelope over σ" in text and "| MSE |" in text
    summary = {s["row"]: s for s in json.loads((tmp_path / "summary.json").read_text())}
    acc = summary["MSE"]["certified_accuracy"]
    se = summary["MSE"]["certified_accuracy_se"]["0.25"]  # one binomial SE, the shared convention
    cell = f"({100 * acc['0.0']:.0f}) {100 * acc['0.25']:.0f} ± {100 * se:.0f}"
    assert f"| MSE | {cell} |" in text

    # resume: nothing left to do, no model is loaded again
    loaded.clear()
    ctx2 = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=4, verbose=False)
    ctx2.done = {(r["config"], int(r["index"])) for r in rows}
    kind.run(SUITE, ctx2)
    assert loaded == []


def test_a_normalized_noise_denoiser_is_certified_in_its_noise_space(tmp_path, monkeypatch) -> None:
    # digits_unet_nn_100 declares NormalizedNoise(0.305, 0.319): its sigma is in normalized units, the noise must go
    # in there, and the reported radius is pixel units = sigma * Phi^-1(p_A lower) * 0.319 (not the nominal radius)
    from scipy.stats import norm

    loaded: list[str] = []
    _fake_zoo(monkeypatch, loaded)
    suite = dict(SUITE, configs=[{"model": "digits_cnn", "sigma": 1.0, "denoiser": "digits_unet_nn_100"}],
                 paper_table=False)
    ctx = common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=4, verbose=False)
    kind.run(suite, ctx)
    ctx.close()
    rows = common.read_rows(tmp_path)
    certified = [r for r in rows if r["prediction"] != -1]
    assert len(rows) == 4 and certified
    assert all(r["noise_space"] == "NormalizedNoise(mean=(0.305,), std=(0.319,))" for r in rows)
    for r in certified:
        assert abs(r["radius"] - 1.0 * norm.ppf(r["p_a_lower"]) * 0.319) < 1e-9
    # a pixel-noise denoiser keeps pixel noise (no noise_space field)
    assert kind.noise_space_of({"denoiser": "digits_unet_px_050"}) is None
    assert kind.noise_space_of({"denoiser": "digits_dncnn_mse_050"}) is None
