"""Smoothed inference: prediction, weighted and soft voting over M noisy passes of a base classifier.

Implements the smoothed classifiers of Nemcovsky, Zheltonozhskii, Baskin, Chmiel, Fishman, Bronstein & Mendelson,
"Smoothed Inference for Improving Adversarial Robustness" (arXiv:1911.07198v2, Sec. 3, Eqs. 8-13), as pure torch:

    scores_y(x) = 1/M * sum_{i=1..M} V(f(x + eta_i))_y,   eta_i ~ N(0, sigma^2 I),   prediction = argmax_y scores_y

with the voting function V of the chosen mode (``votes``). ``smoothed_scores`` streams the M passes in chunks, so
only a [B, K] accumulator persists and memory does not grow with M (under ``torch.no_grad``).

Deviations (from the paper and from the reference code, yanemcovsky/SIAM@947630e):
    * Noise is added in [0, 1] pixel space by default, in front of the base (whose first layer normalizes), as in
      Cohen et al.; SIAM adds it to the *normalized* input. ``noise_space=NormalizedNoise(mean, std)`` declares that
      space instead: noise of std sigma after (x - mean) / std equals pixel noise of std sigma * std_c per channel,
      which is how it is drawn here (the base still receives pixels).
    * Soft smoothing averages softmax probabilities (Eq. 13, the paper). SIAM's ``mcepredict`` averages *logits*;
      ``soft_average="logits"`` gives that rule, returned as softmax(mean logits) (the argmax is SIAM's).
    * Weighted votes are normalized by the sum of the rank weights, so every mode returns rows that sum to 1
      (vote shares); the argmax is unchanged.
    * Ties (equal top scores; possible in the hard modes) are reported as ABSTAIN (-1) by ``labels_from_scores``
      instead of being broken toward the lowest class index.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from art_ext.ops import validation
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, resolve
from art_ext.types import ABSTAIN, LogitsFn

#: voting modes: hard vote (Eq. 10), rank-weighted vote (Eqs. 11-12), mean of softmax (Eq. 13)
MODES = ("prediction", "weighted", "soft")
#: what soft smoothing averages: softmax probabilities (paper, Eq. 13) or logits (reference code)
SOFT_AVERAGES = ("probabilities", "logits")
HARD_MODES = ("prediction", "weighted")


def _as_float_tuple(values: object, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return out


@dataclass(frozen=True)
class SmoothedInferenceConfig:
    """Parameters of smoothed inference.

    Attributes:
        sigma: Noise standard deviation (>= 0) in the units of ``noise_space``. 0 gives the base.
        num_samples: M, noisy forward passes per image (>= 1).
        mode: ``"prediction"`` (Eq. 10), ``"weighted"`` (Eqs. 11-12) or ``"soft"`` (Eq. 13).
        weights: Rank weights of the weighted mode, best rank first; missing ranks weigh 0. ``None`` is Eq. 11's
            V = 2^(1-k); ``(1, C)`` is Eq. 12's V_C; ``(1,)`` is prediction voting.
        soft_average: ``"probabilities"`` (Eq. 13) or ``"logits"`` (SIAM's ``mcepredict``).
        batch_size: Noisy samples per forward pass (>= 1): the chunk that bounds memory.
        noise_space: ``PixelNoise()`` (default) or ``NormalizedNoise(mean, std)`` for noise declared in the
            normalized space of a base whose first layer is ``(x - mean) / std``.
        grad_memory_budget: Bytes of autograd graph a differentiable call may keep (default 4 GiB; see
            ``smoothed_scores``).
    """

    sigma: float
    num_samples: int = 8
    mode: str = "soft"
    weights: tuple[float, ...] | None = None
    soft_average: str = "probabilities"
    batch_size: int = 1000
    noise_space: NoiseSpace = PixelNoise()
    grad_memory_budget: int = 4 * 2**30

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", validation.check_sigma(self.sigma, allow_zero=True))
        validation.check_positive_int(self.num_samples, "num_samples")
        validation.check_positive_int(self.batch_size, "batch_size")
        validation.check_positive_int(self.grad_memory_budget, "grad_memory_budget")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.soft_average not in SOFT_AVERAGES:
            raise ValueError(f"soft_average must be one of {SOFT_AVERAGES}, got {self.soft_average!r}")
        if self.weights is not None:
            weights = _as_float_tuple(self.weights, "weights")
            if min(weights) < 0 or weights[0] <= 0:
                raise ValueError(f"weights must be >= 0 with a positive first (top-rank) weight, got {self.weights!r}")
            object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "noise_space", resolve(self.noise_space))

    @property
    def differentiable(self) -> bool:
        return self.mode == "soft"


def rank_weights(num_classes: int, weights: Sequence[float] | None = None, *, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weights [K] by rank (rank 0 = the class with the largest logit), normalized to sum 1.

    ``None`` gives V = 2^(1-k) for k = 1..K (Eq. 11); a shorter sequence is padded with zeros (Eq. 12's V_C is
    ``(1, C)``), a longer one is cut to K.
    """
    if weights is None:
        w = 2.0 ** -torch.arange(num_classes, device=device, dtype=torch.float64)  # [K], 2^(1-k), k = r + 1
    else:
        w = torch.zeros(num_classes, device=device, dtype=torch.float64)
        given = torch.as_tensor(weights[:num_classes], dtype=torch.float64, device=device)
        w[: given.numel()] = given
    return (w / w.sum()).to(dtype)


def votes(logits: torch.Tensor, config: SmoothedInferenceConfig) -> torch.Tensor:
    """The per-pass vote V(f(x + eta_i)) of ``config.mode`` for logits [..., K]; same shape, each row sums to 1
    (except ``soft_average="logits"``, which returns the logits to be averaged)."""
    k = logits.shape[-1]
    if config.mode == "prediction":
        return F.one_hot(logits.argmax(dim=-1), k).to(logits.dtype)  # Eq. 9
    if config.mode == "weighted":
        order = logits.argsort(dim=-1, descending=True, stable=True)  # [..., K] class at each rank
        w = rank_weights(k, config.weights, device=logits.device, dtype=logits.dtype).expand_as(logits)
        return torch.zeros_like(logits).scatter_(-1, order, w)  # Eqs. 11-12: class at rank r gets w[r]
    if config.soft_average == "logits":
        return logits
    return logits.softmax(dim=-1)  # Eq. 13


def finish(mean_votes: torch.Tensor, config: SmoothedInferenceConfig) -> torch.Tensor:
    """Scores from the mean of the M votes: the identity except for averaged logits, which go through softmax."""
    if config.mode == "soft" and config.soft_average == "logits":
        return mean_votes.softmax(dim=-1)
    return mean_votes


def noise_scale(x: torch.Tensor, config: SmoothedInferenceConfig) -> torch.Tensor | float:
    """Per-channel pixel-space noise std: sigma, or sigma * std_c for noise declared after normalization."""
    if config.noise_space.is_pixel:
        return config.sigma
    scale = torch.as_tensor(config.noise_space.pixel_scale(x), device=x.device, dtype=x.dtype)  # [C, 1, 1]
    return config.sigma * scale  # broadcasts over noise [b, m, C, H, W]


def noisy_logits(
    base: LogitsFn, x: torch.Tensor, config: SmoothedInferenceConfig, *, num_classes: int, keys: NoiseKeys,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Stream the logits of the M noisy passes in chunks of at most ``config.batch_size`` samples.

    Images are taken in blocks of at most ``batch_size``; for each block, chunks of m = batch_size // b draws per
    image, in draw order. Draw j of image i is noise ``NoiseStreams(keys)`` sample j of image i, whatever the
    chunking.

    Yields:
        ``(images, logits)``: the slice of images of the block and their logits [b, m, K] for the block's next m
        draws. Logits narrower than ``num_classes`` are padded with -inf.
    """
    scale = noise_scale(x, config)
    streams = NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype)
    for start in range(0, x.shape[0], config.batch_size):
        xb = x[start : start + config.batch_size]  # [b, C, H, W]
        b = xb.shape[0]
        per_chunk = max(1, config.batch_size // b)
        done = 0
        while done < config.num_samples:
            m = min(per_chunk, config.num_samples - done)
            noise = streams.draw(done, m, range(start, start + b))  # [b, m, C, H, W]
            noisy = (xb.unsqueeze(1) + scale * noise).flatten(0, 1)  # [b * m, C, H, W]
            logits = _checked_logits(base(noisy), num_classes)  # [b * m, K]
            yield slice(start, start + b), logits.view(b, m, -1)
            done += m


def all_noisy_logits(
    base: LogitsFn, x: torch.Tensor, config: SmoothedInferenceConfig, *, num_classes: int, keys: NoiseKeys,
) -> torch.Tensor:
    """The logits of all M noisy passes at once: [B, M, K] (memory grows with M; ``noisy_logits`` streams)."""
    blocks: dict[int, list[torch.Tensor]] = {}
    for images, logits in noisy_logits(base, x, config, num_classes=num_classes, keys=keys):
        blocks.setdefault(images.start, []).append(logits)
    return torch.cat([torch.cat(blocks[start], dim=1) for start in sorted(blocks)])


def _checked_logits(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    validation.check_output_width(logits, num_classes)
    if logits.shape[1] < num_classes:
        pad = logits.new_full((logits.shape[0], num_classes - logits.shape[1]), -math.inf)
        logits = torch.cat([logits, pad], dim=1)
    return logits


def _accumulate(total: torch.Tensor | None, chunk_votes: torch.Tensor) -> torch.Tensor:
    """``total + v_0 + v_1 + ...`` over the draws of ``chunk_votes`` [b, m, K], added one draw at a time in float64,
    so the sum of the M votes is the same float whatever the chunks (the CPU's ``cumsum`` is that sequential sum;
    other devices add in a loop)."""
    votes64 = chunk_votes.to(torch.float64)
    if total is None:
        total = torch.zeros_like(votes64[:, 0])
    if votes64.device.type == "cpu":
        return torch.cat([total.unsqueeze(1), votes64], dim=1).cumsum(dim=1)[:, -1]
    for j in range(votes64.shape[1]):
        total = total + votes64[:, j]
    return total


def gradient_needed(base: LogitsFn, x: torch.Tensor) -> bool:
    """Whether autograd would record the noisy passes: grad mode on and x or a parameter of the base requires grad."""
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad:
        return True
    return isinstance(base, nn.Module) and any(p.requires_grad for p in base.parameters())


def smoothed_scores(
    base: LogitsFn, x: torch.Tensor, config: SmoothedInferenceConfig, *, num_classes: int,
    generator: torch.Generator | None = None, keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """Scores [B, K] of the smoothed classifier (Eq. 8): the mean over M noisy passes of the mode's votes.

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K'] with K' <= ``num_classes``; a fixed
            function (eval mode, BatchNorm with running statistics; checked), so the forward never updates it.
        x: Images [B, C, H, W] in [0, 1]; another float type than the base's is cast once to the base's dtype (the
            noisy passes run in the base's dtype) and the scores are returned in x's dtype.
        config: Mode, sigma, M, chunk size, noise space and gradient memory budget.
        num_classes: K.
        generator: Source of the per-image noise keys (one draw per call) on the device of ``x``; ``None`` uses
            torch's default generator. Each call draws fresh noise.
        keys: Fixed per-image noise keys (``NoiseKeys``) instead of ``generator``: pass j of image i is a function
            of the image's key and the pass index only, so the scores do not depend on ``batch_size`` or on the
            other images in the call, and the same keys give the same noise at every call.
    Returns:
        float tensor [B, K] on the device of ``x``, rows summing to 1: vote shares for ``"prediction"`` and
        ``"weighted"``, probabilities for ``"soft"``. With sigma = 0 the base is called once and the result is
        exactly ``votes(base(x))`` (softmax of the base's logits for ``"soft"``). The M votes are summed in float64,
        one draw at a time in draw order, so the scores are the same floats for any ``batch_size``.
    Memory:
        When no gradient is needed (``torch.no_grad()`` / ``torch.inference_mode()``, or neither ``x`` nor a
        parameter of the base requires grad) the passes stream in chunks of ``batch_size``: memory does not grow
        with M. ``"soft"`` is differentiable in ``x`` and the base's parameters; when autograd records, the graph
        keeps the activations of all M passes, so memory grows linearly with M * B. The bytes the first chunk saves
        for backward are measured and extrapolated to all passes; above ``config.grad_memory_budget`` (default
        4 GiB) the call is refused with the estimate, before the other chunks run.
    Raises:
        ValueError: on malformed ``x``, a generator on another device, a base that is not a fixed function
            (training mode, BatchNorm without running statistics), NaN / infinite logits (naming the first image),
            a graph over the memory budget, or a hard mode asked for gradients (``x`` requires grad while autograd
            is enabled): its output is piecewise constant, so a gradient would be zero almost everywhere; attack the
            soft mode or the noisy base (EPGD) instead.
    """
    validation.check_images(x.detach())
    validation.check_num_classes(num_classes)
    validation.check_fixed_function(base)
    config.noise_space.check_input(x)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on device {generator.device}, but x is on {x.device}; they must match")
    if config.mode in HARD_MODES and torch.is_grad_enabled() and x.requires_grad:
        raise ValueError(
            f"mode={config.mode!r} is a hard vote and is not differentiable (its gradient is zero almost everywhere); "
            "use mode='soft' for gradient-based attacks or training, or attack the noisy base (EPGD), or call it "
            "under torch.no_grad()"
        )
    image_keys = resolve_keys(keys, generator, x.shape[0], x.device)
    given_dtype, x = x.dtype, validation.cast_to_model_dtype(x, base)  # the one cast; scores come back in x's dtype
    if config.mode in HARD_MODES or not gradient_needed(base, x):
        with torch.no_grad():
            return _smoothed_scores(base, x, config, num_classes, image_keys, track_memory=False).to(given_dtype)
    return _smoothed_scores(base, x, config, num_classes, image_keys, track_memory=True).to(given_dtype)


class _SavedBytes:
    """Counts the bytes autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``)."""

    def __init__(self) -> None:
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.total += tensor.numel() * tensor.element_size()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def _smoothed_scores(
    base: LogitsFn, x: torch.Tensor, config: SmoothedInferenceConfig, num_classes: int, keys: NoiseKeys, *,
    track_memory: bool,
) -> torch.Tensor:
    nonfinite = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # [B] passes with NaN/inf logits
    if config.sigma == 0:  # every pass is identical: the base itself, exactly
        logits = _checked_logits(base(x), num_classes)
        nonfinite += validation.bad_logit_rows(logits).long()
        validation.raise_on_nonfinite(nonfinite)
        return finish(votes(logits, config), config)
    totals: dict[int, torch.Tensor] = {}  # block start -> summed votes [b, K] (float64)
    passes = iter(noisy_logits(base, x, config, num_classes=num_classes, keys=keys))
    if track_memory:
        saved = _SavedBytes()
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            first = next(passes)
        _check_graph_budget(saved.total, first[1].shape[0] * first[1].shape[1], x.shape[0], config)
        passes = itertools.chain([first], passes)
    for images, logits in passes:
        nonfinite[images] += validation.bad_logit_rows(logits.flatten(0, 1)).view(logits.shape[:2]).sum(dim=1)
        totals[images.start] = _accumulate(totals.get(images.start), votes(logits, config))
    validation.raise_on_nonfinite(nonfinite)
    parts = [finish((totals[start] / config.num_samples).to(x.dtype), config) for start in sorted(totals)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)  # [B, K]


def _check_graph_budget(first_bytes: int, first_samples: int, num_images: int, config: SmoothedInferenceConfig) -> None:
    estimate = first_bytes / max(1, first_samples) * num_images * config.num_samples
    if estimate > config.grad_memory_budget:
        raise ValueError(
            f"smoothed inference with gradients would keep about {estimate / 2**30:.1f} GiB of autograd graph "
            f"({first_bytes / max(1, first_samples) / 1024:.1f} KiB per noisy pass x {num_images} images x "
            f"num_samples={config.num_samples}), above grad_memory_budget={config.grad_memory_budget / 2**30:.1f} "
            "GiB; call it under torch.no_grad() (or freeze the base: requires_grad_(False)) when no gradient is "
            "needed, lower num_samples or the number of images, or raise grad_memory_budget"
        )


def labels_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """argmax labels [B] (int64) of scores [B, K], with ``ABSTAIN`` (-1) where the top score is tied."""
    top2 = scores.topk(2, dim=1).values  # [B, 2]
    labels = scores.argmax(dim=1)
    return torch.where(top2[:, 0] == top2[:, 1], torch.full_like(labels, ABSTAIN), labels)


#: The voting rule every smoothed-inference entry point uses unless told otherwise (the torch module and its ART
#: adapter alike): the soft rule is the one that is differentiable, so attacks can target what is deployed.
DEFAULT_MODE = "soft"


class SmoothedInference(nn.Module):
    """Smoothed inference as an ``nn.Module``: scores [B, K] from M fresh noisy passes of a base classifier.

    Implements Nemcovsky et al. (arXiv:1911.07198v2, Eqs. 8-13): vote shares for ``mode="prediction"`` /
    ``"weighted"``, probabilities for ``"soft"`` (the default, and the only differentiable mode, end to end, so
    attacks can target it). sigma = 0 gives the base exactly. The base must be a fixed function (eval mode,
    BatchNorm with running statistics; checked at every call), so the forward never changes it.
    ``forward`` draws from ``self.generator`` (settable; ``None`` = torch's default generator); ``scores`` /
    ``labels`` take an explicit generator.

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K'].
        sigma: Noise standard deviation (>= 0) in the units of ``noise_space``.
        num_classes: Number of classes K (>= the base's output width).
        mode: ``"soft"`` (default), ``"prediction"`` or ``"weighted"``.
        num_samples: M, noisy passes per call.
        weights: Rank weights of the weighted mode (``None``: 2^(1-k), Eq. 11; ``(1, C)``: Eq. 12).
        soft_average: ``"probabilities"`` (Eq. 13) or ``"logits"`` (the reference code's mean of logits).
        batch_size: Noisy samples per forward pass (the memory bound when no gradient is needed).
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
        generator: Source of ``forward``'s per-image noise keys (one draw per call).
        grad_memory_budget: Bytes of autograd graph a differentiable call may keep (see ``smoothed_scores``).

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> smoothed = SmoothedInference(LinearToy(torch.ones(4), b=-2.0), 0.25, num_classes=2, num_samples=16,
        ...                              generator=torch.Generator().manual_seed(0))
        >>> scores = smoothed(torch.full((3, 1, 2, 2), 0.9))
        >>> scores.shape, smoothed.labels(torch.full((1, 1, 2, 2), 0.9)).tolist()
        (torch.Size([3, 2]), [1])
    """

    def __init__(
        self,
        base: LogitsFn,
        sigma: float,
        *,
        num_classes: int,
        mode: str = DEFAULT_MODE,
        num_samples: int = 8,
        weights: Sequence[float] | None = None,
        soft_average: str = "probabilities",
        batch_size: int = 1000,
        noise_space: NoiseSpace | None = None,
        generator: torch.Generator | None = None,
        grad_memory_budget: int = 4 * 2**30,
    ) -> None:
        super().__init__()
        self.base = base
        self.num_classes = validation.check_num_classes(num_classes)
        self.config = SmoothedInferenceConfig(
            sigma=sigma, num_samples=num_samples, mode=mode,
            weights=None if weights is None else tuple(weights), soft_average=soft_average, batch_size=batch_size,
            noise_space=resolve(noise_space), grad_memory_budget=grad_memory_budget,
        )
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, num_classes={self.num_classes}, mode={self.mode!r}, num_samples={self.num_samples}, "
            f"noise_space={self.config.noise_space}"
        )

    @property
    def sigma(self) -> float:
        return self.config.sigma

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def num_samples(self) -> int:
        return self.config.num_samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Smoothed scores [B, K] of images x [B, C, H, W] in [0, 1], noise from ``self.generator``."""
        return self.scores(x, generator=self.generator)

    def scores(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, keys: NoiseKeys | None = None
    ) -> torch.Tensor:
        """Smoothed scores [B, K] (see ``smoothed_scores``)."""
        return smoothed_scores(self.base, x, self.config, num_classes=self.num_classes, generator=generator,
                               keys=keys)

    def labels(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None, keys: NoiseKeys | None = None
    ) -> torch.Tensor:
        """Smoothed labels int64 [B], ``ABSTAIN`` (-1) where the top scores tie."""
        with torch.no_grad():
            return labels_from_scores(self.scores(x, generator=generator, keys=keys))
