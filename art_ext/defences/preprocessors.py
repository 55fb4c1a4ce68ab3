"""The ART preprocessing defences of art_ext: ``DenoiserPreprocessor`` (denoised smoothing) and
``NormalizedNoisePreprocessor`` (Kumar & Narayan's normalized noise + UNet).

They subclass ART's ``PreprocessorPyTorch``, so this module imports ART; the torch parts they run
(``denoised_smoothing.denoise``, ``normalized_noise.NormalizedReconstructor``) live in modules that do not, and
``art_ext.defences`` loads this module only when one of these names is asked for.

Checks (an ART estimator does not tell its preprocessing defences who it is, so they are made twice):

* ``check_estimator(estimator)``: the estimator feeds the preprocessor what it expects (channel-first images with the
  denoiser's channel count; for ``NormalizedNoisePreprocessor`` also ``clip_values`` (0, 1) and a ``preprocessing``
  (mean, std) equal to the reconstructor's). art_ext's attack adapters call it for every preprocessing defence of
  the estimator they attack; call it yourself after building a ``PyTorchClassifier``.
* every call (``forward``, ``estimate_forward``, the numpy ``__call__``): a float batch [N, C, H, W] with the
  denoiser's channel count (a channels-last batch is named as such) and finite values, refused with a one-line
  error before the denoiser runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from art_ext import _art
from art_ext.defences.denoised_smoothing import DenoiserPreprocessorConfig, denoise
from art_ext.defences.normalized_noise import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NormalizedReconstructor,
    noise_space_for,
)
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams

__all__ = ["DenoiserPreprocessor", "NormalizedNoisePreprocessor", "IMAGENET_MEAN", "IMAGENET_STD"]


def declared_channels(denoiser: nn.Module) -> int | None:
    """The channel count a denoiser takes: its ``in_channels`` (DnCNN, UNet, Conv2d), a ``NormalizedReconstructor``'s
    number of mean/std values, else the ``in_channels`` of its first ``Conv2d``; None when nothing declares one."""
    if isinstance(denoiser, NormalizedReconstructor):
        return len(denoiser.stats[0])
    declared = getattr(denoiser, "in_channels", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    for module in denoiser.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def check_batch(x: object, channels: int | None, where: str) -> None:
    """One-line refusal of a batch the denoiser cannot take: not a float tensor [N, C, H, W], a channel count other
    than the denoiser's (a channels-last batch is named), NaN or infinite values."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where} expects a float tensor [N, C, H, W], got {shape}; channels first")
    if channels is not None and x.shape[1] != channels:
        hint = (" (it looks channels-last: build the PyTorchClassifier with channels_first=True and [N, C, H, W] "
                "inputs)" if x.shape[-1] == channels else "")
        raise ValueError(f"{where} got a batch of shape {tuple(x.shape)}; its denoiser takes {channels} channel(s), "
                         f"expected [N, {channels}, H, W]{hint}")
    finite = torch.isfinite(x.detach())
    if not bool(finite.all()):
        raise ValueError(f"{where} got {int((~finite).sum())} NaN or infinite values; expected finite images "
                         f"[N, C, H, W] (the denoiser would turn them into NaN outputs silently)")


def _preprocessor_base() -> type:
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

    return PreprocessorPyTorch


