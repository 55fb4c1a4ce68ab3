"""Diffusion denoised smoothing: an off-the-shelf diffusion model as the denoiser of denoised smoothing.

Implements Carlini, Tramer, Dvijotham, Rice, Sun & Kolter (ICLR 2023, "(Certified!!) Adversarial Robustness for
Free!", arXiv:2206.10550, Alg. 1-2, Eq. 4-7) with the reference's conventions (ethz-spylab/diffusion_denoised_smoothing,
``certify.py`` t* search and ``DRM.py`` one-shot ``denoise``), for any model with the diffusers ``UNet2DModel`` call
convention and any scheduler that exposes ``alphas_cumprod``.

The noise-space contract of art_ext holds unchanged: the smoothing layer (``art_ext.certify``, ``SmoothedClassifier``)
adds pixel noise ``x + sigma * e`` in [0, 1] units, and ``DiffusionDenoiser`` is a deterministic function of that noisy
image. It never draws noise itself (the reference draws it inside the model through the scheduler's ``q_sample``; here
the smoothing layer's noise plays that role, see below), so certify the composition
``DenoisedClassifier(DiffusionDenoiser(...), classifier)`` exactly like any other base classifier: the certificate's
sigma is the sigma given and its radius sigma * Phi^-1(p_A_lower) is in pixel units. No factor 2 appears in any
reported number; the 2 of a [-1, 1] model is internal to the denoiser.

Sigma-to-timestep map (exact, conservative). Let the model's data range be [lo, hi] (s = hi - lo; s = 2 for the usual
[-1, 1] models, s = 1 for [0, 1] models) and A(u) = lo + s * u the affine map from pixels. For a noisy pixel image
z = x + sigma * e the denoiser feeds the model

    x_t = sqrt(abar_t) * A(z) = sqrt(abar_t) * A(x) + sqrt(abar_t) * s * sigma * e.

The forward process of the model is x_t ~ N(sqrt(abar_t) * A(x), (1 - abar_t) I) (Ho et al. 2020, Eq. 4), so x_t is
exactly a forward-process sample when abar_t * s^2 * sigma^2 = 1 - abar_t, i.e. sqrt((1 - abar_t) / abar_t) = s * sigma
(Carlini et al., Eq. 4, with their sigma in [-1, 1] units = 2 * our pixel sigma). Schedules are discrete, so the
denoiser takes t* = the first timestep index with sqrt((1 - abar_t*) / abar_t*) >= s * sigma and tells the model that
noise level: ``effective_sigma`` = sqrt((1 - abar_t*) / abar_t*) / s >= sigma in pixel units. Then
x_t = sqrt(abar_t*) A(x) + sqrt(1 - abar_t*) * (sigma / effective_sigma) * e: the forward process at t* with its noise
scaled by sigma / effective_sigma (0.9937 / 0.9952 / 0.9998 at sigma 0.25 / 0.5 / 1.0 on the linear schedule), so the
model is told at most slightly more noise than there is. This is the reference's rule (first t with ratio >= 2 sigma).
The certificate does not depend on the rounding at all (it holds for any deterministic denoiser); only the quality of
the denoising does.

Indexing: ``timestep`` is the 0-based index into ``scheduler.alphas_cumprod`` and the value fed to the model, the
convention of diffusers schedulers and of the reference (guided-diffusion indexes ``alphas_cumprod[t]`` and feeds
``t``). On the linear schedule of google/ddpm-cifar10-32 (T = 1000, betas 1e-4 .. 0.02) t* = 145 / 259 / 396 at
sigma = 0.25 / 0.5 / 1.0 with effective sigma 0.2516 / 0.5024 / 1.0002; Carlini's 1-based t would read 146 / 260 / 397.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from art_ext import _art
from art_ext._optional import require
from art_ext.ops import validation

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


@dataclass(frozen=True)
class DiffusionDenoiserConfig:
    """Parameters of ``DiffusionDenoiser`` (validated on construction).

    Attributes:
        sigma: Pixel-space noise level of the smoothing layer ([0, 1] units, > 0).
        data_range: (lo, hi), the range the diffusion model was trained on: (-1, 1) for diffusers / DDPM models,
            (0, 1) for models trained on raw pixels.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"`` (``None``: read from the scheduler).
        clip: Clip the x0 estimate to ``data_range`` (so the output lies in [0, 1]), as the reference's
            ``clip_denoised=True``.
        multistep: Run a deterministic reverse chain from t* instead of the one-shot x0 estimate.
        num_steps: Model calls of the multistep chain (1 .. t* + 1; ``None`` = t* + 1, every timestep down to 0).
        autocast_dtype: Run the model under ``torch.autocast`` with this dtype on CUDA inputs (``None`` = off).
    """

    sigma: float
    data_range: tuple[float, float] = (-1.0, 1.0)
    prediction_type: str | None = None
    clip: bool = True
    multistep: bool = False
    num_steps: int | None = None
    autocast_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", validation.check_sigma(self.sigma))
        try:
            lo, hi = (float(v) for v in self.data_range)
        except (TypeError, ValueError):
            raise ValueError(f"data_range must be a pair (lo, hi) of real numbers, got {self.data_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"data_range must be finite with lo < hi, e.g. (-1.0, 1.0), got {self.data_range!r}")
        object.__setattr__(self, "data_range", (lo, hi))
        if self.prediction_type is not None and self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES} or None, got {self.prediction_type!r}")
        for name in ("clip", "multistep"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.num_steps is not None:
            validation.check_positive_int(self.num_steps, "num_steps")
            if not self.multistep:
                raise ValueError(f"num_steps={self.num_steps} is only used with multistep=True; pass multistep=True "
                                 "or leave num_steps=None")
        if self.autocast_dtype is not None and self.autocast_dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"autocast_dtype must be torch.float16, torch.bfloat16 or None, got "
                             f"{self.autocast_dtype!r}")


def timestep_for_sigma(alphas_cumprod: torch.Tensor | Sequence[float], sigma: float,
                       data_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[int, float]:
    """t* and its pixel noise level for a pixel-space sigma (Carlini et al. 2023, Alg. 2, Eq. 4; the reference rule).

    t* is the first 0-based index t with sqrt((1 - abar_t) / abar_t) >= (hi - lo) * sigma, computed in float64 from the
    schedule's ``alphas_cumprod``; the returned effective sigma is sqrt((1 - abar_t*) / abar_t*) / (hi - lo) >= sigma.

    Args:
        alphas_cumprod: abar_0 .. abar_{T-1} [T], decreasing, in (0, 1].
        sigma: Pixel noise level (> 0). data_range: (lo, hi) of the diffusion model.
    Returns:
        (t*, effective_sigma).
    Raises:
        ValueError: on a malformed schedule, or a sigma above the schedule's largest noise level.

    Examples:
        >>> betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        >>> t, eff = timestep_for_sigma(torch.cumprod(1 - betas, 0), 0.5)
        >>> t, round(eff, 4)
        (259, 0.5024)
    """
    sigma = validation.check_sigma(sigma)
    lo, hi = DiffusionDenoiserConfig(sigma, data_range).data_range
    abar = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).flatten()  # [T]
    if abar.numel() == 0 or not bool(torch.isfinite(abar).all()) or bool((abar <= 0).any() | (abar > 1).any()):
        raise ValueError("alphas_cumprod must be a non-empty sequence of finite values in (0, 1], got "
                         f"{abar.numel()} values in [{float(abar.min()) if abar.numel() else float('nan'):.4g}, "
                         f"{float(abar.max()) if abar.numel() else float('nan'):.4g}]")
    if abar.numel() > 1 and bool((abar[1:] > abar[:-1]).any()):
        raise ValueError("alphas_cumprod must be non-increasing (noise grows with the timestep)")
    ratio = ((1 - abar) / abar).sqrt()  # [T] noise-to-signal ratio in model units
    target = (hi - lo) * sigma
    reached = torch.nonzero(ratio >= target)
    if reached.numel() == 0:
        raise ValueError(f"sigma={sigma} (pixel units) needs a noise-to-signal ratio of {target:.4g} in the model's "
                         f"range {data_range}, but the schedule reaches only {float(ratio[-1]):.4g} "
                         f"(pixel sigma {float(ratio[-1]) / (hi - lo):.4g}); use a smaller sigma")
    t = int(reached[0])
    return t, float(ratio[t]) / (hi - lo)


def _model_output(out: Any) -> torch.Tensor:
    """The tensor of a diffusers-style call: ``.sample`` of an output object, a tuple's first element, or itself."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the diffusion model must return a tensor, an object with .sample or a tuple of tensors, got "
                    f"{type(out).__name__}")


