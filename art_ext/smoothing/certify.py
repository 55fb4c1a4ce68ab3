"""Cohen et al. PREDICT and CERTIFY for Gaussian randomized smoothing, batched over images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from art_ext.ops import stats, validation
from art_ext.smoothing.keys import NoiseKeys, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, PixelNoise, resolve
from art_ext.smoothing.sampling import _sample_counts, noise_streams, validate_sampling_args
from art_ext.types import ABSTAIN, LogitsFn


@dataclass(frozen=True)
class Certificates:
    """Certificates of B images (all tensors on the device of the input), from CERTIFY or Auto-Noise.

    Every image carries its own noise level, so one type serves fixed-sigma CERTIFY and per-example sigma selection
    (Auto-Noise, certification through adaptation).

    Attributes:
        label: int64 [B], the certified class, ``ABSTAIN`` (-1) where no certificate is issued.
        radius: float64 [B], certified L2 radius in **pixel units** (0 where abstained), full precision.
        p_a_lower: float64 [B], one-sided (1 - alpha) Clopper-Pearson lower bound on p_A (estimation draws).
        sigma: float64 [B], the noise level each certificate holds for, in the units of ``noise_space``.
        counts_selection: int64 [B, K], the n0 selection votes. counts_estimation: int64 [B, K], the n votes.
        n0, n, alpha: CERTIFY parameters (of the final stage for Auto-Noise).
        noise_space: Where the noise was added (``PixelNoise()`` or ``NormalizedNoise(mean, std)``).
        radius_noise_space: float64 [B], the radius in the noise space's own units (sigma * Phi^-1(p_a_lower));
            equal to ``radius`` for pixel noise.
        prediction: int64 [B], what the method outputs for the image: the certified label for plain smoothing; the
            original model's f(x) for certification through adaptation (never abstains).
        selection_radius: float64 [B, S], Auto-Noise selection-stage radii per candidate sigma, ``None`` otherwise.
        sigmas: Candidate noise levels of Auto-Noise (ascending), or ``(sigma,)``. n_auto: Selection draws per
            candidate (0 without Auto-Noise).
        num_samples: int64 [B], every forward pass spent on each image (selection included) when it varies per
            image (``certify_sequential``, where ``n`` is n_max); ``None`` for fixed-n CERTIFY (n0 + n each).

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> certs = certify(LinearToy(torch.ones(4), b=-2.0), torch.full((2, 1, 2, 2), 0.9), n0=10, n=500,
        ...                 sigma=0.25, alpha=0.001, num_classes=2, batch_size=500,
        ...                 generator=torch.Generator().manual_seed(0))
        >>> certs.label.tolist(), bool((certs.radius > 0).all())
        ([1, 1], True)
    """

    label: torch.Tensor
    radius: torch.Tensor
    p_a_lower: torch.Tensor
    sigma: torch.Tensor
    counts_selection: torch.Tensor
    counts_estimation: torch.Tensor
    n0: int
    n: int
    alpha: float
    noise_space: NoiseSpace = field(default_factory=PixelNoise)
    radius_noise_space: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    selection_radius: torch.Tensor | None = None
    sigmas: tuple[float, ...] = ()
    n_auto: int = 0
    num_samples: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.radius_noise_space is None:
            object.__setattr__(self, "radius_noise_space", self.radius)
        if self.prediction is None:
            object.__setattr__(self, "prediction", self.label)
        if not self.sigmas:
            object.__setattr__(self, "sigmas", tuple(sorted({float(s) for s in self.sigma.tolist()})))

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def abstained(self) -> torch.Tensor:
        """bool [B]: where no certificate was issued."""
        return self.label == ABSTAIN

    def correct(self, labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """bool [B]: certified with the true label (abstentions count as wrong)."""
        y = torch.as_tensor(labels, device=self.label.device).long()
        return (self.label == y) & ~self.abstained

    @staticmethod
    def cat(parts: Sequence[Certificates]) -> Certificates:
        """Concatenate certificates computed with the same (n0, n, alpha, noise space, candidate sigmas)."""
        if not parts:
            raise ValueError("Certificates.cat needs at least one Certificates object")
        params = {(p.n0, p.n, p.alpha, p.noise_space, p.n_auto) for p in parts}
        if len(params) != 1:
            raise ValueError(
                "cannot concatenate certificates with different (n0, n, alpha, noise_space, n_auto): "
                f"{sorted(map(str, params))}"
            )
        first = parts[0]

        def cat_optional(name: str) -> torch.Tensor | None:
            values = [getattr(p, name) for p in parts]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"cannot concatenate certificates where only some have {name}")
            return torch.cat(values)

        return Certificates(
            label=torch.cat([p.label for p in parts]),
            radius=torch.cat([p.radius for p in parts]),
            p_a_lower=torch.cat([p.p_a_lower for p in parts]),
            sigma=torch.cat([p.sigma for p in parts]),
            counts_selection=torch.cat([p.counts_selection for p in parts]),
            counts_estimation=torch.cat([p.counts_estimation for p in parts]),
            n0=first.n0,
            n=first.n,
            alpha=first.alpha,
            noise_space=first.noise_space,
            radius_noise_space=torch.cat([p.radius_noise_space for p in parts]),  # type: ignore[misc]
            prediction=torch.cat([p.prediction for p in parts]),  # type: ignore[misc]
            selection_radius=cat_optional("selection_radius"),
            sigmas=tuple(sorted({s for p in parts for s in p.sigmas})),
            n_auto=first.n_auto,
            num_samples=cat_optional("num_samples"),
        )


def certify(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n0: int,
    n: int,
    sigma: float,
    alpha: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    noise_space: NoiseSpace | None = None,
    keys: NoiseKeys | None = None,
) -> Certificates:
    """CERTIFY of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Alg. "certify", Thm. 1 with p_B = 1 - p_A).

    1. Select c_A = argmax of the counts of ``n0`` draws (ties -> lowest class index).
    2. Count votes for c_A over ``n`` fresh draws, independent of the selection draws.
    3. p_A_lower = one-sided (1 - alpha) Clopper-Pearson bound; if p_A_lower < 1/2 abstain (label -1, radius 0),
       else radius = sigma * Phi^-1(p_A_lower) in the noise space's units, converted to pixel units
       (``noise_space.pixel_radius``; the identity for pixel noise).

    Guarantee:
        For each image, with probability >= 1 - alpha over the noise draws, the result either abstains or the
        smoothed classifier g satisfies g(x + d) = label for every ||d||_2 < radius (pixel units).

    Args:
        base: Base classifier in eval mode, [m, C, H, W] in [0, 1] -> logits [m, K'] with K' <= num_classes.
        x: Images [B, C, H, W] in [0, 1].
        n0: Selection draws per image (>= 1). n: Estimation draws per image (>= 1).
        sigma: Noise standard deviation in the units of ``noise_space`` (> 0). alpha: Failure probability in (0, 1).
        num_classes: K >= 2. batch_size: Noisy samples per forward pass.
        generator: Source of the per-image noise keys (one draw per call) on the device of ``x``; ``None`` uses
            torch's default generator.
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
        keys: Fixed per-image noise keys (``NoiseKeys``) instead of ``generator``: image i's selection and estimation
            draws are functions of ``keys[i]`` and the draw index only, so an image certified alone under its key
            gets the certificate it gets inside any batch, at any ``batch_size``.
    Returns:
        ``Certificates`` for the B images; ``radius`` in pixel units, ``radius_noise_space`` in the space's own.
    Raises:
        ValueError: before any sampling, on a malformed ``x`` (4-D float, finite, in [0, 1]), ``sigma <= 0``,
            ``n0``/``n``/``batch_size`` < 1, ``alpha`` outside (0, 1), ``num_classes`` < 2, or a base that is not a
            fixed function; after sampling, when the base returned NaN / infinite logits. A ``RuntimeWarning`` says
            when ``n`` and ``alpha`` can never certify.
    Deviations:
        The reference code (locuslab/smoothing@78a4d949 core.py) abstains when p_A_lower < 1/2 and certifies radius 0
        at equality; this is kept (the paper says "> 1/2"; the difference has measure zero). Radii are kept in float64
        rather than printed with 3 significant digits, which can round up.
    """
    x = validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                               generator=generator, noise_space=noise_space)
    validation.check_positive_int(n0, "n0")
    validation.check_positive_int(n, "n")
    alpha = validation.check_alpha(alpha)
    validation.warn_if_never_certifies(n, alpha)
    sigma = float(sigma)
    space = resolve(noise_space)

    image_keys = resolve_keys(keys, generator, x.shape[0], x.device)
    selection = noise_streams(image_keys.derive("selection"), x)
    counts_selection = _sample_counts(base, x, n0, sigma, num_classes, batch_size, selection, space)  # [B, K]
    c_hat = counts_selection.argmax(dim=1)  # [B]; first maximum on ties
    estimation = noise_streams(image_keys.derive("estimation"), x)  # independent of the selection draws
    counts_estimation = _sample_counts(base, x, n, sigma, num_classes, batch_size, estimation, space)
    n_a = counts_estimation.gather(1, c_hat[:, None]).squeeze(1)  # [B]
    p_a_lower = stats.clopper_pearson_lower(n_a, n, alpha)  # [B] float64
    certified = p_a_lower >= 0.5
    radius_native = torch.where(certified, sigma * stats.normal_ppf(p_a_lower), torch.zeros_like(p_a_lower))
    label = torch.where(certified, c_hat, torch.full_like(c_hat, ABSTAIN))
    return Certificates(
        label=label, radius=space.pixel_radius(radius_native), p_a_lower=p_a_lower,
        sigma=torch.full_like(p_a_lower, sigma), counts_selection=counts_selection,
        counts_estimation=counts_estimation, n0=n0, n=n, alpha=alpha, noise_space=space,
        radius_noise_space=radius_native, sigmas=(sigma,),
    )


def predict(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    n: int,
    sigma: float,
    alpha: float,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    noise_space: NoiseSpace | None = None,
    keys: NoiseKeys | None = None,
) -> torch.Tensor:
    """PREDICT of Cohen, Rosenfeld & Kolter (2019, arXiv:1902.02918v2, Alg. "predict", Prop. 1).

    Counts ``n`` draws, takes the top two classes n_A >= n_B and returns c_A when the two-sided exact binomial
    test of n_A ~ Bin(n_A + n_B, 1/2) has p-value <= alpha, else ``ABSTAIN``.

    Guarantee:
        For each image, the probability of returning a class other than g(x) is at most alpha.

    ``generator`` / ``keys`` as in ``certify`` (the noise of image i's j-th draw depends on its key and j only).

    Returns:
        int64 [B] labels with ``ABSTAIN`` (-1) where the test cannot decide, on the device of ``x``.
    """
    x = validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                               generator=generator, noise_space=noise_space)
    validation.check_positive_int(n, "n")
    alpha = validation.check_alpha(alpha)
    streams = noise_streams(resolve_keys(keys, generator, x.shape[0], x.device), x)
    counts = _sample_counts(base, x, n, float(sigma), num_classes, batch_size, streams, resolve(noise_space))
    top2 = counts.topk(2, dim=1).values  # [B, 2], n_A >= n_B
    pvalues = stats.binomial_test_pvalues(top2[:, 0], top2[:, 1])  # [B]
    c_a = counts.argmax(dim=1)
    return torch.where(pvalues <= alpha, c_a, torch.full_like(c_a, ABSTAIN))
