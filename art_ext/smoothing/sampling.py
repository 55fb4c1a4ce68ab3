"""Streaming Monte-Carlo class counts under Gaussian noise (SAMPLE of Cohen et al., 2019)."""

from __future__ import annotations

import torch

from art_ext.ops import validation
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.types import LogitsFn


def sample_counts(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n: int,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    noise_space: NoiseSpace | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """Class histogram of ``argmax base(x_b + sigma * e)`` over ``n`` fresh Gaussian draws per image.

    Implements SAMPLE of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Sec. 3.2, "SAMPLEUNDERNOISE"):
    hard argmax votes, no clipping of x + e. The noise is drawn in ``noise_space`` (pixels by default; see
    ``art_ext.smoothing.noise``).

    Streaming: only the [B, K] counts persist; one reusable noise buffer of ``batch_size`` samples is filled in
    place, so memory does not grow with ``n``. A device batch may hold the draws of several consecutive images,
    which keeps small models busy when ``n`` is small (e.g. the n0 selection draws).

    Reproducibility: the noise of image i's j-th draw is a function of its key and j only
    (``art_ext.smoothing.keys``), so the counts do not depend on ``batch_size`` or on the other images in the call.

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K']; K' <= num_classes. A ``nn.Module`` must be
            in eval mode (checked).
        x: Images [B, C, H, W], floating point, values in [0, 1]; another float type than the base's is cast once to
            the base's dtype (the dtype of its first floating parameter) before sampling.
        n: Noise draws per image (>= 1).
        sigma: Noise standard deviation in the units of ``noise_space`` (> 0).
        num_classes: Number of classes K (>= 2).
        batch_size: Noisy samples per forward pass (>= 1).
        generator: Source of the per-image noise keys (one draw per call), on the device of ``x``; ``None`` uses
            torch's default generator.
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
        keys: Fixed per-image noise keys (``NoiseKeys``, one per image) instead of ``generator``.
    Returns:
        ``torch.int64`` tensor [B, K] on the device of ``x``; each row sums to ``n``.
    Raises:
        ValueError: on a malformed ``x``, a non-positive ``sigma``/``n``/``batch_size``, ``num_classes`` < 2 or
            smaller than the base's output width (or a single output column), a base that is not a fixed function
            (training mode, BatchNorm without running statistics), or NaN / infinite logits (naming the first image).

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> base = LinearToy(torch.ones(4), b=-2.0)
        >>> x = torch.full((1, 1, 2, 2), 0.75)
        >>> counts = sample_counts(base, x, n=100, sigma=0.25, num_classes=2, batch_size=50,
        ...                        generator=torch.Generator().manual_seed(0))
        >>> counts.shape, int(counts.sum())
        (torch.Size([1, 2]), 100)
    """
    x = validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                               generator=generator, noise_space=noise_space)
    validation.check_positive_int(n, "n")
    streams = noise_streams(resolve_keys(keys, generator, x.shape[0], x.device), x)
    return _sample_counts(base, x, n, float(sigma), num_classes, batch_size, streams, resolve(noise_space))


def noise_streams(keys: NoiseKeys, x: torch.Tensor) -> NoiseStreams:
    """The unit-noise streams of the images ``x`` [B, C, H, W] under ``keys``, on x's device and in its dtype."""
    return NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype)


def validate_sampling_args(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None,
    noise_space: NoiseSpace | None = None,
) -> torch.Tensor:
    """Check the arguments shared by every sampling entry point; returns ``x`` cast once to the base's dtype
    (``validation.cast_to_model_dtype``: float64 images for a float32 model are sampled in float32)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    validation.check_images(x)
    resolve(noise_space).check_input(x)
    validation.check_sigma(sigma)
    validation.check_num_classes(num_classes)
    validation.check_positive_int(batch_size, "batch_size")
    validation.check_fixed_function(base)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on device {generator.device}, but x is on {x.device}; they must match")
    return validation.cast_to_model_dtype(x, base)


@torch.inference_mode()
def _sample_counts(
    base: LogitsFn,
    x: torch.Tensor,
    n: int,
    sigma: float,
    num_classes: int,
    batch_size: int,
    streams: NoiseStreams,
    noise_space: NoiseSpace,
    *,
    start_sample: int = 0,
    stream_rows: list[int] | None = None,
) -> torch.Tensor:
    """Counts of draws ``start_sample .. start_sample + n - 1`` of each image; row b of ``x`` draws from stream
    ``stream_rows[b]`` (default: stream b)."""
    num_images, k = x.shape[0], num_classes
    rows = list(range(num_images)) if stream_rows is None else stream_rows
    counts = torch.zeros(num_images, k, dtype=torch.long, device=x.device)  # [B, K]
    total = num_images * n  # sample s belongs to image s // n
    noisy_buffer = torch.empty((min(batch_size, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    scale = sigma if noise_space.is_pixel else sigma * noise_space.pixel_scale(x)  # float or [C, 1, 1] pixel std
    nonfinite = torch.zeros(num_images, dtype=torch.long, device=x.device)  # [B] draws with NaN/inf logits
    start, checked_width = 0, False
    while start < total:
        stop = min(start + batch_size, total)
        noisy = noisy_buffer[: stop - start]  # [m, C, H, W]
        first, last = start // n, (stop - 1) // n  # images whose draws fall in this batch
        for image in range(first, last + 1):
            lo, hi = max(start, image * n) - start, min(stop, (image + 1) * n) - start
            draw = start + lo - image * n + start_sample  # index of the image's first draw in this segment
            streams.fill_(rows[image], draw, noisy[lo:hi])  # unit noise keyed by (image, draw index)
            noisy[lo:hi].mul_(scale).add_(x[image])  # x_b + sigma * e (sigma * std_c on channel c)
        logits = base(noisy)  # [m, K']
        if not checked_width:
            validation.check_output_width(logits, k)
            checked_width = True
        votes = logits.argmax(dim=1)  # [m]
        owner = torch.arange(start, stop, device=x.device) // n - first  # [m], image index within the batch
        counts[first : last + 1] += torch.bincount(owner * k + votes, minlength=(last - first + 1) * k).view(-1, k)
        nonfinite.index_add_(0, owner + first, validation.bad_logit_rows(logits).long())  # no host sync here
        start = stop
    validation.raise_on_nonfinite(nonfinite)
    return counts
