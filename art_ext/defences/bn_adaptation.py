"""Certification through BatchNorm adaptation, with Auto-Noise (Nandy, Saha, Hsu, Lee & Tan).

An adversarially trained (AT) classifier f is not robust to large Gaussian noise, so it is a poor randomized-smoothing
base classifier. Re-estimating its BatchNorm statistics on noisy clean images x + N(0, sigma^2 I) ("BN adaptation")
gives a copy f_adapt that is, and smoothing f_adapt yields L2 certificates. Predictions keep coming from f, so its
benign accuracy and empirical robustness are untouched (Algorithm 1). Auto-Noise picks sigma per example from a list
with a cheap certification and certifies at that sigma with fresh samples (Algorithm 2).

Reference: "Towards Bridging the gap between Empirical and Certified Robustness against Adversarial Examples"
(arXiv:2102.05096v3): Eq. 4 (statistics mix), Alg. 1 (certification through adaptation), Alg. 2 and Eq. 5
(Auto-Noise). No reference code is public; everything here follows the paper and research/algorithms.md §8.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from art_ext.ops import validation
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.auto_noise import DEFAULT_SIGMAS, auto_noise_certify, check_sigmas, keep_agreeing
from art_ext.smoothing.certify import Certificates, certify
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams, resolve_keys

# ---------------------------------------------------------------------------------------------------------------
# BN adaptation (Eq. 4)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BNAdaptationConfig:
    """Parameters of ``adapt_batchnorm``.

    Attributes:
        sigma: Std of the Gaussian noise added to the clean adaptation images, pixel units (>= 0; 0 adapts to the
            clean images themselves).
        rho: Weight of the noisy-image statistics in Eq. 4 (rho = 1: full adaptation, rho = 0: training statistics).
        batch_size: Images per forward pass while collecting statistics (memory only: the noise of each image is
            keyed by its index, so the noisy set does not depend on it; the merged statistics do only through
            float summation order).
    """

    sigma: float
    rho: float = 1.0
    batch_size: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", validation.check_sigma(self.sigma, allow_zero=True))
        try:
            rho = float(self.rho)
        except (TypeError, ValueError):
            raise TypeError(f"rho must be a real number in [0, 1], got {self.rho!r}") from None
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rho must be in [0, 1] (1 = full adaptation, 0 = none), got {self.rho!r}")
        object.__setattr__(self, "rho", rho)
        validation.check_positive_int(self.batch_size, "batch_size")


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The BatchNorm layers (1d/2d/3d) of ``model`` with their qualified names, in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _BatchNorm)]


class _StopForward(Exception):
    """Raised by a capture hook once the layer of interest has seen its input: the rest of the forward is not
    needed, so it is skipped."""


def _execution_order(model: nn.Module, probe: torch.Tensor) -> list[_BatchNorm]:
    """BatchNorm layers in the order a forward pass calls them (each must be called exactly once)."""
    layers = [m for _, m in batchnorm_layers(model)]
    calls: list[_BatchNorm] = []
    handles = [m.register_forward_pre_hook(lambda mod, _inputs: calls.append(mod)) for m in layers]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
    repeated = {id(m) for m in calls if sum(c is m for c in calls) > 1}
    if repeated:
        names = [name for name, m in batchnorm_layers(model) if id(m) in repeated]
        raise ValueError(
            f"BatchNorm layer(s) {names} are called more than once per forward pass; their input statistics are "
            "not defined per layer, so adapt_batchnorm cannot adapt this model"
        )
    return calls


@torch.no_grad()
def _noisy_input_statistics(
    model: nn.Module,
    layer: _BatchNorm,
    clean: torch.Tensor,
    sigma: float,
    batch_size: int,
    keys: NoiseKeys,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance (float64 [C]) of ``layer``'s inputs over the noisy set.

    Image i of ``clean`` gets noise sample 0 of its key ``keys[i]`` (``NoiseStreams``), whatever the chunking.
    Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979), which avoids the cancellation of
    the sum-of-squares formula.
    """
    count = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    captured: list[torch.Tensor] = []

    def capture(_mod: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0])
        raise _StopForward

    handle = layer.register_forward_pre_hook(capture)
    try:
        device = layer.running_mean.device  # type: ignore[union-attr]
        streams = NoiseStreams(keys, clean.shape[1:], device=device, dtype=clean.dtype)
        for start in range(0, clean.shape[0], batch_size):
            chunk = clean[start : start + batch_size].to(device)  # [b, C, H, W]
            noisy = chunk
            if sigma > 0:  # image i's noise: sample 0 of its key, independent of the chunking; no clipping
                noisy = chunk + sigma * streams.draw(0, 1, range(start, start + chunk.shape[0]))[:, 0]
            try:
                model(noisy)
            except _StopForward:
                pass
            h = captured.pop().double()  # [b, C] or [b, C, *spatial]
            h = h.transpose(0, 1).reshape(h.shape[1], -1)  # [C, b * prod(spatial)]
            n_b = h.shape[1]
            mean_b = h.mean(dim=1)  # [C]
            m2_b = ((h - mean_b[:, None]) ** 2).sum(dim=1)  # [C]
            if mean is None or m2 is None:
                mean, m2, count = mean_b, m2_b, n_b
            else:
                delta = mean_b - mean
                total = count + n_b
                mean = mean + delta * (n_b / total)
                m2 = m2 + m2_b + delta**2 * (count * n_b / total)
                count = total
    finally:
        handle.remove()
    if count < 2 or mean is None or m2 is None:
        raise ValueError(f"need at least 2 values per channel to estimate a variance, got {count}")
    return mean, m2 / (count - 1)


