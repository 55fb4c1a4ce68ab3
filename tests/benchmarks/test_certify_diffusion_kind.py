"""The certify kind with a zoo diffusion model as the denoiser (issue 11): schema, ids, and the base it builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from art_ext import zoo
from art_ext.defences import DenoisedClassifier, DiffusionDenoiser
from art_ext.testing import tiny_cnn
from benchmarks import common
from benchmarks.kinds import certify as kind


def fails_with(tiny_suite, fails, tmp_path: Path, **config) -> str:
    """The one-line error for the tiny suite with one config: digits_cnn at sigma 0.5 with ``config``; no folder."""
    path = tiny_suite(description="tiny diffusion suite", configs=[{"model": "digits_cnn", "sigma": 0.5, **config}])
    line = fails(["--suite", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert not (tmp_path / "out").exists()
    return line


def test_a_diffusion_denoiser_is_a_valid_denoiser_and_multistep_is_checked_before_any_work(tmp_path, tiny_suite,
                                                                                          fails):
    assert kind._denoiser_check("digits_ddpm") is None and kind._denoiser_check("digits_dncnn_mse_050") is None
    assert "digits_ddpm" in kind._denoiser_check("no_such_model")
    line = fails_with(tiny_suite, fails, tmp_path, denoiser="digits_dncnn_mse_050", multistep=True)
    assert "multistep / num_steps apply to a zoo diffusion denoiser only (one of digits_ddpm)" in line
    line = fails_with(tiny_suite, fails, tmp_path, denoiser="digits_ddpm", num_steps=5)
    assert "configs[0].num_steps needs multistep = true" in line


def test_multistep_configs_get_their_own_ids_and_one_shot_ids_keep_the_denoiser_form() -> None:
    one_shot = {"model": "digits_cnn", "sigma": 0.5, "denoiser": "digits_ddpm"}
    assert kind.config_id(one_shot) == "digits_ddpm+digits_cnn@sigma=0.5"
    assert kind.config_id({**one_shot, "multistep": True, "num_steps": 5}) == \
        "digits_ddpm[multistep,5]+digits_cnn@sigma=0.5"


def test_the_base_is_the_classifier_behind_the_diffusion_denoiser_at_the_config_sigma(monkeypatch) -> None:
    pytest.importorskip("diffusers")
    from diffusers import DDPMScheduler, UNet2DModel

    calls = []

    def fake_diffusion_denoiser(name, sigma, *, device, **kwargs):
        calls.append((name, sigma, kwargs))
        unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                           layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"))
        return DiffusionDenoiser(unet.eval(), DDPMScheduler(num_train_timesteps=1000), sigma=sigma, **kwargs)

    classifier = tiny_cnn(size=16)
    monkeypatch.setattr(zoo, "diffusion_denoiser", fake_diffusion_denoiser)
    monkeypatch.setattr(kind.references, "parse_model", lambda ref: _Fixed(classifier))
    ctx = common.RunContext(out=Path("."), device=torch.device("cpu"), seed=0, limit=None, verbose=False)
    config = {"model": "digits_cnn", "sigma": 0.5, "denoiser": "digits_ddpm", "multistep": True, "num_steps": 3}
    base, _ = kind.load_base(config, ctx)
    assert isinstance(base, DenoisedClassifier) and base.classifier is classifier
    assert isinstance(base.denoiser, DiffusionDenoiser) and base.denoiser.timestep == 259  # t* at sigma 0.5
    assert calls == [("digits_ddpm", 0.5, {"multistep": True, "num_steps": 3})]


class _Fixed:
    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def load(self, roots, device, *, verbose=False):
        return zoo.ZooModel(self.module, zoo.get_entry("digits_cnn"), {})
