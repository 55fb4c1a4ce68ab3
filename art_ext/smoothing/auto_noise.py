"""Auto-Noise: per-example noise-level selection with independent final draws (Nandy et al., Alg. 2).

Reference: "Towards Bridging the gap between Empirical and Certified Robustness against Adversarial Examples"
(arXiv:2102.05096v3), Alg. 2 and Eq. 5; research/algorithms.md §8.4. Used directly on any base classifier
(``lambda sigma: model``) and by ``art_ext.defences.CertificationThroughAdaptation`` with BN-adapted bases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from art_ext.ops import validation
from art_ext.smoothing.certify import Certificates, certify
from art_ext.smoothing.keys import NoiseKeys, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.types import ABSTAIN, LogitsFn

#: The noise list of the paper's Auto-Noise experiments (Sec. 3.2).
DEFAULT_SIGMAS: tuple[float, ...] = (0.12, 0.25, 0.37, 0.50, 0.67, 0.75, 0.87, 1.0)


def check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    values = tuple(validation.check_sigma(s) for s in sigmas)
    if not values:
        raise ValueError("sigmas is empty; pass at least one noise level > 0")
    if len(set(values)) != len(values):
        raise ValueError(f"sigmas contains duplicates: {sigmas!r}")
    return tuple(sorted(values))


def keep_agreeing(
    label: torch.Tensor, radius: torch.Tensor, reference: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1, step 2: a certificate counts only where the smoothed label equals the reference label."""
    if reference is None:
        return label, radius
    agree = label == reference
    kept_label = torch.where(agree, label, torch.full_like(label, ABSTAIN))
    return kept_label, torch.where(agree, radius, torch.zeros_like(radius))


