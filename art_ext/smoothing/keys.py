"""Per-image noise keys: the noise of image i's j-th sample depends on the call's seed, i and j only.

Randomized smoothing, smoothed inference and the expectation attacks all draw many Gaussian samples per image. If
they were drawn as one stream for the whole batch, an image's noise would depend on how the samples are cut into
device batches and on which other images share the call (torch's CPU ``normal_`` even fills a tensor in blocks of
16 values, so a longer tensor does not start with the values of a shorter one). Here every image has a 64-bit
*key*, and its unit Gaussian samples are a fixed function of that key and the sample index:

* ``NoiseKeys`` holds one key per image. ``NoiseKeys.draw(generator, B)`` takes one 64-bit value from the caller's
  generator per call and derives key i from it and i; ``NoiseKeys.from_seed(seed, indices)`` derives keys from a
  seed and the images' indices in a dataset (what the benchmarks use, so that a certificate does not depend on
  which images are processed together). ``keys.derive("selection")`` gives independent keys for another purpose
  (the selection and estimation draws of CERTIFY, each sigma of Auto-Noise).
* ``NoiseStreams(keys, sample_shape)`` gives random access to the samples: sample j of image i lies in block
  ``j // block`` (a block is ``block_samples(sample_shape)`` samples, about 2^14 values), and each block is filled
  by one ``normal_`` call of a generator seeded from the key and the block index. Any request (any batch size,
  any chunking, any order, alone or among other images) returns the same values for the same (key, j).

The same kernels on the same data give the same values, so the noise is identical across batch sizes and worker
counts on one device type; CPU and CUDA generators produce different (equally valid) streams. On the CPU, torch's
Mersenne Twister keeps 32 bits of a seed, so there the block seeds are ``(32-bit image key + block index) mod 2^32``:
the blocks of one image never share a seed, while two images may (with probability ~B^2 / 2^33 for B images), which
leaves each image's own samples independent, as every per-image certificate requires.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
#: about this many values per block (16 samples of 1x32x32, 64 of 1x16x16, 5 of 3x32x32, 1 of 3x224x224)
BLOCK_VALUES = 1 << 14


#: memory for partly used blocks kept between requests, per ``NoiseStreams``
CACHE_BYTES = 64 * 2**20


def _mix64(z: int) -> int:
    """SplitMix64's finalizer (Steele, Lea & Flood 2014): a bijection on 64-bit integers that spreads every bit."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _combine(key: int, value: int) -> int:
    return _mix64(key ^ _mix64(value & _MASK64))


def _tag(purpose: str | int) -> int:
    if isinstance(purpose, bool) or not isinstance(purpose, (str, int)):
        raise TypeError(f"a key purpose must be a str or an int, got {purpose!r}")
    if isinstance(purpose, int):
        return purpose & _MASK64
    return int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")


def generator_seed(key: int, device: torch.device | str) -> int:
    """The seed of a torch generator on ``device`` for ``key``: the key folded to 32 bits on the CPU (whose Mersenne
    Twister keeps 32 bits of a seed), the key itself elsewhere."""
    return ((key >> 32) ^ key) & _MASK32 if torch.device(device).type == "cpu" else key


