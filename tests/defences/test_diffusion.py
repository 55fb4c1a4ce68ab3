"""DiffusionDenoiser: the sigma-to-timestep map (algorithms.md §3.2), the one-shot x0 identities that pin the scaling
and the factor 2, agreement of the prediction types (and with diffusers' own x0 formula), the deterministic multistep
chain, offline loading, exact gradients, and pixel-unit certificates through the unchanged ``certify``."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import CMStochasticIterativeScheduler, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from torch import nn

from art_ext import certify
from art_ext.defences import DenoisedClassifier, DenoiserPreprocessor, DiffusionDenoiser, timestep_for_sigma
from art_ext.ops import stats
from art_ext.ops.modes import torch_threads

ROOT = Path(__file__).resolve().parents[2]


def linear_scheduler(cls=DDPMScheduler, **kwargs):
    """The schedule of google/ddpm-cifar10-32 (and guided-diffusion ImageNet): T = 1000, betas 1e-4 .. 0.02."""
    return cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **kwargs)


def tiny_unet(seed: int = 0, out_channels: int = 1, dtype=torch.float32) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=out_channels, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    return unet.to(dtype).eval()


class Constant(nn.Module):
    """Predicts the same value c everywhere (optionally with C extra 'variance' channels of garbage)."""

    def __init__(self, c: float, learned_variance: bool = False) -> None:
        super().__init__()
        self.c, self.learned_variance = c, learned_variance

    def forward(self, sample, timestep):
        out = torch.full_like(sample, self.c)
        return torch.cat([out, torch.full_like(sample, 123.0)], 1) if self.learned_variance else out


class Fixed(nn.Module):
    """Returns a fixed tensor as a diffusers-style output object (``.sample``)."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, sample, timestep):
        return type("Output", (), {"sample": self.out.clone()})()


class Oracle(nn.Module):
    """Knows the clean image y0 (model range) and predicts, for whatever x_t it gets at timestep t, the epsilon, x0 or
    v consistent with x_t = sqrt(abar_t) y0 + sqrt(1 - abar_t) eps: the same underlying noise for every type."""

    def __init__(self, y0: torch.Tensor, alphas_cumprod: torch.Tensor, kind: str) -> None:
        super().__init__()
        self.y0, self.abar, self.kind = y0, alphas_cumprod.double(), kind
        self.calls: list[int] = []

    def forward(self, sample, timestep, return_dict=True):
        t = int(timestep[0])
        self.calls.append(t)
        a, b = self.abar[t].sqrt().item(), (1 - self.abar[t]).sqrt().item()
        eps = (sample - a * self.y0) / b
        out = {"epsilon": eps, "sample": self.y0, "v_prediction": a * eps - b * self.y0}[self.kind]
        return (out,)  # the return_dict=False convention


# -- the sigma -> timestep map ----------------------------------------------------------------------------------


LINEAR_TABLE = [(0.12, 70, 0.1207), (0.25, 145, 0.2516), (0.5, 259, 0.5024), (1.0, 396, 1.0002)]
COSINE_TABLE = [(0.12, 573, 0.1201), (0.25, 1158, 0.2501), (0.5, 1984, 0.5003), (1.0, 2809, 1.0000)]


@pytest.mark.parametrize("sigma, t_star, effective", LINEAR_TABLE)
def test_linear_schedule_t_star_table(sigma: float, t_star: int, effective: float) -> None:
    # algorithms.md §3.2: t* is the 0-based index into alphas_cumprod (the value fed to the UNet), first with
    # sqrt((1 - abar) / abar) >= 2 sigma
    den = DiffusionDenoiser(Constant(0.0), linear_scheduler(), sigma=sigma)
    assert den.timestep == t_star
    assert round(den.effective_sigma, 4) == effective
    abar = linear_scheduler().alphas_cumprod.double()
    ratio = ((1 - abar) / abar).sqrt()
    assert ratio[t_star] >= 2 * sigma > ratio[t_star - 1]  # the first one: conservative, and tight
    assert den.effective_sigma >= sigma
    # the doc's own float64 schedule (linspace betas) gives the same index
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert timestep_for_sigma(torch.cumprod(1 - betas, 0), sigma)[0] == t_star


