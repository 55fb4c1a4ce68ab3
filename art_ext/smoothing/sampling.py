"""Streaming Monte-Carlo class counts under Gaussian noise (SAMPLE of Cohen et al., 2019)."""

from __future__ import annotations

import torch

from art_ext.ops import validation
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
) -> torch.Tensor:
    """Class histogram of ``argmax base(x_b + sigma * e)`` over ``n`` fresh Gaussian draws per image.

    Implements SAMPLE of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Sec. 3.2, "SAMPLEUNDERNOISE"):
    hard argmax votes, no clipping of x + e. The noise is drawn in ``noise_space`` (pixels by default; see
    ``art_ext.smoothing.noise``).

    Streaming: only the [B, K] counts persist; one reusable noise buffer of ``batch_size`` samples is filled in
    place, so memory does not grow with ``n``. A device batch may hold the draws of several consecutive images,
    which keeps small models busy when ``n`` is small (e.g. the n0 selection draws).

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K']; K' <= num_classes. A ``nn.Module`` must be
            in eval mode (checked).
        x: Images [B, C, H, W], floating point, values in [0, 1].
        n: Noise draws per image (>= 1).
        sigma: Noise standard deviation in the units of ``noise_space`` (> 0).
        num_classes: Number of classes K (>= 2).
        batch_size: Noisy samples per forward pass (>= 1).
        generator: Source of the noise, on the device of ``x``; ``None`` uses torch's default generator.
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
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
    validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size, generator=generator,
                           noise_space=noise_space)
    validation.check_positive_int(n, "n")
    return _sample_counts(base, x, n, float(sigma), num_classes, batch_size, generator, resolve(noise_space))


def validate_sampling_args(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None,
    noise_space: NoiseSpace | None = None,
) -> None:
    validation.check_images(x)
    resolve(noise_space).check_input(x)
    validation.check_sigma(sigma)
    validation.check_num_classes(num_classes)
    validation.check_positive_int(batch_size, "batch_size")
    validation.check_fixed_function(base)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on device {generator.device}, but x is on {x.device}; they must match")


@torch.inference_mode()
def _sample_counts(
    base: LogitsFn,
    x: torch.Tensor,
    n: int,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None,
    noise_space: NoiseSpace,
) -> torch.Tensor:
    num_images, k = x.shape[0], num_classes
    counts = torch.zeros(num_images, k, dtype=torch.long, device=x.device)  # [B, K]
    total = num_images * n  # sample s belongs to image s // n
    noisy_buffer = torch.empty((min(batch_size, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    scale = None if noise_space.is_pixel else sigma * noise_space.pixel_scale(x)  # [C, 1, 1] pixel std per channel
    nonfinite = torch.zeros(num_images, dtype=torch.long, device=x.device)  # [B] draws with NaN/inf logits
    start, checked_width = 0, False
    while start < total:
        stop = min(start + batch_size, total)
        noisy = noisy_buffer[: stop - start]  # [m, C, H, W]
        if scale is None:
            noisy.normal_(0.0, sigma, generator=generator)  # fresh i.i.d. N(0, sigma^2), drawn in place
        else:
            noisy.normal_(0.0, 1.0, generator=generator).mul_(scale)  # std sigma * std_c on channel c
        first, last = start // n, (stop - 1) // n  # images whose draws fall in this batch
        for image in range(first, last + 1):
            lo, hi = max(start, image * n) - start, min(stop, (image + 1) * n) - start
            noisy[lo:hi].add_(x[image])  # x_b + e, broadcast over that image's draws
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
