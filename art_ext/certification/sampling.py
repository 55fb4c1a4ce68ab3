"""Streaming Monte-Carlo class counts under Gaussian noise (SAMPLE of Cohen et al., 2019)."""

from __future__ import annotations

from typing import Callable

import torch

from art_ext.ops import validation

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def sample_counts(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n: int,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Class histogram of ``argmax base(x_b + sigma * e)`` over ``n`` fresh Gaussian draws per image.

    Implements SAMPLE of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Sec. 3.2, "SAMPLEUNDERNOISE"):
    hard argmax votes, noise in pixel space, no clipping of x + e.

    Streaming: only the [B, K] counts persist; one reusable noise buffer of ``batch_size`` samples is filled in
    place, so memory does not grow with ``n``. A device batch may hold the draws of several consecutive images,
    which keeps small models busy when ``n`` is small (e.g. the n0 selection draws).

    Args:
        base: Base classifier, [m, C, H, W] in [0, 1] -> logits [m, K']; K' <= num_classes. A ``nn.Module`` must be
            in eval mode (checked).
        x: Images [B, C, H, W], floating point, values in [0, 1].
        n: Noise draws per image (>= 1).
        sigma: Noise standard deviation in pixel units (> 0).
        num_classes: Number of classes K (>= 2).
        batch_size: Noisy samples per forward pass (>= 1).
        generator: Source of the noise, on the device of ``x``; ``None`` uses torch's default generator.
    Returns:
        ``torch.int64`` tensor [B, K] on the device of ``x``; each row sums to ``n``.
    Raises:
        ValueError: on a malformed ``x``, a non-positive ``sigma``/``n``/``batch_size``, ``num_classes`` < 2 or
            smaller than the base's output width, or a base in training mode.
    """
    validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size, generator=generator)
    validation.check_positive_int(n, "n")
    return _sample_counts(base, x, n, float(sigma), num_classes, batch_size, generator)


def validate_sampling_args(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    sigma: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None,
) -> None:
    validation.check_images(x)
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
) -> torch.Tensor:
    num_images, k = x.shape[0], num_classes
    counts = torch.zeros(num_images, k, dtype=torch.long, device=x.device)  # [B, K]
    total = num_images * n  # sample s belongs to image s // n
    noisy_buffer = torch.empty((min(batch_size, total), *x.shape[1:]), dtype=x.dtype, device=x.device)
    start, checked_width = 0, False
    while start < total:
        stop = min(start + batch_size, total)
        noisy = noisy_buffer[: stop - start]  # [m, C, H, W]
        noisy.normal_(0.0, sigma, generator=generator)  # fresh i.i.d. N(0, sigma^2), drawn in place
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
        start = stop
    return counts
