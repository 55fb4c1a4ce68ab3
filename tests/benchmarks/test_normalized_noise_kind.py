"""Suite kind ``normalized_noise``: its strict schema and cross-key checks (one-line errors before any work), and a
tiny end-to-end run whose Table II rows carry pixel radii = R_n * min(std) for the normalized-noise UNet."""

from __future__ import annotations

import json

import pytest

from benchmarks import run

SUITE = {
    "kind": "normalized_noise", "description": "tiny", "limit": 3, "images_per_chunk": 3, "n0": 10, "n": 60,
    "alpha": 0.01, "batch_size": 500, "radii": [0.0, 0.1], "transfer_models": ["digits_mlp"], "attack_draws": 2,
    "configs": [{"table": "I", "row": "unet", "denoiser": "digits_unet_nn_100"},
                {"table": "II", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"},
                {"table": "II", "row": "cohen", "model": "digits_cnn_noise025", "sigma": 0.25},
                {"table": "V", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"}],
}


@pytest.mark.parametrize("extra, expected", [
    ({"table": "IV", "row": "x", "denoiser": "digits_unet_nn_100"}, "table"),
    ({"table": "I", "row": "x", "denoiser": "digits_unet_nn_100", "model": "digits_cnn"},
     "a Table I config names a denoiser only"),
    ({"table": "II", "row": "x", "model": "digits_cnn"}, "give either denoiser"),
    ({"table": "V", "row": "x", "model": "digits_cnn", "sigma": 0.5}, "a Table V config needs a denoiser"),
    ({"table": "II", "row": "x", "model": "digits_cnn", "sigma": 0.5, "eps": 1}, "eps"),
])
def test_bad_configs_fail_in_one_line_before_any_work(tmp_path, write_suite, fails, extra, expected):
    path = write_suite(**{**SUITE, "configs": [*SUITE["configs"], extra]})
    assert expected in fails(["--suite", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.slow
def test_tiny_run_reports_pixel_radii_and_the_three_tables(tmp_path, write_suite):
    path = write_suite(**SUITE)
    out = tmp_path / "out"
    assert run.main(["--suite", str(path), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    unet = [r for r in rows if r["config"] == "II/unet"]
    assert len(unet) == 3
    for r in unet:
        assert r["radius"] == pytest.approx(r["radius_noise_space"] * 0.319)
    cohen = [r for r in rows if r["config"] == "II/cohen"]
    assert all(r["radius"] == r["radius_noise_space"] for r in cohen)
    attacked = [r for r in rows if r["table"] == "V"]
    assert len(attacked) == 3 and all(0 <= r[f"acc_{p}"] <= 1 for r in attacked for p in ("paper", "sane", "exact"))
    summary = (out / "summary.md").read_text()
    assert "Table I analog" in summary and "Table II analog" in summary and "Table V analog" in summary
    assert "R_n=0.31" in summary  # r = 0.1 <-> R_n = 0.1 / 0.319


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["sane", "exact"])
def test_table_v_attack_of_an_image_does_not_depend_on_the_other_images(preset):
    # Table V's deployed noise during the attack is keyed per image: an image attacked alone gets the x_adv it gets
    # in a batch of 3, up to the rounding of a batched backward pass (20 float32 steps: atol 1e-4), and another key
    # moves it by far more
    import torch

    from art_ext import zoo
    from benchmarks.image_keys import image_keys
    from benchmarks.kinds import normalized_noise as kind

    config = {"table": "V", "row": "unet", "model": "digits_cnn", "denoiser": "digits_unet_nn_100"}
    sigma, space = kind.noise_of(config)
    base = kind.pipeline(config, zoo.load("digits_cnn", kind="classifier", device="cpu").module, torch.device("cpu"))
    data = kind.digits.load_digits("test", resolution=16)
    x, y = data.x[:3], data.y[:3]
    keys = image_keys(0, "V/unet", range(3)).derive(f"attack/{preset}")
    together = kind.table_v_attack(base, x, y, preset, sigma, space, keys)
    for i in range(3):
        alone = kind.table_v_attack(base, x[i:i + 1], y[i:i + 1], preset, sigma, space, keys[i:i + 1])
        torch.testing.assert_close(alone, together[i:i + 1], rtol=0, atol=1e-4)
    other = kind.table_v_attack(base, x, y, preset, sigma, space, keys.derive("other"))
    assert float((other - together).abs().amax()) > 1e-2
