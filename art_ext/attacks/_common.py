"""What every attack core does at its entry: one input check (``art_ext.ops.validation.check_attack_inputs``: x
and y, before any model call), one checked cast of the inputs to the model's dtype, and per-image randomness (noise
keys, keyed Gaussian draws in a noise space, per-image generators for uniform draws).

Every random draw of an attack is a function of its image's key (``art_ext.smoothing.keys``) and of a position in
a fixed per-image order, never of the batch it is computed in: an image attacked alone or inside any batch, under
the same key, receives the same noise and the same random starts (DESIGN.md, convention 6). The keys of a call are
resolved once (``attack_keys``: one draw from the caller's generator, or the caller's ``keys``), and each purpose
(random starts, EOT noise, NAttack's mean and populations) uses its own ``keys.derive(purpose)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from art_ext.ops import validation
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, resolve


def model_dtype(model: object) -> torch.dtype:
    """The dtype the attack computes in: that of ``model``'s floating parameters; float32 when ``model`` has none (a
    parameter-free module or a plain function)."""
    dtype = validation.model_dtype(model, torch.float32)
    assert dtype is not None
    return dtype


def to_model_dtype(x: torch.Tensor, model: object, *, name: str = "x") -> torch.Tensor:
    """``x`` detached and cast once to ``model_dtype(model)`` (a no-op when it already has it).

    Raises:
        TypeError: ``x`` is not a tensor. ValueError: ``x`` is not floating, or the cast overflows (e.g. float64
        values beyond float16's range).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}; expected floating inputs inside the attack's bounds "
                         f"(e.g. x.float() / 255 for 8-bit images)")
    return validation.cast_to_model_dtype(x.detach(), model, name=name, default=torch.float32)


def checked_width(model: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` unchanged, except that its first output of shape [N, K] is checked once against ``y``: every label
    must be < K (the range check that needs one forward). The outputs are returned as the model computed them."""
    high = int(y.max()) if y.numel() else -1
    checked = False

    def forward(z: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        out = model(z)
        if not checked and out.dim() == 2:
            checked = True
            if high >= out.shape[1]:
                raise ValueError(f"y holds labels up to {high} but the model returns {out.shape[1]} class scores; "
                                 f"expected class indices in [0, {out.shape[1]})")
        return out

    return forward


def attack_keys(keys: NoiseKeys | None, generator: torch.Generator | None, x: torch.Tensor, *,
                needed: bool = True) -> NoiseKeys | None:
    """The per-image keys of one attack call: ``keys`` as given (one per image), else one draw from ``generator``
    (``None``: torch's default generator of x's device). When the call draws nothing (``needed`` False) the
    arguments are only checked and nothing is drawn (a seeded generator's state is left as it was)."""
    if needed:
        return resolve_keys(keys, generator, x.shape[0], x.device)
    if keys is not None:
        resolve_keys(keys, generator, x.shape[0], x.device)  # type, length, and not both keys and generator
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return None


def image_generators(keys: NoiseKeys, device: torch.device | str) -> list[torch.Generator]:
    """One ``torch.Generator`` per image on ``device``, seeded from its key (``NoiseKeys.generators``)."""
    return keys.generators(device)


class KeyedNoise:
    """Gaussian noise of std ``sigma`` in ``noise_space``, in input (pixel) units, for images like ``x``: draw j of
    image i is ``sigma * scale * NoiseStreams(keys)`` sample j of image i, whatever the request pattern.

    Args:
        keys: One key per image of ``x`` (already derived for this purpose).
        x: The images [B, C, H, W] (shape, device and dtype of the draws).
        sigma: Noise std >= 0 in the units of ``noise_space`` (0: zeros, nothing drawn).
        noise_space: ``PixelNoise()`` (default) or ``NormalizedNoise(mean, std)`` (channel c scaled by ``std_c``).
    """

    def __init__(self, keys: NoiseKeys, x: torch.Tensor, sigma: float,
                 noise_space: NoiseSpace | None = None) -> None:
        if len(keys) != x.shape[0]:
            raise ValueError(f"keys holds {len(keys)} keys but x has {x.shape[0]} images; expected one key per image")
        self.shape = tuple(x.shape)
        self.sigma = float(sigma)
        space = resolve(noise_space)
        self.scale: torch.Tensor | float = self.sigma if space.is_pixel else self.sigma * space.pixel_scale(x)
        self.streams = NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype)

    def draw(self, start: int, count: int, images: list[int] | None = None) -> torch.Tensor:
        """Draws ``start .. start + count - 1`` of every image (or of ``images``): [count, b, C, H, W]."""
        b = self.shape[0] if images is None else len(images)
        if self.sigma == 0:
            return torch.zeros((count, b, *self.shape[1:]), device=self.streams.device, dtype=self.streams.dtype)
        unit = self.streams.draw(start, count, images).transpose(0, 1)  # [count, b, C, H, W]
        return (self.scale * unit).contiguous()  # [C, 1, 1] scales broadcast over [count, b, C, H, W]