def auto_noise_certify(
    base_for_sigma: Callable[[float], LogitsFn],
    x: torch.Tensor,
    *,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    n_auto: int = 1000,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    num_classes: int,
    batch_size: int = 1000,
    reference: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_space: NoiseSpace | None = None,
    keys: NoiseKeys | None = None,
) -> Certificates:
    """Auto-Noise (Nandy et al., arXiv:2102.05096v3, Alg. 2, Eq. 5): choose sigma per image, then certify.

    1. Selection: for every sigma_k in ``sigmas``, CERTIFY (Cohen et al., 2019) the smoothed ``base_for_sigma(sigma_k)``
       with ``n0`` + ``n_auto`` draws -> radius R_k (0 when it abstains or, with ``reference``, when its label differs
       from the reference label). sigma_auto = argmax_k R_k; ties go to the smallest sigma (in practice ties happen
       when every sigma abstains, and the smallest sigma is the one most likely to certify with more draws).
    2. Final: CERTIFY at sigma_auto with ``n0`` + ``n`` fresh draws, none of them shared with stage 1; with
       ``reference``, the certificate is kept only where the certified label equals it (Alg. 1, step 2).

    Guarantee:
        For each image, conditional on the selected sigma_auto, with probability >= 1 - alpha over the final-stage
        draws the result either abstains or the smoothed classifier g_{sigma_auto} (base ``base_for_sigma(
        sigma_auto)``, noise N(0, sigma_auto^2 I)) returns ``label`` on the whole L2 ball of ``radius`` around x.
        It is NOT a certificate of the end-to-end rule "pick sigma(x'), then smooth": at a perturbed x' the
        selection may pick another sigma, so nothing is claimed for that input-dependent classifier (Sukenik et al.,
        2021; algorithms.md §8.4).

    Args:
        base_for_sigma: sigma -> base classifier (eval mode) for that noise level; ``lambda s: model`` for a fixed
            model, ``CertificationThroughAdaptation.adapted`` for BN-adapted copies.
        x: Images [B, C, H, W] in [0, 1].
        sigmas: Candidate noise levels (> 0, distinct; sorted internally).
        n_auto: Selection draws per sigma (paper: 1,000). n0: CERTIFY class-selection draws. n: Final draws (paper:
            100,000). alpha: Per-CERTIFY failure probability. num_classes: K. batch_size: Noisy samples per forward.
        reference: Optional int64 [B] labels the certificate must agree with (f(x) in Algorithm 1).
        generator: Source of the per-image noise keys (one draw per call) on the device of ``x``.
        noise_space: Where the noise is added (``None``: pixels); ``sigmas`` are in its units.
        keys: Fixed per-image noise keys (``NoiseKeys``) instead of ``generator``. Each selection sigma and the final
            stage draw from their own keys derived from image i's key, so an image's certificate does not depend
            on the other images in the call or on which of them chose the same sigma.
    Returns:
        ``Certificates`` with per-image ``sigma``, ``selection_radius`` [B, S] (pixel units) and ``n_auto``;
        ``prediction`` is ``reference`` when given, else the certified label.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> base = LinearToy(torch.ones(4), b=-2.0)
        >>> certs = auto_noise_certify(lambda sigma: base, torch.full((1, 1, 2, 2), 0.9), sigmas=(0.25, 0.5),
        ...                            n_auto=100, n0=10, n=1000, num_classes=2,
        ...                            generator=torch.Generator().manual_seed(0))
        >>> certs.sigma.tolist(), certs.label.tolist()
        ([0.5], [1])

    Deviations:
        Both stages run Cohen's CERTIFY with its own ``n0`` class-selection draws; the paper does not say how the
        class is chosen. Ties are resolved to the smallest sigma (unspecified in the paper).
    """
    grid = check_sigmas(sigmas)
    validation.check_positive_int(n_auto, "n_auto")
    validation.check_images(x)
    if reference is not None and reference.shape != x.shape[:1]:
        raise ValueError(f"reference must be int64 labels of shape [{x.shape[0]}], got {tuple(reference.shape)}")
    space = resolve(noise_space)
    image_keys = resolve_keys(keys, generator, x.shape[0], x.device)

    def run_certify(base: LogitsFn, images: torch.Tensor, sigma: float, draws: int, keys: NoiseKeys) -> Certificates:
        return certify(base, images, n0=n0, n=draws, sigma=sigma, alpha=alpha, num_classes=num_classes,
                       batch_size=batch_size, keys=keys, noise_space=space)

    selection = torch.zeros(x.shape[0], len(grid), dtype=torch.float64, device=x.device)  # [B, S]
    for k, sigma in enumerate(grid):
        stage1 = run_certify(base_for_sigma(sigma), x, sigma, n_auto, image_keys.derive(f"auto-noise sigma={sigma!r}"))
        selection[:, k] = keep_agreeing(stage1.label, stage1.radius, reference)[1]
    chosen = selection.argmax(dim=1)  # [B]; first maximum = smallest sigma on ties (grid is ascending)

    final_keys = image_keys.derive("auto-noise final")  # none shared with stage 1
    parts: list[Certificates] = []
    order: list[torch.Tensor] = []
    for k in chosen.unique().tolist():
        rows = (chosen == k).nonzero().squeeze(1)  # images certified at grid[k]
        final = run_certify(base_for_sigma(grid[k]), x[rows], grid[k], n, final_keys[rows])  # fresh draws
        ref = None if reference is None else reference[rows]
        label, radius = keep_agreeing(final.label, final.radius, ref)
        _, radius_native = keep_agreeing(final.label, final.radius_noise_space, ref)  # type: ignore[arg-type]
        parts.append(Certificates(
            label=label, radius=radius, p_a_lower=final.p_a_lower, sigma=final.sigma,
            counts_selection=final.counts_selection, counts_estimation=final.counts_estimation, n0=n0, n=n,
            alpha=final.alpha, noise_space=space, radius_noise_space=radius_native, sigmas=grid, n_auto=n_auto,
        ))
        order.append(rows)
    merged = Certificates.cat(parts)
    inverse = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    inverse[torch.cat(order)] = torch.arange(x.shape[0], device=x.device)  # back to the input order
    label = merged.label[inverse]
    return Certificates(
        label=label, radius=merged.radius[inverse], p_a_lower=merged.p_a_lower[inverse],
        sigma=merged.sigma[inverse], counts_selection=merged.counts_selection[inverse],
        counts_estimation=merged.counts_estimation[inverse], n0=n0, n=n, alpha=merged.alpha, noise_space=space,
        radius_noise_space=merged.radius_noise_space[inverse],  # type: ignore[index]
        prediction=label.clone() if reference is None else reference.clone(),
        selection_radius=selection, sigmas=grid, n_auto=n_auto,
    )