class DiffusionDenoiser(nn.Module):
    """Diffusion denoiser for denoised smoothing: noisy pixel images [B, C, H, W] -> denoised images in [0, 1].

    One shot (Carlini et al. 2023, Alg. 1 and Eq. 6-7; the reference's ``DRM.denoise(multistep=False)``): scale the
    noisy image to the model's range and by sqrt(abar_t*), call the model once at t*, and return its x0 estimate

    * ``epsilon``: x0 = (x_t - sqrt(1 - abar) * eps_hat) / sqrt(abar)   (Ho et al. 2020, Eq. 15),
    * ``sample``: x0 = model output,
    * ``v_prediction``: x0 = sqrt(abar) * x_t - sqrt(1 - abar) * v_hat  (Salimans & Ho 2022, Eq. 9-10),

    mapped back to pixels (and clipped to [0, 1] when ``clip``). A learned-variance model (2C output channels, as
    improved/guided-diffusion) contributes its first C channels. A model that predicts eps = c everywhere therefore
    returns z - c * effective_sigma: the factor 2 of [-1, 1] data cancels.

    Multistep (``multistep=True``): the deterministic DDIM chain (Song et al. 2021, Eq. 12 with eta = 0) over
    ``num_steps`` timesteps from t* to 0 on the scheduler's ``alphas_cumprod``, clipping each x0 estimate when ``clip``.
    The reference runs the stochastic DDPM chain instead; a deterministic one keeps the base classifier a fixed function
    of its input, as CERTIFY's i.i.d. draws need. With ``num_steps=1`` it is the one-shot estimate.

    Gradients: exact autograd through the model whenever autograd is on and the input (or a model parameter) requires
    grad; otherwise the model runs under ``torch.no_grad`` (inside ``art_ext.certify`` it runs under the sampler's
    ``torch.inference_mode``). The model's and scheduler's parameters are never modified; put the module in eval mode.

    Args:
        model: ``model(sample, timestep)`` -> ``.sample`` / tuple / tensor [B, C or 2C, H, W] (diffusers
            ``UNet2DModel`` convention); ``timestep`` is an int64 tensor [B].
        scheduler: Any object with ``alphas_cumprod`` [T] (diffusers DDPM/DDIM/... schedulers); its
            ``config.prediction_type`` is read when ``prediction_type`` is ``None``. Or a sigma-parameterised
            (consistency-model) scheduler with ``sigma_to_t``, ``get_scalings_for_boundary_condition`` and
            ``config.sigma_min / sigma_max / sigma_data`` (diffusers ``CMStochasticIterativeScheduler``): the model
            is then called once at the exact noise level (hi - lo) * sigma, one shot only.
        sigma: Pixel noise level of the smoothing layer (> 0).
        data_range: Range of the model's training data, (-1, 1) or (0, 1) (any lo < hi).
        prediction_type: ``"epsilon"``, ``"sample"``, ``"v_prediction"`` or ``None`` (from the scheduler).
        clip: Clip the x0 estimate to the data range (output in [0, 1]).
        multistep: Deterministic reverse chain from t* instead of one shot. num_steps: its model calls (see config).
        autocast_dtype: ``torch.float16`` / ``torch.bfloat16`` to run the model under autocast on CUDA.

    Attributes:
        timestep: t*, the 0-based index into ``alphas_cumprod`` fed to the model (a consistency model: the continuous
            time ``scheduler.sigma_to_t((hi - lo) * sigma)``).
        effective_sigma: The pixel noise level the model is told, sqrt((1 - abar_t*) / abar_t*) / (hi - lo) >= sigma.

    Examples:
        >>> from diffusers import DDPMScheduler
        >>> class ZeroEps(nn.Module):  # predicts no noise: one-shot denoising is the identity
        ...     def forward(self, sample, timestep):
        ...         return torch.zeros_like(sample)
        >>> den = DiffusionDenoiser(ZeroEps(), DDPMScheduler(num_train_timesteps=1000), sigma=0.25).eval()
        >>> den.timestep, round(den.effective_sigma, 4)
        (145, 0.2516)
        >>> z = torch.tensor([-0.2, 0.3, 1.4]).view(1, 1, 1, 3)  # noisy pixels, may leave [0, 1]
        >>> [round(v, 6) for v in den(z).flatten().tolist()]  # the input, clipped to [0, 1]
        [0.0, 0.3, 1.0]
    """

    def __init__(self, model: nn.Module, scheduler: Any, *, sigma: float, data_range: tuple[float, float] = (-1.0, 1.0),
                 prediction_type: str | None = None, clip: bool = True, multistep: bool = False,
                 num_steps: int | None = None, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be a callable module (diffusers UNet2DModel convention), got "
                            f"{type(model).__name__}")
        has_abar = getattr(scheduler, "alphas_cumprod", None) is not None
        #: consistency-model style schedulers take the noise level directly (no alphas_cumprod)
        self.sigma_parameterised = not has_abar and all(
            callable(getattr(scheduler, name, None)) for name in ("sigma_to_t", "get_scalings_for_boundary_condition"))
        if not has_abar and not self.sigma_parameterised:
            raise TypeError(f"scheduler must expose alphas_cumprod (a diffusers DDPM/DDIM-style scheduler) or "
                            f"sigma_to_t and get_scalings_for_boundary_condition (a consistency-model scheduler), got "
                            f"{type(scheduler).__name__}")
        if self.sigma_parameterised:
            if prediction_type is not None or multistep:
                raise ValueError(f"{type(scheduler).__name__} is sigma-parameterised (a consistency model): it takes "
                                 f"no prediction_type and no multistep chain, got prediction_type={prediction_type!r}, "
                                 f"multistep={multistep}")
        elif prediction_type is None:
            prediction_type = getattr(getattr(scheduler, "config", None), "prediction_type", None)
            if prediction_type is None:
                raise ValueError(f"{type(scheduler).__name__} has no config.prediction_type; pass prediction_type= "
                                 f"one of {PREDICTION_TYPES}")
        self.config = DiffusionDenoiserConfig(sigma, data_range, prediction_type, clip, multistep, num_steps,
                                              autocast_dtype)
        self.model = model
        self.scheduler = scheduler
        self.timestep: int | float
        if self.sigma_parameterised:
            self._init_sigma_parameterised(scheduler)
            return
        abar = torch.as_tensor(scheduler.alphas_cumprod).detach().to("cpu", torch.float64).flatten()  # [T]
        self.timestep, self.effective_sigma = timestep_for_sigma(abar, self.config.sigma, self.config.data_range)
        steps = self.timestep + 1 if num_steps is None else num_steps
        if multistep and steps > self.timestep + 1:
            raise ValueError(f"num_steps={num_steps} exceeds the {self.timestep + 1} timesteps from t*={self.timestep} "
                             "down to 0; use at most that many")
        # the chain's timesteps t* = tau_0 > ... > tau_{k-1} (= 0 when k > 1); distinct since the spacing is >= 1
        taus = torch.linspace(self.timestep, 0, steps if multistep else 1, dtype=torch.float64).round().long()
        self._taus: list[int] = taus.tolist()
        self._abar: list[float] = [float(abar[t]) for t in self._taus]

    def _init_sigma_parameterised(self, scheduler: Any) -> None:
        """Consistency models (Song et al. 2023, arXiv:2303.01469, App. C): D(x, s) = c_skip(s) x
        + c_out(s) F(c_in(s) x, t(s)) on x = A(z) = A(x0) + s_model e, the VE forward process at s_model =
        (hi - lo) * sigma exactly (no rounding: the noise level is continuous), so effective_sigma = sigma and
        ``timestep`` = t(s_model)."""
        lo, hi = self.config.data_range
        sigma_model = (hi - lo) * self.config.sigma
        cfg = scheduler.config
        sigma_min, sigma_max, sigma_data = float(cfg.sigma_min), float(cfg.sigma_max), float(cfg.sigma_data)
        if not sigma_min <= sigma_model <= sigma_max:
            raise ValueError(f"sigma={self.config.sigma} is {sigma_model:.4g} in the model's range {(lo, hi)}, outside "
                             f"the scheduler's [sigma_min, sigma_max] = [{sigma_min}, {sigma_max}]")
        c_skip, c_out = scheduler.get_scalings_for_boundary_condition(torch.tensor(sigma_model, dtype=torch.float64))
        self._consistency = (1.0 / math.sqrt(sigma_model**2 + sigma_data**2), float(c_skip), float(c_out))
        self.timestep, self.effective_sigma = float(scheduler.sigma_to_t(sigma_model)), self.config.sigma
        self._taus, self._abar = [], []

    @property
    def sigma(self) -> float:
        return self.config.sigma

    @property
    def prediction_type(self) -> str:
        return "consistency" if self.sigma_parameterised else str(self.config.prediction_type)

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, timestep={self.timestep}, effective_sigma={self.effective_sigma:.6g}, "
                f"prediction_type={self.prediction_type!r}, data_range={self.config.data_range}, "
                f"multistep={self.config.multistep}, steps={len(self._taus)}")

    # -- core -----------------------------------------------------------------------------------------------------
    def _call_model(self, sample: torch.Tensor, t: int | float) -> torch.Tensor:
        """Model output at timestep t (an index, or a continuous time), first C channels, input dtype: [B, C, H, W]."""
        dtype = torch.long if isinstance(t, int) else sample.dtype
        timesteps = torch.full((sample.shape[0],), t, dtype=dtype, device=sample.device)  # [B]
        use_autocast = self.config.autocast_dtype is not None and sample.device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=self.config.autocast_dtype) if use_autocast else nullcontext()
        with ctx:
            out = _model_output(self.model(sample, timesteps))
        channels = sample.shape[1]
        if out.dim() != 4 or out.shape[0] != sample.shape[0] or out.shape[2:] != sample.shape[2:] \
                or out.shape[1] not in (channels, 2 * channels):
            raise ValueError(f"the diffusion model returned shape {tuple(out.shape)} for a sample of shape "
                             f"{tuple(sample.shape)}; expected [B, C, H, W] or [B, 2C, H, W] (learned variance)")
        return out[:, :channels].to(sample.dtype)  # learned variance: the first C channels are the prediction

    def _x0(self, x_t: torch.Tensor, t: int, abar: float) -> torch.Tensor:
        """One x0 estimate in the model's range from x_t at timestep t: [B, C, H, W]."""
        out = self._call_model(x_t, t)
        a, b = math.sqrt(abar), math.sqrt(1.0 - abar)
        if self.prediction_type == "epsilon":
            x0 = (x_t - b * out) / a
        elif self.prediction_type == "sample":
            x0 = out
        else:  # v_prediction: v = a * eps - b * x0 and x_t = a * x0 + b * eps
            x0 = a * x_t - b * out
        if self.config.clip:
            lo, hi = self.config.data_range
            x0 = x0.clamp(lo, hi)
        return x0

    def _denoise(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self.config.data_range
        if self.sigma_parameterised:
            c_in, c_skip, c_out = self._consistency
            y = lo + (hi - lo) * z  # [B, C, H, W]: the VE forward process at sigma_model
            x0 = c_skip * y + c_out * self._call_model(c_in * y, self.timestep)
            if self.config.clip:
                x0 = x0.clamp(lo, hi)
            return (x0 - lo) / (hi - lo)
        x_t = math.sqrt(self._abar[0]) * (lo + (hi - lo) * z)  # [B, C, H, W]; forward process at t* (module doc)
        x0 = self._x0(x_t, self._taus[0], self._abar[0])
        for i in range(1, len(self._taus)):  # DDIM, eta = 0 (Song et al. 2021, Eq. 12)
            a_prev, a_next = self._abar[i - 1], self._abar[i]
            eps = (x_t - math.sqrt(a_prev) * x0) / math.sqrt(1.0 - a_prev)  # consistent with the (clipped) x0
            x_t = math.sqrt(a_next) * x0 + math.sqrt(1.0 - a_next) * eps
            x0 = self._x0(x_t, self._taus[i], a_next)
        return (x0 - lo) / (hi - lo)  # pixels; in [0, 1] when clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise noisy pixel images x [B, C, H, W] (any real values: the smoothing noise is unclipped).

        Dtypes: x of any floating dtype (float16, bfloat16, float32, float64) is cast once, here, to the dtype of the
        model's parameters (x's own dtype for a parameter-free model), the denoising runs in that dtype, and the
        output is returned in x's dtype (the casts are differentiable). A model whose parameters mix floating dtypes
        is refused with a message naming them.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            dtype = f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""
            raise ValueError(f"DiffusionDenoiser expects a float tensor [B, C, H, W] of noisy pixel images, got "
                             f"{shape}{dtype}")
        compute = _art.model_dtype(self.model, default=x.dtype)  # the one cast (see above)
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.model.parameters()))
        with nullcontext() if needs_grad else torch.no_grad():
            return self._denoise(x.to(compute)).to(x.dtype)

    # -- loading --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, *, sigma: float, model_subfolder: str = "unet",
                        scheduler_subfolder: str = "scheduler", **kwargs: Any) -> DiffusionDenoiser:
        """Load a local diffusers folder, offline (``local_files_only=True``; nothing is downloaded).

        Layout: ``path/<model_subfolder>/config.json`` (+ weights) and ``path/<scheduler_subfolder>/
        scheduler_config.json``, i.e. the folder ``DDPMPipeline(unet, scheduler).save_pretrained(path)`` writes (its
        ``model_index.json`` is not needed), or ``unet.save_pretrained(path / "unet")`` plus
        ``scheduler.save_pretrained(path / "scheduler")``. The classes are read from each config's ``_class_name``.
        The model is returned in eval mode.

        Args:
            path: The folder. sigma: Pixel noise level. model_subfolder / scheduler_subfolder: Subfolder names.
            **kwargs: The other keywords of ``DiffusionDenoiser``.
        Raises:
            FileNotFoundError: when the folder or one of its two parts is missing (the message names the layout).
            ImportError: without diffusers (``pip install "art_ext[diffusion]"``).
        """
        root = Path(path).expanduser()
        layout = (f"expected a local diffusers folder with {model_subfolder}/config.json and "
                  f"{scheduler_subfolder}/scheduler_config.json (as DDPMPipeline.save_pretrained writes)")
        if not root.is_dir():
            raise FileNotFoundError(f"no diffusion model folder at {str(root)!r}: {layout}")
        parts = {model_subfolder: "config.json", scheduler_subfolder: "scheduler_config.json"}
        missing = [f"{sub}/{name}" for sub, name in parts.items() if not (root / sub / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{str(root)!r} lacks {', '.join(missing)}: {layout}")
        diffusers = require("diffusers")

        def load(sub: str, config_name: str, default: str) -> Any:
            class_name = json.loads((root / sub / config_name).read_text()).get("_class_name", default)
            loader = getattr(diffusers, class_name, None)
            if loader is None or not hasattr(loader, "from_pretrained"):
                raise ValueError(f"{root / sub / config_name} names class {class_name!r}, which diffusers "
                                 f"{diffusers.__version__} does not provide")
            return loader.from_pretrained(root, subfolder=sub, local_files_only=True)

        model = load(model_subfolder, "config.json", "UNet2DModel").eval()
        scheduler = load(scheduler_subfolder, "scheduler_config.json", "DDPMScheduler")
        return cls(model, scheduler, sigma=sigma, **kwargs)
