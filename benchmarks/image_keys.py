"""Per-image noise keys of the benchmark kinds: an image's noise is a function of (run seed, config id, the image's
dataset index) only, never of the work unit it is computed in (``images_per_chunk``, ``--limit``, the backend and
its worker count). See ``art_ext.smoothing.keys``.

A kind passes ``image_keys(seed, config, indices)`` as ``keys=`` to the smoothing functions, ``.derive(purpose)``
for each further use of the same images (one input of several, the scoring draws after an attack), and scores a
randomized decision over k draws with ``score_keyed`` (draw d under ``keys.derive(d)``) instead of handing
``score_randomized`` a model that draws from a generator shared by the unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from art_ext.attacks import score_randomized
from art_ext.attacks.protocol import RandomizedScore
from art_ext.deployment import Deployment
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams
from art_ext.smoothing.noise import NoiseSpace, resolve
from benchmarks.common import seed_for

#: a randomized decision under fixed per-image keys: (images [B, ...], keys of those B images) -> scores [B, K]
KeyedDecision = Callable[[torch.Tensor, NoiseKeys], torch.Tensor]


def image_keys(seed: int, config: str, indices: Iterable[int]) -> NoiseKeys:
    """The noise keys of the images with dataset ``indices`` in config ``config`` of a run with ``seed``."""
    return NoiseKeys.from_seed(seed_for(seed, config), indices)


def keyed_noise(x: torch.Tensor, sigma: float, keys: NoiseKeys, noise_space: NoiseSpace | None = None) -> torch.Tensor:
    """``x + sigma * e`` with one Gaussian draw ``e`` per image (sample 0 of its key's stream), in ``noise_space``
    (pixels by default): the keyed counterpart of ``art_ext.smoothing.noise.add_gaussian_noise``."""
    if sigma == 0:
        return x
    e = NoiseStreams(keys, x.shape[1:], device=x.device, dtype=x.dtype).draw(0, 1)[:, 0]  # [B, C, H, W]
    return resolve(noise_space).add(x, sigma, e)


def noise_fields(sigma: float, noise_space: NoiseSpace | None = None) -> dict[str, Any]:
    """What every row that involves noise records about it: ``noise_space`` (its repr) and ``sigma_pixel``, the
    pixel-space std of noise of std ``sigma`` in that space (the smallest per channel)."""
    space = resolve(noise_space)
    return {"noise_space": repr(space), "sigma_pixel": space.pixel_sigma(float(sigma))}


def score_keyed(decide: KeyedDecision | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                keys: NoiseKeys | None, draws: int) -> RandomizedScore:
    """``score_randomized`` over ``draws`` draws, draw d of image i under ``keys.derive(d)[i]``; ``keys=None``: a
    deterministic ``decide(x)``, scored once. All images of ``x`` go through ``decide`` in one call per draw, so its
    keys line up with its images."""
    if keys is None:
        return score_randomized(decide, x, y, draws=1, batch_size=max(1, x.shape[0]))  # type: ignore[arg-type]
    if len(keys) != x.shape[0]:
        raise ValueError(f"{len(keys)} keys for {x.shape[0]} images; expected one key per image")
    columns = []
    for d in range(draws):
        draw_keys = keys.derive(d)
        columns.append(score_randomized(lambda z: decide(z, draw_keys),  # type: ignore[call-arg]  # noqa: B023
                                        x, y, draws=1, batch_size=max(1, x.shape[0])).correct)
    return RandomizedScore(torch.cat(columns, dim=1))


def score_deployment(deployment: Deployment, x: torch.Tensor, y: torch.Tensor, keys: NoiseKeys | None,
                     draws: int) -> RandomizedScore:
    """Each image of ``x`` scored over ``draws`` draws of the deployed model, draw d of image i under
    ``keys.derive(d)[i]`` (``score_keyed``); a deterministic deployment is scored once, without keys."""
    if not deployment.randomized:
        return score_keyed(deployment.decide, x, y, None, 1)
    if keys is None:
        raise ValueError("a randomized deployment is scored under per-image keys; got keys=None")
    smoothed = deployment.smoothed_classifier
    return score_keyed(lambda z, k: smoothed.scores(z, keys=k), x, y, keys, draws)