def block_samples(sample_shape: Sequence[int]) -> int:
    """Samples per noise block for samples of ``sample_shape`` (a fixed function of the shape only)."""
    values = 1
    for d in sample_shape:
        values *= int(d)
    return max(1, BLOCK_VALUES // max(1, values))


class NoiseKeys:
    """One 64-bit noise key per image (see the module docstring).

    Args:
        values: The keys, integers in [0, 2^64).

    Examples:
        >>> keys = NoiseKeys.from_seed(0, range(4))
        >>> len(keys), keys[1:3] == NoiseKeys.from_seed(0, [1, 2])
        (4, True)
        >>> keys.derive("selection") == keys
        False
    """

    __slots__ = ("values",)

    def __init__(self, values: Iterable[int]) -> None:
        out = tuple(values)
        for v in out:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MASK64:
                raise ValueError(f"noise keys must be integers in [0, 2^64), got {v!r}")
        self.values: tuple[int, ...] = out

    @classmethod
    def from_seed(cls, seed: int, indices: Iterable[int]) -> NoiseKeys:
        """Keys of the images with these ``indices`` (e.g. positions in a dataset) under ``seed``."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        base = _mix64(seed & _MASK64)
        return cls(_combine(base, int(i)) for i in indices)

    @classmethod
    def draw(cls, generator: torch.Generator | None, num_images: int, device: torch.device | str = "cpu") -> NoiseKeys:
        """Keys of ``num_images`` images from one 63-bit draw of ``generator`` (``None``: torch's default generator
        of ``device``): key i depends on that draw and i only, so image i gets the same key whatever the number of
        images in the call."""
        where = generator.device if generator is not None else torch.device(device)
        base = int(torch.randint(0, (1 << 63) - 1, (1,), generator=generator, device=where).item())
        return cls.from_seed(base, range(num_images))

    def generators(self, device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One ``torch.Generator`` per image on ``device``, seeded from its key (``generator_seed``), for draws
        other than Gaussian sample streams (e.g. uniform random starts). Two images of a call share a CPU seed with
        probability about B^2 / 2^33."""
        return [torch.Generator(device=device).manual_seed(generator_seed(v, device)) for v in self.values]

    def derive(self, purpose: str | int) -> NoiseKeys:
        """Independent keys for another use of the same images (e.g. ``"selection"`` vs ``"estimation"``)."""
        tag = _tag(purpose)
        return NoiseKeys(_combine(v, tag) for v in self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> NoiseKeys:
        if isinstance(index, slice):
            return NoiseKeys(self.values[index])
        if isinstance(index, int):
            return NoiseKeys((self.values[index],))
        if isinstance(index, torch.Tensor):
            index = index.reshape(-1).tolist()
        return NoiseKeys(self.values[int(i)] for i in index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseKeys) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        shown = ", ".join(f"{v:#x}" for v in self.values[:3])
        return f"NoiseKeys([{shown}{', ...' if len(self) > 3 else ''}], n={len(self)})"


def resolve_keys(
    keys: NoiseKeys | None, generator: torch.Generator | None, num_images: int, device: torch.device
) -> NoiseKeys:
    """The keys of a call: ``keys`` as given (one per image; ``generator`` must then be ``None``), else drawn from
    ``generator`` (one draw per call)."""
    if keys is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return NoiseKeys.draw(generator, num_images, device)
    if not isinstance(keys, NoiseKeys):
        raise TypeError(f"keys must be NoiseKeys (one key per image) or None, got {type(keys).__name__}")
    if generator is not None:
        raise ValueError("pass either keys (fixed per-image noise) or generator (fresh keys per call), not both")
    if len(keys) != num_images:
        raise ValueError(f"keys holds {len(keys)} keys but x has {num_images} images; expected one key per image")
    return keys


class NoiseStreams:
    """Random access to unit Gaussian samples, per image, as a fixed function of (key, sample index).

    Args:
        keys: One key per image.
        sample_shape: Shape of one sample, e.g. (C, H, W).
        device, dtype: Where and in which float type the samples are made (values differ between float types and
            between CPU and CUDA, never with the request pattern).

    Examples:
        >>> streams = NoiseStreams(NoiseKeys.from_seed(0, range(2)), (1, 2, 2))
        >>> whole = streams.samples(1, 0, 10)                  # samples 0..9 of image 1: [10, 1, 2, 2]
        >>> torch.equal(torch.cat([streams.samples(1, 0, 3), streams.samples(1, 3, 7)]), whole)
        True
    """

    def __init__(
        self, keys: NoiseKeys, sample_shape: Sequence[int], *, device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.keys = keys
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.device = torch.device(device)
        self.dtype = dtype
        self.block = block_samples(self.sample_shape)
        self._generator = torch.Generator(device=self.device)
        # partly used blocks, (image, block) -> samples, most recent last: a request that ends inside a block leaves
        # it here for the next request of that image (chunks of a few draws for many images reuse their blocks)
        self._cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        block_bytes = self.block * max(1, math.prod(self.sample_shape)) * torch.empty((), dtype=dtype).element_size()
        self._cache_blocks = max(1, CACHE_BYTES // block_bytes)
        # per-image base seeds: 32 bits on the CPU (see the module docstring), 64 elsewhere
        self._bases = [generator_seed(v, self.device) for v in keys.values]
        self._modulus = 1 << 32 if self.device.type == "cpu" else 1 << 64

    def __len__(self) -> int:
        return len(self.keys)

    def _seed(self, image: int, block: int) -> None:
        self._generator.manual_seed((self._bases[image] + block) % self._modulus)

    def _block(self, image: int, block: int) -> torch.Tensor:
        key = (image, block)
        samples = self._cache.get(key)
        if samples is None:
            samples = torch.empty((self.block, *self.sample_shape), device=self.device, dtype=self.dtype)
            self._seed(image, block)
            samples.normal_(generator=self._generator)
            self._cache[key] = samples
            if len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return samples

    def fill_(self, image: int, start: int, out: torch.Tensor) -> torch.Tensor:
        """Write samples ``start .. start + len(out) - 1`` of ``image`` into ``out`` [m, *sample_shape] (contiguous)
        and return it."""
        if tuple(out.shape[1:]) != self.sample_shape or not out.is_contiguous():
            raise ValueError(f"out must be contiguous with shape [m, {self.sample_shape}], got {tuple(out.shape)}")
        end, j = start + out.shape[0], start
        while j < end:
            block, offset = divmod(j, self.block)
            take = min(self.block - offset, end - j)
            target = out[j - start : j - start + take]
            if take == self.block:  # a whole block: drawn straight into place
                self._seed(image, block)
                target.normal_(generator=self._generator)
            else:  # part of a block: drawn whole once (kept for the next requests), the part copied
                target.copy_(self._block(image, block)[offset : offset + take])
            j += take
        return out

    def samples(self, image: int, start: int, count: int) -> torch.Tensor:
        """Samples ``start .. start + count - 1`` of ``image``: [count, *sample_shape]."""
        out = torch.empty((count, *self.sample_shape), device=self.device, dtype=self.dtype)
        return self.fill_(image, start, out)

    def draw(self, start: int, count: int, images: Sequence[int] | None = None) -> torch.Tensor:
        """Samples ``start .. start + count - 1`` of every image (or of ``images``): [b, count, *sample_shape]."""
        chosen = range(len(self)) if images is None else images
        out = torch.empty((len(chosen), count, *self.sample_shape), device=self.device, dtype=self.dtype)
        for row, image in enumerate(chosen):
            self.fill_(image, start, out[row])
        return out
