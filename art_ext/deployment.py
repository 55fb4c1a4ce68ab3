"""A deployed model, resolved once: what decides, what gradient attacks differentiate, what score-based attacks
query, the base classifier, and the declared noise space and sigma of a randomized deployment.

An evaluation of a defence needs several views of one deployed model, and they must agree on the noise:

* ``decide``: the deployed model, scores [B, K] (a ``SmoothedInference`` when it is randomized);
* ``differentiate``: what gradient attacks (PGD, APGD, AutoAttack) take gradients of: the deployed map itself, the
  base classifier (a transfer attack), or a deterministic surrogate of soft smoothing with one frozen set of noise
  draws (``FrozenNoiseSmoothing``, common random numbers);
* ``query(generator)``: what score-based attacks (NAttack) query: one noisy pass of the base classifier when the
  deployment is randomized (the noise of the candidates of the images still searching: not keyed per image);
* ``base``: the base classifier the smoothing noise is added in front of (for denoised smoothing, denoiser +
  classifier), and ``bpda``: the deployed map with a straight-through backward pass, where one exists;
* ``sigma`` in the units of ``noise_space`` (``PixelNoise()`` or a denoiser's declared ``NormalizedNoise``), and
  ``sigma_pixel``, the pixel-space std of that noise (the smallest over channels): a normalized-noise denoiser
  trained at sigma_n = 1 on digits (std 0.319) smooths with pixel noise of std 0.319, not 1.

Every tensor of noise goes through ``noise_space`` (``NoiseSpace.add`` / ``draw`` / ``scale``), so certifying,
smoothing, attacking and scoring use the same noise. ``finish`` is the one final projection of an attack's output
onto the eps-ball and the bounds (``art_ext.ops.norms.project_onto_ball``).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from art_ext.smoothing.noise import NormalizedNoise
    >>> classifier = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    >>> plain = Deployment.plain(classifier)
    >>> plain.randomized, plain.sigma_pixel
    (False, None)
    >>> smoothed = Deployment.smoothed(classifier, 1.0, num_classes=3, num_samples=4,
    ...                                noise_space=NormalizedNoise(mean=(0.3,), std=(0.32,)),
    ...                                generator=torch.Generator().manual_seed(0))
    >>> smoothed.randomized, smoothed.sigma, round(smoothed.sigma_pixel, 3)
    (True, 1.0, 0.32)
    >>> smoothed.decide(torch.zeros(2, 1, 2, 2)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.ops.norms import project_onto_ball
from art_ext.smoothing.inference import SmoothedInference
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, resolve
from art_ext.types import Bounds, Norm

TensorFn = Callable[[torch.Tensor], torch.Tensor]
#: how gradient attacks see a randomized deployment: its base classifier (no noise: a transfer attack) or a frozen
#: noise surrogate of soft smoothing
GRADIENTS = ("base", "frozen")


class FrozenNoiseSmoothing(nn.Module):
    """A deterministic differentiable surrogate of soft smoothing: the log of the mean softmax of ``base`` over one
    fixed set of ``samples`` noise draws [M, C, H, W] in ``noise_space``, shared by every example (common random
    numbers; batch-independent). The draws are made from ``seed`` the first time an input shape is seen."""

    def __init__(self, base: nn.Module, sigma: float, samples: int, seed: int,
                 noise_space: NoiseSpace | None = None) -> None:
        super().__init__()
        self.base, self.sigma, self.samples, self.seed = base, float(sigma), int(samples), int(seed)
        self.noise_space = resolve(noise_space)
        self._noise: dict[tuple[Any, ...], torch.Tensor] = {}

    def noise(self, like: torch.Tensor) -> torch.Tensor:
        """The frozen pixel-space noise [M, C, H, W] for inputs shaped like ``like`` [B, C, H, W]."""
        key = (tuple(like.shape[1:]), str(like.device), like.dtype)
        if key not in self._noise:
            gen = torch.Generator(device=like.device).manual_seed(self.seed)
            self._noise[key] = self.noise_space.draw((self.samples, *like.shape[1:]), self.sigma, generator=gen,
                                                     device=like.device, dtype=like.dtype)
        return self._noise[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = self.noise(x)
        m, b = noise.shape[0], x.shape[0]
        noisy = (x.unsqueeze(0) + noise.unsqueeze(1)).flatten(0, 1)  # [M * B, C, H, W]
        probs = F.softmax(self.base(noisy), dim=1).view(m, b, -1).mean(0)  # [B, K]
        return torch.log(probs.clamp_min(1e-12))


class _Fn(nn.Module):
    """A function as a module (a preprocessing defence in an ``nn.Sequential``)."""

    def __init__(self, fn: TensorFn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"a randomized deployment needs a finite sigma > 0, got {sigma!r}")
    return float(sigma)


@dataclass
class Deployment:
    """One deployed model and the views of it that an evaluation needs (module docstring). Build it with
    ``plain``, ``preprocessed``, ``smoothed`` or ``denoised``; ``declared_noise`` reads a zoo denoiser's sigma and
    noise space."""

    base: nn.Module
    decide: TensorFn
    differentiate: TensorFn
    sigma: float | None = None
    noise_space: NoiseSpace = field(default_factory=PixelNoise)
    bpda: nn.Module | None = None

    @property
    def randomized(self) -> bool:
        """Whether ``decide`` draws noise (a smoothed deployment)."""
        return isinstance(self.decide, SmoothedInference)

    @property
    def sigma_pixel(self) -> float | None:
        """The pixel-space std of the smoothing noise, the smallest per channel (None: no noise)."""
        return None if self.sigma is None else self.noise_space.pixel_sigma(self.sigma)

    @property
    def smoothed_classifier(self) -> SmoothedInference:
        """``decide`` of a randomized deployment: its smoothed classifier."""
        if not isinstance(self.decide, SmoothedInference):
            raise TypeError("this deployment is not randomized: it deploys no smoothed classifier")
        return self.decide

    def query(self, generator: torch.Generator | None) -> TensorFn:
        """What a score-based attack queries: ``decide`` when deterministic, else one noisy pass of the base per
        query, its noise drawn from ``generator`` in the declared noise space."""
        if not self.randomized:
            return self.decide
        sigma, space, base = float(self.sigma or 0.0), self.noise_space, self.base

        def noisy(z: torch.Tensor) -> torch.Tensor:
            return base(z + space.draw(z.shape, sigma, generator=generator, device=z.device))

        return noisy

    def finish(self, x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm,
               bounds: Bounds | None = None) -> torch.Tensor:
        """An attack's output after the one final projection onto the eps-ball around ``x`` and the bounds."""
        return project_onto_ball(x, x_adv.detach(), eps, norm, bounds or Bounds())

    # ---- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def plain(cls, classifier: nn.Module) -> Deployment:
        """A deterministic classifier deployed as it is: it decides and gradient attacks differentiate it."""
        return cls(base=classifier, decide=classifier, differentiate=classifier)

    @classmethod
    def preprocessed(cls, classifier: nn.Module, transform: TensorFn) -> Deployment:
        """``classifier(transform(x))``: attacks differentiate the exact map (``differentiate``) or pass
        straight through ``transform`` (``bpda``)."""
        from art_ext.attacks import bpda

        decide = nn.Sequential(_Fn(transform), classifier)
        return cls(base=classifier, decide=decide, differentiate=decide,
                   bpda=nn.Sequential(bpda(transform), classifier))

    @classmethod
    def smoothed(cls, base: nn.Module, sigma: float, *, num_classes: int, num_samples: int, mode: str = "soft",
                 noise_space: NoiseSpace | None = None, generator: torch.Generator | None = None,
                 gradient: str = "base", frozen_seed: int | None = None, bpda: nn.Module | None = None
                 ) -> Deployment:
        """``SmoothedInference(base, sigma, mode)`` with ``num_samples`` noisy passes in ``noise_space``. Gradient
        attacks differentiate ``base`` (``gradient="base"``) or a ``FrozenNoiseSmoothing`` surrogate seeded with
        ``frozen_seed`` (``gradient="frozen"``)."""
        sigma = _check_sigma(sigma)
        space = resolve(noise_space)
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        decide = SmoothedInference(base, sigma, num_classes=num_classes, mode=mode, num_samples=num_samples,
                                   noise_space=space, generator=generator)
        if gradient == "frozen":
            if frozen_seed is None:
                raise ValueError("gradient='frozen' needs frozen_seed (the seed of the surrogate's noise draws)")
            differentiate: TensorFn = FrozenNoiseSmoothing(base, sigma, num_samples, frozen_seed, space).eval()
        else:
            differentiate = base
        return cls(base=base, decide=decide, differentiate=differentiate, sigma=sigma, noise_space=space, bpda=bpda)

    @classmethod
    def denoised(cls, denoiser: nn.Module, classifier: nn.Module, sigma: float, *, num_classes: int,
                 num_samples: int, noise_space: NoiseSpace | None = None, mode: str = "soft",
                 generator: torch.Generator | None = None, gradient: str = "base",
                 frozen_seed: int | None = None) -> Deployment:
        """Denoised smoothing (Salman et al.): ``smoothed`` over ``DenoisedClassifier(denoiser, classifier)``, with
        ``bpda`` passing straight through the denoiser. ``sigma`` and ``noise_space`` are the denoiser's
        (``declared_noise``)."""
        from art_ext.attacks import bpda
        from art_ext.defences.denoised_smoothing import DenoisedClassifier

        base = DenoisedClassifier(denoiser, classifier).eval()  # a fixed function while sampled
        return cls.smoothed(base, sigma, num_classes=num_classes, num_samples=num_samples, mode=mode,
                            noise_space=noise_space, generator=generator, gradient=gradient,
                            frozen_seed=frozen_seed, bpda=nn.Sequential(bpda(denoiser), classifier))


def declared_noise(entry: Any) -> tuple[float, NoiseSpace]:
    """(sigma, noise space) a zoo denoiser entry declares: a normalized-noise UNet's ``noise_space`` (sigma in its
    units), pixel noise for every other denoiser.

    Examples:
        >>> from art_ext import zoo
        >>> declared_noise(zoo.get_entry("digits_unet_nn_100", kind="denoiser"))
        (1.0, NormalizedNoise(mean=(0.305,), std=(0.319,)))
    """
    from art_ext.zoo import DenoiserEntry, RescaledLossDenoiserEntry

    if isinstance(entry, RescaledLossDenoiserEntry):
        return float(entry.sigma), resolve(entry.noise_space)
    if isinstance(entry, DenoiserEntry):
        return float(entry.sigma), PixelNoise()
    raise TypeError(f"zoo entry {getattr(entry, 'name', entry)!r} is not a denoiser entry; expected a DenoiserEntry "
                    "or RescaledLossDenoiserEntry")