@pytest.mark.parametrize("sigma, t_star, effective", COSINE_TABLE)
def test_cosine_schedule_t_star_table(sigma: float, t_star: int, effective: float) -> None:
    # algorithms.md §3.2, CIFAR-10 improved-diffusion: T = 4000, abar(s) = cos^2(((s + 0.008) / 1.008) pi / 2),
    # beta_i = min(1 - abar((i+1)/T) / abar(i/T), 0.999); diffusers' squaredcos_cap_v2 is the same schedule
    T = 4000
    f = [math.cos(((i / T + 0.008) / 1.008) * math.pi / 2) ** 2 for i in range(T + 1)]
    betas = torch.tensor([min(1 - f[i + 1] / f[i], 0.999) for i in range(T)], dtype=torch.float64)
    t, eff = timestep_for_sigma(torch.cumprod(1 - betas, 0), sigma)
    assert (t, round(eff, 4)) == (t_star, effective)
    den = DiffusionDenoiser(Constant(0.0), DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2"),
                            sigma=sigma)
    assert (den.timestep, round(den.effective_sigma, 4)) == (t_star, effective)


def test_ddim_and_ddpm_from_the_same_betas_give_the_same_t_star() -> None:
    for sigma in (0.12, 0.25, 0.5, 1.0):
        ddim = linear_scheduler(DDIMScheduler)
        ddim.set_timesteps(50)  # inference spacing does not touch the training schedule
        a = DiffusionDenoiser(Constant(0.0), linear_scheduler(), sigma=sigma)
        b = DiffusionDenoiser(Constant(0.0), ddim, sigma=sigma)
        assert (a.timestep, a.effective_sigma) == (b.timestep, b.effective_sigma)


def test_a_zero_one_model_targets_sigma_itself() -> None:
    # a [0, 1] model needs ratio >= sigma: its t* at sigma is the [-1, 1] model's t* at sigma / 2
    for sigma, t_star, effective in LINEAR_TABLE[1:]:
        den = DiffusionDenoiser(Constant(0.0), linear_scheduler(), sigma=2 * sigma, data_range=(0.0, 1.0))
        assert den.timestep == t_star
        assert den.effective_sigma == pytest.approx(2 * effective, abs=2e-4)


# -- one-shot identities -----------------------------------------------------------------------------------------


def noisy_batch(seed: int = 0, shape=(4, 1, 16, 16), sigma: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) + sigma * torch.randn(shape, generator=g)  # leaves [0, 1], as in certify