class DenoiserPreprocessor(_preprocessor_base()):  # type: ignore[misc]
    """ART ``PreprocessorPyTorch`` that applies a denoiser before the classifier (and before ART's mean/std).

    ``PyTorchClassifier`` differentiates through ``forward`` with autograd and never calls ``estimate_forward``
    (ART issue #1526), so the BPDA identity gradient is expressed inside ``forward`` as a straight-through estimator;
    ``estimate_forward`` returns the same tensor for ART's numpy-compatibility ``estimate_gradient``.

    Args:
        denoiser: [B, C, H, W] -> [B, C, H, W] in pixel units; moved to the estimator's device and put in eval mode.
        gradient: ``"exact"`` or ``"bpda"``.
        batch_size: Images per denoiser call (``None`` = all at once).
        device_type: ``"cpu"`` or ``"gpu"`` (ART's convention; must match the classifier's estimator).
        apply_fit: Apply during ART ``fit`` (default False: the defence is for inference).
        apply_predict: Apply during ``predict`` / gradients (default True).

    Examples:
        >>> import numpy as np
        >>> from art_ext.testing import art_classifier, tiny_cnn
        >>> pre = DenoiserPreprocessor(nn.Conv2d(1, 1, 3, padding=1))
        >>> est = art_classifier(tiny_cnn(), clip_values=(0.0, 1.0), preprocessing_defences=[pre])
        >>> pre.check_estimator(est)  # channel-first [N, 1, H, W], as the denoiser takes
        >>> est.predict(np.zeros((2, 1, 8, 8), dtype=np.float32)).shape
        (2, 10)
        >>> est.predict(np.full((2, 1, 8, 8), np.nan, dtype=np.float32))
        Traceback (most recent call last):
        ...
        ValueError: DenoiserPreprocessor got 128 NaN or infinite values; expected finite images ...
    """

    params = ["gradient", "batch_size"]

    def __init__(
        self, denoiser: nn.Module, *, gradient: str = "exact", batch_size: int | None = None,
        device_type: str = "cpu", apply_fit: bool = False, apply_predict: bool = True,
    ) -> None:
        if device_type not in ("cpu", "gpu"):
            raise ValueError(f"device_type must be 'cpu' or 'gpu' (ART's convention), got {device_type!r}")
        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"denoiser must be a torch.nn.Module [B, C, H, W] -> [B, C, H, W], got "
                            f"{type(denoiser).__name__}")
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.gradient, self.batch_size = gradient, batch_size
        self._check_params()
        self.denoiser = denoiser.to(self.device).eval()
        self._channels = declared_channels(denoiser)

    def _check_params(self) -> None:  # ART's set_params() re-runs this
        self._config = DenoiserPreprocessorConfig(self.gradient, self.batch_size)

    def set_params(self, **kwargs: Any) -> None:
        """ART's ``set_params``, refusing keywords outside ``params`` (ART ignores them) and leaving every parameter
        as it was when the new values are refused."""
        _art.refuse_unknown_kwargs(kwargs, self.params, f"{type(self).__name__}.set_params")
        previous = {key: getattr(self, key) for key in kwargs}
        for key, value in kwargs.items():
            setattr(self, key, value)
        try:
            self._check_params()
        except Exception:
            for key, value in previous.items():
                setattr(self, key, value)
            self._check_params()
            raise

    def check_estimator(self, estimator: Any) -> None:
        """Raise ``ValueError`` unless ``estimator`` (an ART ``PyTorchClassifier``) hands this preprocessor
        channel-first images [N, C, H, W] with the denoiser's channel count C."""
        _art.check_pytorch_classifier(estimator)
        shape = tuple(int(d) for d in estimator.input_shape)
        expected = f"[N, {self._channels}, H, W]" if self._channels is not None else "[N, C, H, W]"
        if not estimator.channels_first:
            raise ValueError(f"the estimator has channels_first=False (input_shape {shape}); {type(self).__name__} "
                             f"expects channel-first images {expected}: build the PyTorchClassifier with "
                             "channels_first=True and transpose the inputs")
        if len(shape) != 3 or (self._channels is not None and shape[0] != self._channels):
            raise ValueError(f"the estimator's input_shape is {shape}; {type(self).__name__}'s denoiser takes "
                             f"images {expected} (input_shape ({self._channels or 'C'}, H, W))")

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x, self._channels, type(self).__name__)
        return x

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return denoise(self.denoiser, self._checked(x), self._config), y

    def estimate_forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return denoise(self.denoiser, self._checked(x), self._config)

    def __call__(self, x: Any, y: Any = None) -> tuple[Any, Any]:
        """ART's numpy entry point: the values are checked (finite) once here, then ``forward`` runs in torch.

        (Inside an estimator, ART calls ``forward`` on tensors directly; its inputs may lie outside [0, 1] because
        randomized smoothing adds unclipped noise before the defences, so no range is imposed.)
        """
        if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"x must be a float numpy array [N, C, H, W], got {type(x).__name__} "
                            f"{getattr(x, 'dtype', '')}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x contains {int((~np.isfinite(x)).sum())} NaN or infinite values; expected finite "
                             "images [N, C, H, W]")
        return super().__call__(x.astype(np.float32, copy=False), y)