def adapt_batchnorm(
    model: nn.Module,
    clean_images: torch.Tensor,
    *,
    sigma: float,
    rho: float = 1.0,
    batch_size: int = 512,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are adapted to Gaussian-noise inputs, frozen in eval mode.

    Implements BN-ADAPTATION of Nandy et al. (arXiv:2102.05096v3, Alg. 1 lines 1-2, Eq. 4): the noisy set
    X~ = {x + N(0, sigma^2 I) : x in ``clean_images``} is drawn once; then, for every BatchNorm layer in forward order,
    the per-channel mean mu_t and standard deviation s_t of its inputs over X~ are computed (with all earlier layers
    already adapted) and mixed with the training statistics (mu_T, s_T):

        mu = rho * mu_t + (1 - rho) * mu_T,    s = rho * s_t + (1 - rho) * s_T            (Eq. 4)

    and stored as ``running_mean = mu``, ``running_var = s^2``. The statistics are computed explicitly, never through
    PyTorch's train-mode ``momentum`` update (algorithms.md §8.2). Variances are unbiased (divisor n - 1 over the
    N * H * W values of a channel), the convention of PyTorch's ``running_var``.

    Guarantee:
        The input ``model`` is not modified (its ``state_dict`` is byte-identical afterwards); affine parameters,
        ``eps``, ``momentum`` and ``num_batches_tracked`` of the copy equal the original's; the copy is in eval mode
        with ``requires_grad`` off, so its outputs are a fixed function of each input (batch-independent) and it is
        a valid randomized-smoothing base classifier. Gradients with respect to inputs still flow.

    Args:
        model: Classifier on [0, 1] pixels with at least one BatchNorm layer that tracks running statistics.
        clean_images: Adaptation images [M, C, H, W] in [0, 1], on any device. They must be disjoint from the points
            that will be certified (a training or validation split): adapting on a test point's own noisy copies
            makes the base classifier depend on the input and voids the certificate (algorithms.md §8.3).
        sigma: Noise std in pixel units (>= 0). rho: Mixing weight in [0, 1]. batch_size: Images per pass.
        generator: Source of the noise keys (one draw per call) on the model's device (``None``: torch's default
            generator; the global RNG is never reseeded).
        keys: One noise key per clean image (``NoiseKeys``) instead of ``generator``. Image i's noise is a function
            of its key only (not of ``batch_size`` or of the other images), and every layer sees the same noisy set.
    Returns:
        The adapted deep copy, on the device of ``model``.
    Raises:
        ValueError: no BatchNorm layer, a layer without running statistics or called twice per forward, a bad
            ``sigma``/``rho``/``batch_size``, or malformed ``clean_images``.
    Deviations:
        Eq. 4 mixes standard deviations, as written in the paper; Schneider et al. (2020) mix variances. Both agree
        at rho in {0, 1}, the only values the paper's certification uses. The paper adapts with one forward pass
        over X~ in train mode; here each layer's statistics are exact over the whole set whatever ``batch_size``,
        and later layers see the inputs produced by earlier *adapted* layers (as at inference time), not by
        batch-normalized ones.
    """
    config = BNAdaptationConfig(sigma, rho, batch_size)
    validation.check_images(clean_images, name="clean_images")
    if clean_images.shape[0] < 2:
        raise ValueError(f"clean_images needs at least 2 images to estimate statistics, got {clean_images.shape[0]}")
    if not batchnorm_layers(model):
        raise ValueError(
            f"{type(model).__name__} has no BatchNorm layer (BatchNorm1d/2d/3d); BN adaptation needs one. Use "
            "Auto-Noise (auto_noise_certify) directly on a model without BatchNorm"
        )
    untracked = [name for name, m in batchnorm_layers(model) if m.running_mean is None or m.running_var is None]
    if untracked:
        raise ValueError(
            f"BatchNorm layer(s) {untracked} have track_running_stats=False, so there are no training statistics "
            "to adapt"
        )

    adapted = copy.deepcopy(model).eval()
    adapted.requires_grad_(False)
    device = next(b for _, b in batchnorm_layers(adapted)).running_mean.device  # type: ignore[union-attr]
    if generator is not None and isinstance(generator, torch.Generator) and generator.device.type != device.type:
        raise ValueError(f"generator is on device {generator.device}, but the model is on {device}; they must match")
    image_keys = resolve_keys(keys, generator, clean_images.shape[0], device)  # one draw per call
    if config.rho == 0.0:
        return adapted  # Eq. 4 with rho = 0: the training statistics, exactly

    layers = _execution_order(adapted, clean_images[:1].to(device))
    for layer in layers:  # the same keys, so the same noisy set X~, for every layer
        mu_t, var_t = _noisy_input_statistics(adapted, layer, clean_images, config.sigma, config.batch_size,
                                              image_keys)
        running_mean, running_var = layer.running_mean, layer.running_var
        assert running_mean is not None and running_var is not None  # checked above
        if config.rho == 1.0:
            mean, var = mu_t, var_t
        else:
            mean = config.rho * mu_t + (1 - config.rho) * running_mean.double()  # Eq. 4, means
            std = config.rho * var_t.sqrt() + (1 - config.rho) * running_var.double().sqrt()  # Eq. 4, std devs
            var = std**2
        running_mean.copy_(mean.to(running_mean.dtype))
        running_var.copy_(var.to(running_var.dtype))
    return adapted


# ---------------------------------------------------------------------------------------------------------------
# Certification through adaptation (Algorithm 1) with Auto-Noise (Algorithm 2)
# ---------------------------------------------------------------------------------------------------------------


class CertificationThroughAdaptation:
    """An AT classifier f that predicts as itself and certifies through BN-adapted smoothed copies.

    Implements Nandy et al. (arXiv:2102.05096v3), Sec. 3.1-3.2: the output for x is always f(x) (benign accuracy
    and empirical robustness are exactly f's). A certificate is issued for f(x) only when the smoothed classifier g
    built on f_adapt (BN statistics adapted to N(0, sigma^2) noise, ``adapt_batchnorm``) returns the same label and
    p_A_lower > 1/2; otherwise the certificate is ``ABSTAIN`` while the prediction stays f(x).

    Adapted copies are built lazily, once per sigma, from the same ``clean_images`` with a noise seed derived from
    ``adaptation_seed`` and sigma (so a copy does not depend on the order in which sigmas are first used).

    Args:
        model: The AT classifier f on [0, 1] pixels, with BatchNorm layers. It is never modified.
        clean_images: Adaptation images [M, C, H, W] in [0, 1], disjoint from the points to certify (the paper uses
            1,000 CIFAR-10 / 500 ImageNet training images).
        num_classes: K.
        sigmas: Candidate noise levels for Auto-Noise.
        rho: Eq. 4 weight of the noisy statistics (the paper certifies with rho = 1).
        adaptation_batch_size: Images per pass while adapting. adaptation_seed: Seed of the adaptation noise.
    """

    def __init__(
        self,
        model: nn.Module,
        clean_images: torch.Tensor,
        *,
        num_classes: int,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        rho: float = 1.0,
        adaptation_batch_size: int = 512,
        adaptation_seed: int = 0,
    ) -> None:
        BNAdaptationConfig(sigma=0.0, rho=rho, batch_size=adaptation_batch_size)  # validate early
        validation.check_images(clean_images, name="clean_images")
        if not batchnorm_layers(model):
            raise ValueError(
                f"{type(model).__name__} has no BatchNorm layer; certification through adaptation needs one"
            )
        self.model = model
        self.clean_images = clean_images
        self.num_classes = validation.check_num_classes(num_classes)
        self.sigmas = check_sigmas(sigmas)
        self.rho = float(rho)
        self.adaptation_batch_size = adaptation_batch_size
        self.adaptation_seed = int(adaptation_seed)
        self._adapted: dict[float, nn.Module] = {}
        self.device = next(b for _, b in batchnorm_layers(model)).running_mean.device  # type: ignore[union-attr]

    def adapted(self, sigma: float) -> nn.Module:
        """f_adapt for ``sigma`` (built on first use, then cached)."""
        sigma = validation.check_sigma(sigma)
        if sigma not in self._adapted:
            seed = (self.adaptation_seed * 1_000_003 + round(sigma * 1e6)) % 2**62
            generator = torch.Generator(device=self.device).manual_seed(seed)
            self._adapted[sigma] = adapt_batchnorm(
                self.model, self.clean_images, sigma=sigma, rho=self.rho, batch_size=self.adaptation_batch_size,
                generator=generator,
            )
        return self._adapted[sigma]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
        """int64 [B]: f(x), the original model's prediction (eval mode; the model's mode flags are restored)."""
        validation.check_images(x)
        with eval_mode(self.model):
            return torch.cat([self.model(xb).argmax(dim=1) for xb in x.split(batch_size)])

    def certify(
        self,
        x: torch.Tensor,
        *,
        sigma: float,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
        keys: NoiseKeys | None = None,
    ) -> Certificates:
        """Algorithm 1 at a fixed ``sigma``: prediction f(x); certificate from CERTIFY on g(f_adapt, sigma), kept
        only where it certifies f(x).

        Guarantee:
            For each image, with probability >= 1 - alpha over the noise, the certificate abstains or the smoothed
            classifier g (base f_adapt at this sigma) returns ``label`` = f(x) on the L2 ball of ``radius``. The
            prediction f(x) itself is not smoothed: the certificate is about g, and g and f may disagree at x + d.

        ``generator`` / ``keys``: the noise of image i, as in ``certify`` (one key per image; an image certified
        alone under its key gets the certificate it gets in any batch).
        """
        reference = self.predict(x, batch_size=batch_size)  # [B]
        certs = certify(
            self.adapted(sigma), x, n0=n0, n=n, sigma=sigma, alpha=alpha, num_classes=self.num_classes,
            batch_size=batch_size, generator=generator, keys=keys,
        )
        label, radius = keep_agreeing(certs.label, certs.radius, reference)
        return dataclasses.replace(certs, label=label, radius=radius, radius_noise_space=radius, prediction=reference)

    def certify_auto_noise(
        self,
        x: torch.Tensor,
        *,
        n_auto: int = 1000,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        generator: torch.Generator | None = None,
        keys: NoiseKeys | None = None,
    ) -> Certificates:
        """Algorithm 2: Auto-Noise over ``self.sigmas`` with adapted bases and the f(x)-agreement rule; see
        ``auto_noise_certify`` for the guarantee (per-sigma, at the selected sigma), its limits and ``keys``."""
        reference = self.predict(x, batch_size=batch_size)
        return auto_noise_certify(
            self.adapted, x, sigmas=self.sigmas, n_auto=n_auto, n0=n0, n=n, alpha=alpha,
            num_classes=self.num_classes, batch_size=batch_size, reference=reference, generator=generator,
            keys=keys,
        )