@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_zero_epsilon_returns_the_input_clipped(data_range) -> None:
    z = noisy_batch().double()
    den = DiffusionDenoiser(Constant(0.0), linear_scheduler(), sigma=0.5, data_range=data_range,
                            prediction_type="epsilon")
    assert bool((z < 0).any() and (z > 1).any())
    torch.testing.assert_close(den(z), z.clamp(0, 1), rtol=0, atol=1e-12)
    unclipped = DiffusionDenoiser(Constant(0.0), linear_scheduler(), sigma=0.5, data_range=data_range, clip=False)
    torch.testing.assert_close(unclipped(z), z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("data_range", [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize("learned_variance", [False, True])
def test_constant_epsilon_shifts_by_c_times_effective_sigma(data_range, learned_variance) -> None:
    # x0 = x_t / sqrt(abar) - sqrt((1 - abar) / abar) c = A(z) - s * effective_sigma * c, back in pixels
    # z - c * effective_sigma: the 2 of the [-1, 1] range cancels (a denoiser that doubled sigma twice would shift by
    # 2 c sigma', one that forgot it by c sigma' / 2)
    z = noisy_batch(1).double()
    for c in (0.7, -1.3):
        den = DiffusionDenoiser(Constant(c, learned_variance), linear_scheduler(), sigma=0.25, data_range=data_range,
                                clip=False)
        torch.testing.assert_close(den(z), z - c * den.effective_sigma, rtol=0, atol=1e-12)
        # the factor 2 shows in t* alone: ratio >= 0.5 (t* = 145) for [-1, 1], >= 0.25 (t* = 73) for [0, 1]
        assert (den.timestep, round(den.effective_sigma, 4)) == ((145, 0.2516) if data_range[0] < 0 else (73, 0.2513))


def test_epsilon_sample_and_v_models_agree_for_the_same_noise() -> None:
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    abar = linear_scheduler().alphas_cumprod
    outs = {}
    for kind in ("epsilon", "sample", "v_prediction"):
        den = DiffusionDenoiser(Oracle(2 * x - 1, abar, kind), linear_scheduler(prediction_type=kind), sigma=0.5)
        assert den.prediction_type == kind  # read from the scheduler's config
        outs[kind] = den(z)
    for kind in ("sample", "v_prediction"):
        torch.testing.assert_close(outs[kind], outs["epsilon"], rtol=0, atol=1e-9)
    torch.testing.assert_close(outs["epsilon"], x, rtol=0, atol=1e-9)  # the oracle's clean image


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_x0_matches_diffusers_pred_original_sample(kind: str) -> None:
    # an arbitrary (non-oracle) model output: x0 equals diffusers' DDPMScheduler.step pred_original_sample at t*
    g = torch.Generator().manual_seed(4)
    z, out = noisy_batch(5), torch.randn(4, 1, 16, 16, generator=g)
    den = DiffusionDenoiser(Fixed(out), linear_scheduler(), sigma=0.5, prediction_type=kind, clip=False)
    x_t = den.scheduler.alphas_cumprod[den.timestep].sqrt() * (2 * z - 1)
    ref = linear_scheduler(prediction_type=kind, clip_sample=False).step(out, den.timestep, x_t, generator=g)
    torch.testing.assert_close(2 * den(z) - 1, ref.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_one_shot_of_a_unet_is_batch_independent_and_in_range() -> None:
    den = DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.5).eval()
    z = noisy_batch(6, shape=(6, 1, 16, 16))
    full = den(z)
    assert float(full.detach().min()) >= 0.0 and float(full.detach().max()) <= 1.0
    torch.testing.assert_close(full[:2], den(z[:2]), rtol=0, atol=1e-5)
    assert full.requires_grad  # autograd on, UNet parameters require grad: a graph through the UNet
    den.model.requires_grad_(False)
    assert den(z).grad_fn is None  # nothing requires grad: the UNet runs under no_grad
    with torch.no_grad():
        # same-kernel: the same UNet call on the same batch, with and without autograd
        torch.testing.assert_close(den(z), full.detach(), rtol=0, atol=0)
    assert float((full.detach() - z.clamp(0, 1)).abs().max()) > 1e-3  # a random UNet is not the identity


def test_autocast_is_checked_and_applies_to_cuda_inputs_only() -> None:
    with pytest.raises(ValueError, match="autocast_dtype must be torch.float16, torch.bfloat16 or None"):
        DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.5, autocast_dtype=torch.float32)
    z = noisy_batch(3, shape=(3, 1, 16, 16))
    plain = DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.5).eval()
    cast = DiffusionDenoiser(plain.model, linear_scheduler(), sigma=0.5, autocast_dtype=torch.bfloat16).eval()
    with torch.no_grad():  # CPU inputs: autocast is off, so the output is bit-identical and stays float32
        out = cast(z)
        torch.testing.assert_close(out, plain(z), rtol=0, atol=0)  # same-kernel: autocast is off on CPU: the same call
    assert out.dtype == torch.float32


class Recording(nn.Module):
    """Returns c everywhere and records the sample and timesteps it was called with."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c, self.seen = c, []

    def forward(self, sample, timestep):
        self.seen.append((sample.clone(), timestep.clone()))
        return torch.full_like(sample, self.c)


def test_sigma_parameterised_consistency_scheduler() -> None:
    # CM (Song et al. 2023): D = c_skip(s) x + c_out(s) F(x / sqrt(s^2 + s_data^2), 250 log s) at s = 2 sigma exactly
    sched, sigma, c = CMStochasticIterativeScheduler(), 0.5, 0.3
    model = Recording(c)
    den = DiffusionDenoiser(model, sched, sigma=sigma, clip=False)
    z = noisy_batch(14).double()
    out = den(z)
    assert den.sigma_parameterised and den.prediction_type == "consistency"
    assert den.effective_sigma == sigma  # no rounding: the noise level is continuous
    assert den.timestep == pytest.approx(250 * math.log(2 * sigma), abs=1e-9)  # = sched.sigma_to_t(1.0) = 0
    sample, timestep = model.seen[0]
    torch.testing.assert_close(sample, (2 * z - 1) / math.sqrt(1.0 + 0.25), rtol=0, atol=1e-12)  # sigma_data 0.5
    assert timestep.dtype == z.dtype and bool((timestep == den.timestep).all())
    c_skip, c_out = sched.get_scalings_for_boundary_condition(torch.tensor(2 * sigma, dtype=torch.float64))
    torch.testing.assert_close(out, (c_skip * (2 * z - 1) + c_out * c + 1) / 2, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="takes no prediction_type and no multistep"):
        DiffusionDenoiser(model, sched, sigma=sigma, multistep=True)
    with pytest.raises(ValueError, match=r"outside the scheduler's \[sigma_min, sigma_max\] = \[0.002, 80.0\]"):
        DiffusionDenoiser(model, sched, sigma=50.0)


# -- multistep ------------------------------------------------------------------------------------------------


def test_multistep_chain() -> None:
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    abar = linear_scheduler().alphas_cumprod
    oracle = Oracle(2 * x - 1, abar, "epsilon")
    den = DiffusionDenoiser(oracle, linear_scheduler(), sigma=0.5, multistep=True, num_steps=5)
    torch.testing.assert_close(den(z), x, rtol=0, atol=1e-9)  # consistent estimates stay on the clean image
    assert oracle.calls == [259, 194, 130, 65, 0]  # from t* down to 0
    full = DiffusionDenoiser(Oracle(2 * x - 1, abar, "epsilon"), linear_scheduler(), sigma=0.5, multistep=True)
    full(z)
    assert full.model.calls == list(range(259, -1, -1))  # default: every timestep
    # DDIM (eta = 0) with a constant eps keeps x0 fixed: the chain equals the one-shot shift z - c sigma'
    chain = DiffusionDenoiser(Constant(0.4), linear_scheduler(), sigma=0.5, clip=False, multistep=True, num_steps=7)
    torch.testing.assert_close(chain(z), z - 0.4 * chain.effective_sigma, rtol=0, atol=1e-10)
    # one step is the one-shot estimate, on a real UNet
    unet, zz = tiny_unet(), noisy_batch(9)
    one = DiffusionDenoiser(unet, linear_scheduler(), sigma=0.5, multistep=True, num_steps=1)
    # same-kernel: one step is the same UNet call on the same batch and the same elementwise x0 formula
    torch.testing.assert_close(one(zz), DiffusionDenoiser(unet, linear_scheduler(), sigma=0.5)(zz), rtol=0, atol=0)


# -- gradients ------------------------------------------------------------------------------------------------


def test_gradients_are_exact_through_the_unet() -> None:
    den = DiffusionDenoiser(tiny_unet(dtype=torch.float64), linear_scheduler(), sigma=0.25, clip=False).eval()
    g = torch.Generator().manual_seed(10)
    z = noisy_batch(11, shape=(2, 1, 16, 16), sigma=0.25).double().requires_grad_(True)
    w = torch.randn(z.shape, generator=g, dtype=torch.float64)
    v = torch.randn(z.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((den(z) * w).sum(), z)
    h = 1e-5
    with torch.no_grad():
        fd = ((den(z + h * v) * w).sum() - (den(z - h * v) * w).sum()) / (2 * h)
    assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-6)
    assert float(grad.abs().sum()) > 0


def test_art_preprocessor_gradients_match_autograd() -> None:
    from art.estimators.classification import PyTorchClassifier

    from art_ext.models import SmallCNN

    torch.manual_seed(0)
    classifier = SmallCNN(width=4).eval()
    den = DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.25).eval()
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(12))
    y = torch.tensor([1, 4, 7])
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(DenoisedClassifier(den, classifier)(xr), y, reduction="sum")
    (expected,) = torch.autograd.grad(loss, xr)
    est = PyTorchClassifier(classifier, loss=nn.CrossEntropyLoss(reduction="sum"), input_shape=(1, 16, 16),
                            nb_classes=10, clip_values=(0.0, 1.0), preprocessing_defences=[DenoiserPreprocessor(den)],
                            device_type="cpu")
    got = est.loss_gradient(x.numpy(), np.eye(10, dtype=np.float32)[y.numpy()])
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-6)


# -- loading --------------------------------------------------------------------------------------------------


def test_from_pretrained_round_trips_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    unet, scheduler = tiny_unet(seed=3), linear_scheduler(prediction_type="v_prediction")
    z = noisy_batch(13)
    expected = DiffusionDenoiser(unet, scheduler, sigma=0.5)(z)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")  # the pipeline layout
    loaded = DiffusionDenoiser.from_pretrained(tmp_path / "pipe", sigma=0.5)
    assert (loaded.timestep, loaded.prediction_type, loaded.model.training) == (259, "v_prediction", False)
    # same-kernel: the same weights, round-tripped, on the same batch
    torch.testing.assert_close(loaded(z), expected, rtol=0, atol=0)
    unet.save_pretrained(tmp_path / "parts" / "unet")  # model + scheduler subfolders, no model_index.json
    scheduler.save_pretrained(tmp_path / "parts" / "scheduler")
    parts = DiffusionDenoiser.from_pretrained(str(tmp_path / "parts"), sigma=0.5, multistep=True, num_steps=2)
    assert parts.config.num_steps == 2
    # same-kernel: the same weights, round-tripped, on the same batch
    torch.testing.assert_close(parts.model(z, 3).sample, unet(z, 3).sample, rtol=0, atol=0)


def test_from_pretrained_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no diffusion model folder at .*nowhere.*unet/config.json"):
        DiffusionDenoiser.from_pretrained(tmp_path / "nowhere", sigma=0.5)
    tiny_unet().save_pretrained(tmp_path / "half" / "unet")
    with pytest.raises(FileNotFoundError, match="lacks scheduler/scheduler_config.json"):
        DiffusionDenoiser.from_pretrained(tmp_path / "half", sigma=0.5)


@pytest.mark.slow
def test_defences_import_and_work_without_diffusers(tmp_path: Path) -> None:
    for sub, name in (("unet", "config.json"), ("scheduler", "scheduler_config.json")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_text("{}")
    code = f"""
import sys, types, torch
sys.modules["diffusers"] = None  # import diffusers -> ImportError
from art_ext.defences import DiffusionDenoiser
betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
sched = types.SimpleNamespace(alphas_cumprod=torch.cumprod(1 - betas, 0))
den = DiffusionDenoiser(lambda s, t: torch.zeros_like(s), sched, sigma=0.5, prediction_type="epsilon")
print(den.timestep)
try:
    DiffusionDenoiser.from_pretrained({str(tmp_path)!r}, sigma=0.5)
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "259"
    assert "art_ext[diffusion]" in lines[1]


# -- validation -----------------------------------------------------------------------------------------------


def test_inputs_are_validated_before_any_work() -> None:
    sched = linear_scheduler()
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=0.0)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=0.5, prediction_type="eps")
    with pytest.raises(ValueError, match=r"schedule reaches only 157\.4 \(pixel sigma 78\.7\)"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=100.0)
    with pytest.raises(ValueError, match="data_range must be finite with lo < hi"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=0.5, data_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="num_steps=3 is only used with multistep=True"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=0.5, num_steps=3)
    with pytest.raises(ValueError, match="num_steps=300 exceeds the 260 timesteps"):
        DiffusionDenoiser(Constant(0.0), sched, sigma=0.5, multistep=True, num_steps=300)
    with pytest.raises(TypeError, match="scheduler must expose alphas_cumprod .* or sigma_to_t"):
        DiffusionDenoiser(Constant(0.0), object(), sigma=0.5)
    with pytest.raises(ValueError, match="has no config.prediction_type"):
        DiffusionDenoiser(Constant(0.0), type("S", (), {"alphas_cumprod": sched.alphas_cumprod})(), sigma=0.5)
    den = DiffusionDenoiser(Constant(0.0), sched, sigma=0.5)
    with pytest.raises(ValueError, match=r"float tensor \[B, C, H, W\].*\(1, 16, 16\)"):
        den(torch.rand(1, 16, 16))
    bad = DiffusionDenoiser(Fixed(torch.zeros(2, 3, 16, 16)), sched, sigma=0.5)
    with pytest.raises(ValueError, match=r"returned shape \(2, 3, 16, 16\) for a sample of shape \(2, 1, 16, 16\)"):
        bad(torch.rand(2, 1, 16, 16))