class NormalizedNoisePreprocessor(DenoiserPreprocessor):
    """ART ``PreprocessorPyTorch``: noise after normalization, then the UNet, returning pixels (Kumar & Narayan).

    ART applies preprocessing defences to [0, 1] pixels and its ``preprocessing=(mean, std)`` standardisation after
    them. This preprocessor therefore normalizes with the reconstructor's (mean, std), which should be the
    estimator's own (``check_estimator`` verifies it), adds fresh noise of std ``sigma`` there (``noise="pixel"``:
    in pixels), reconstructs pixels with the UNet, and hands them to ART's standardisation and the classifier.

    Noise keyed per image: each ``forward`` takes one draw from the generator and derives one ``NoiseKeys`` key per
    image of the batch it receives; image i's noise is a function of that draw and i only, not of the other images
    or of the denoiser's ``batch_size``. ART's ``predict``, ``loss_gradient`` and ``class_gradient`` apply the
    preprocessing to the whole array of a call before batching, so there the noise is keyed per image per call.
    (A smoothing estimator that feeds this preprocessor chunks of noisy samples calls it once per chunk: its base
    is then random, not the fixed function that CERTIFY needs; use ``NormalizedNoiseDenoiser.certify`` instead.)

    Args:
        reconstructor: A ``NormalizedReconstructor`` with ``output_space="pixel"``.
        sigma: Noise std in the noise space's units (>= 0; 0 = reconstruction only).
        noise: ``"normalized"`` (default) or ``"pixel"``.
        gradient: ``"exact"`` (autograd through the UNet; the noise is additive, so d/dx is exact) or ``"bpda"``
            (identity backward pass through noise + UNet).
        seed: Seeds the noise generator (None: torch's global generator).
        batch_size, device_type, apply_fit, apply_predict: As ``DenoiserPreprocessor``.

    Examples:
        >>> import numpy as np
        >>> from art.estimators.classification import PyTorchClassifier
        >>> from art_ext.testing import tiny_cnn
        >>> rec = NormalizedReconstructor(nn.Conv2d(3, 3, 1), IMAGENET_MEAN, IMAGENET_STD).eval()
        >>> pre = NormalizedNoisePreprocessor(rec, 0.25, gradient="bpda", seed=0)
        >>> est = PyTorchClassifier(tiny_cnn(in_channels=3), nn.CrossEntropyLoss(), (3, 8, 8), 10,
        ...                         clip_values=(0.0, 1.0), preprocessing=(np.array(IMAGENET_MEAN),
        ...                         np.array(IMAGENET_STD)), preprocessing_defences=[pre])
        >>> pre.check_estimator(est)  # the noise goes in after the estimator's own normalization
        >>> est.predict(np.zeros((2, 3, 8, 8), dtype=np.float32)).shape
        (2, 10)
    """

    params = ["sigma", "noise", "gradient", "batch_size"]

    def __init__(self, reconstructor: NormalizedReconstructor, sigma: float, *, noise: str = "normalized",
                 gradient: str = "exact", seed: int | None = None, batch_size: int | None = None,
                 device_type: str = "cpu", apply_fit: bool = False, apply_predict: bool = True) -> None:
        if not isinstance(reconstructor, NormalizedReconstructor):
            raise TypeError(f"reconstructor must be a NormalizedReconstructor, got {type(reconstructor).__name__}")
        if reconstructor.output_space != "pixel":
            raise ValueError("the ART adapter needs a reconstructor with output_space='pixel' (ART's own "
                             f"standardisation follows it), got {reconstructor.output_space!r}")
        self.sigma, self.noise, self._stats = sigma, noise, reconstructor.stats
        super().__init__(reconstructor, gradient=gradient, batch_size=batch_size, device_type=device_type,
                         apply_fit=apply_fit, apply_predict=apply_predict)
        self._generator = _art.generator_for(seed, self.device)

    def _check_params(self) -> None:  # ART's set_params() re-runs this
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not (
                math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0 (noise-space units), got {self.sigma!r}")
        self.noise_space = noise_space_for(self.noise, *self._stats)
        super()._check_params()

    def check_estimator(self, estimator: Any) -> None:
        """Raise ``ValueError`` unless ``estimator`` feeds this preprocessor what it expects: ``clip_values`` None or
        (0, 1) ([0, 1] pixels, the range of mean / std), channel-first inputs with the reconstructor's channel count,
        and a ``preprocessing`` (mean, std) equal to the reconstructor's, i.e. the noise goes in after the
        estimator's own normalization."""
        own = _art.estimator_normalization(estimator)  # checks it is a PyTorchClassifier
        _art.check_pixel_clip_values(estimator)
        channels = len(self._stats[0])
        if not estimator.channels_first:
            raise ValueError(f"the estimator has channels_first=False (input_shape {tuple(estimator.input_shape)}); "
                             f"the preprocessor expects channel-first images [N, {channels}, H, W]")
        shape = tuple(estimator.input_shape)
        if len(shape) != 3 or shape[0] != channels:
            raise ValueError(f"the estimator's input_shape {shape} has {shape[0] if shape else 0} channel(s); the "
                             f"reconstructor has {channels} (expected input_shape ({channels}, H, W))")
        mine = self._stats
        if own is None or not (torch.allclose(torch.tensor(own[0]), torch.tensor(mine[0]))
                               and torch.allclose(torch.tensor(own[1]), torch.tensor(mine[1]))):
            raise ValueError(f"the estimator normalizes with (mean, std) = {own}, the reconstructor with {mine}; "
                             "pass preprocessing=(mean, std) equal to the reconstructor's to the PyTorchClassifier")

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        self._checked(x)
        self.noise_space.check_input(x)
        sigma = float(self.sigma)
        if sigma == 0:
            return x
        keys = NoiseKeys.draw(self._generator, x.shape[0], x.device)  # one draw per call, key i = f(draw, i)
        noise = NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype).draw(0, 1)[:, 0]  # [N, C, H, W]
        scale = sigma if self.noise_space.is_pixel else sigma * self.noise_space.pixel_scale(x)  # [C, 1, 1]
        return x + scale * noise

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return denoise(self.denoiser, self._noisy(x), self._config), y  # [N, C, H, W] pixels

    def estimate_forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return denoise(self.denoiser, self._noisy(x), self._config)