# -- certification --------------------------------------------------------------------------------------------


class MeanThreshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5: [B, C, H, W] -> logits [B, 2]."""

    def forward(self, x):
        s = x.flatten(1).mean(1) - 0.5
        return torch.stack([torch.zeros_like(s), s], 1)


def test_certify_through_the_diffusion_denoiser_reports_pixel_units() -> None:
    sigma, n, alpha = 0.25, 200, 0.001
    base = DenoisedClassifier(DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=sigma),
                              MeanThreshold()).eval()
    x = torch.cat([torch.full((2, 1, 16, 16), 0.9), torch.full((1, 1, 16, 16), 0.1)])
    certs = certify(base, x, n0=10, n=n, sigma=sigma, alpha=alpha, num_classes=2, batch_size=128,
                    generator=torch.Generator().manual_seed(0))
    assert certs.label.tolist() == [1, 1, 0]
    assert certs.sigma.tolist() == [sigma] * 3  # sigma as given: not 2 sigma, not effective_sigma
    # unanimous votes: p_A_lower = alpha^(1/n), radius = sigma Phi^-1(p_A_lower) in pixel units (0.456 here)
    assert certs.counts_estimation.max(1).values.tolist() == [n] * 3
    p_low = torch.tensor(alpha ** (1 / n), dtype=torch.float64)
    torch.testing.assert_close(certs.p_a_lower, p_low.expand(3), rtol=1e-9, atol=0)
    torch.testing.assert_close(certs.radius, sigma * stats.normal_ppf(p_low).expand(3), rtol=1e-9, atol=0)
    assert certs.radius[0].item() == pytest.approx(0.4564, abs=1e-4)


# -- the DDPM recipe (for a zoo entry) ------------------------------------------------------------------------


def test_ddpm_recipe_is_deterministic_and_learns_epsilon() -> None:
    from art_ext.data import load_digits
    from art_ext.training import DiffusionTrainConfig

    def data(split):
        return load_digits(split).head(128)

    config = DiffusionTrainConfig(epochs=4, batch_size=32, lr=2e-3)
    abar = config.scheduler().alphas_cumprod
    g = torch.Generator().manual_seed(0)
    y0 = 2 * load_digits("val").head(64).x - 1
    t = torch.randint(0, 1000, (64,), generator=g)
    eps = torch.randn(y0.shape, generator=g)
    x_t = abar[t].sqrt().view(-1, 1, 1, 1) * y0 + (1 - abar[t]).sqrt().view(-1, 1, 1, 1) * eps

    def eps_mse(unet):
        with torch.no_grad():
            return float(((unet(x_t, t).sample - eps) ** 2).mean())

    a, b = tiny_unet(seed=5).train(), tiny_unet(seed=5)
    before = eps_mse(a.eval())
    with torch_threads(1):  # as the zoo trains (TRAINING_THREADS); also far faster on a shared machine
        run = config.fit(a, data)
        config.fit(b, data)
    assert not a.training and len(run.history) == 4
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        # same-kernel: two trainings with the same seed on this machine
        assert torch.equal(pa, pb)  # same seed, same weights
    assert eps_mse(a) < 0.9 * before  # held-out epsilon error falls
    with pytest.raises(ValueError, match="takes no guiding classifiers"):
        config.fit(a, data, classifiers=[MeanThreshold()])
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        DiffusionTrainConfig(beta_schedule="cosine")


# -- dtypes ---------------------------------------------------------------------------------------------------


def test_float64_float16_and_bfloat16_inputs_are_cast_once_to_the_models_dtype() -> None:
    """Issue 19 item 6: any floating input is cast once at ``forward`` to the model's dtype and the output is
    returned in the input's dtype (no "expected scalar type Double but found Float" deep inside)."""
    den = DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.5).eval()
    z = noisy_batch(3, shape=(3, 1, 16, 16))  # float32
    with torch.no_grad():
        ref = den(z)
        z64 = z.double()
        # float32 -> float64 -> float32 is exact, so the UNet runs the same kernels on the same float32 data
        # same-kernel: an exact float32/float64 round trip, then the same kernels
        assert torch.equal(den(z64), ref.double())
        for dtype in (torch.float16, torch.bfloat16):
            low = z.to(dtype)
            out = den(low)
            assert out.dtype == dtype
            # same-kernel: an exact float32/float64 round trip, then the same kernels
            assert torch.equal(out, den(low.float()).to(dtype))  # the same cast, done by hand
    den64 = DiffusionDenoiser(tiny_unet(dtype=torch.float64), linear_scheduler(), sigma=0.5).eval()
    with torch.no_grad():
        out = den64(z)  # a float64 model takes float32 input: computed in float64, returned in float32
        # same-kernel: an exact float32/float64 round trip, then the same kernels
        assert out.dtype == torch.float32 and torch.equal(out, den64(z.double()).float())
    x = z64.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(den(x).sum(), x)  # the casts are differentiable
    assert grad.dtype == torch.float64 and float(grad.abs().max()) > 0


def test_a_model_with_mixed_parameter_dtypes_is_refused_with_the_dtypes_named() -> None:
    unet = tiny_unet()
    unet.conv_in.double()
    den = DiffusionDenoiser(unet, linear_scheduler(), sigma=0.5).eval()
    with pytest.raises(ValueError, match=r"several floating dtypes \['torch.float32', 'torch.float64'\]"):
        den(noisy_batch(0, shape=(1, 1, 16, 16)))
    with pytest.raises(ValueError, match=r"got \(2, 1, 16, 16\) of dtype torch.int64"):
        DiffusionDenoiser(tiny_unet(), linear_scheduler(), sigma=0.5)(torch.zeros(2, 1, 16, 16, dtype=torch.long))
