"""Sequential CERTIFY: Cohen et al.'s certificate with a data-dependent number of draws per image.

Fixed-n CERTIFY spends all n estimation draws on every image, including images whose answer is settled after a few
hundred draws (unanimous votes, or votes near 1/2 that will abstain). ``certify_sequential`` draws in stages and stops
each image as soon as its answer for a grid of radii is settled, keeping Cohen's per-image guarantee because its lower
confidence bound on p_A holds simultaneously at every look it may stop at:

* ``"staged_cp"``: one-sided Clopper-Pearson bounds at a fixed schedule of looks t_1 < ... < t_J = n_max with failure
  probabilities alpha_j summing to alpha; by the union bound P(exists j: p_A < LB_j) <= sum_j alpha_j = alpha, so
  the bound at any stopping look (and the largest bound over the looks taken) is valid. This is the staged test of
  Horvath, Mueller, Fischer & Vechev, "Boosting Randomized Smoothing with Variance Reduced Classifiers", ICLR 2022
  (adaptive sampling, Sec. 4 and App. of arXiv:2106.06946), used here for a radius grid rather than one radius.
  A larger share of alpha at the last look keeps the final bound close to fixed-n CERTIFY.
* ``"mixture_cs"``: a time-uniform confidence sequence from the Beta-binomial (Jeffreys Beta(1/2, 1/2)) mixture
  martingale M_t(p) = B(1/2 + S_t, 1/2 + t - S_t) / B(1/2, 1/2) / (p^S_t (1 - p)^(t - S_t)) and Ville's inequality
  P(exists t: M_t(p_A) >= 1 / alpha) <= alpha (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon, Ann. Statist.
  2021, Sec. 3; Waudby-Smith & Ramdas, JRSS-B 2023). Valid at every draw, so the schedule of looks costs nothing
  statistically, but the bound is looser than Clopper-Pearson at a fixed n (its all-votes cap at n = 10,000 and
  alpha = 0.001 is 3.03 sigma against 3.20 sigma).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from scipy import special
from scipy import stats as sps

from art_ext.ops import stats, validation
from art_ext.smoothing.certify import Certificates
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.smoothing.sampling import _sample_counts, validate_sampling_args
from art_ext.types import ABSTAIN, LogitsFn

Method = Literal["staged_cp", "mixture_cs"]
METHODS: tuple[str, ...] = ("staged_cp", "mixture_cs")
DEFAULT_FINAL_ALPHA_SHARE = 0.8
DEFAULT_FUTILITY_ALPHA = 0.02  # the upper bound of the stopping heuristic; it never enters a reported bound
_MIXTURE_PRIOR = 0.5  # Jeffreys Beta(1/2, 1/2)
_BISECTION_STEPS = 64  # halves [0, 1] down to 2^-64, below float64 resolution


def geometric_looks(n_max: int, *, first: int = 64, ratio: float = 1.5) -> tuple[int, ...]:
    """Look schedule ``first, ceil(first * ratio), ...`` below ``n_max``, then ``n_max`` (estimation draws so far).

    Examples:
        >>> geometric_looks(1000)
        (64, 96, 144, 216, 324, 486, 729, 1000)
        >>> geometric_looks(50)
        (50,)
    """
    validation.check_positive_int(n_max, "n_max")
    validation.check_positive_int(first, "first")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 1):
        raise ValueError(f"ratio must be a finite number > 1, got {ratio!r}")
    looks, t = [], first
    while t < n_max:
        looks.append(t)
        t = max(t + 1, math.ceil(t * ratio))
    return (*looks, n_max)


def _check_looks(looks: Sequence[int], n_max: int) -> tuple[int, ...]:
    if isinstance(looks, (str, bytes)) or not isinstance(looks, Sequence) or len(looks) == 0:
        raise TypeError(f"looks must be a non-empty sequence of ints ending at n_max={n_max}, got {looks!r}")
    for t in looks:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"looks must hold ints >= 1 (estimation draws at each look), got {list(looks)!r}")
    if any(b <= a for a, b in zip(looks[:-1], looks[1:], strict=True)):
        raise ValueError(f"looks must be strictly increasing, got {list(looks)!r}")
    if looks[-1] != n_max:
        raise ValueError(f"the last look must be n_max={n_max} (the most draws an image may get), got {list(looks)!r}")
    return tuple(looks)


def _check_radii(radii: object) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in radii)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(f"radii must be a sequence of L2 radii in pixel units (floats >= 0), got {radii!r}") from None
    if not values or not all(math.isfinite(r) and r >= 0 for r in values):
        raise ValueError(f"radii must be a non-empty sequence of finite L2 radii >= 0 (pixel units), got {radii!r}")
    return tuple(sorted(set(values)))


def _look_alphas(method: str, alpha: float, num_looks: int, final_share: float | None) -> np.ndarray:
    """Failure probability spent at each look (float64 [J])."""
    if method == "mixture_cs":
        if final_share is not None:
            raise ValueError("final_alpha_share splits alpha over the looks of method='staged_cp'; the confidence "
                             f"sequence of method='mixture_cs' spends alpha once for all looks, got {final_share!r}")
        return np.full(num_looks, alpha)
    share = DEFAULT_FINAL_ALPHA_SHARE if final_share is None else final_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
        raise ValueError(f"final_alpha_share must be a number in (0, 1], got {final_share!r}")
    if num_looks == 1:
        return np.array([alpha])  # one look: all of alpha, whatever the share (fixed-n CERTIFY)
    if share == 1.0:
        raise ValueError("final_alpha_share=1 leaves no alpha for the looks before n_max; use a share < 1, or "
                         "looks=(n_max,) for a single look")
    return np.array([(1.0 - share) * alpha / (num_looks - 1)] * (num_looks - 1) + [share * alpha])


def _mixture_bounds(k: np.ndarray, t: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper end of the Beta-binomial mixture confidence set {p: M_t(p) < 1/alpha} (float64 [R] each).

    log M_t(p) = log B(a + k, a + t - k) - log B(a, a) - k log p - (t - k) log(1 - p) is convex in p with its minimum
    (<= 0) at p_hat = k / t, so the set is an interval around p_hat; each end is found by bisection, returning the
    bracket end outside the set (so the lower bound is never above the set's infimum).
    """
    a = _MIXTURE_PRIOR
    excess = special.betaln(a + k, a + t - k) - special.betaln(a, a) - math.log(1.0 / alpha)  # [R]

    def inside(p: np.ndarray) -> np.ndarray:  # log M_t(p) < log(1 / alpha)
        with np.errstate(divide="ignore", invalid="ignore"):
            return excess < special.xlogy(k, p) + special.xlog1py(t - k, -p)

    p_hat = k / t
    lo, hi = np.zeros_like(p_hat), p_hat.copy()  # lower end in (lo, hi]: lo outside the set, hi inside
    up_lo, up_hi = p_hat.copy(), np.ones_like(p_hat)  # upper end in [up_lo, up_hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = inside(mid)
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
        mid = 0.5 * (up_lo + up_hi)
        ok = inside(mid)
        up_lo, up_hi = np.where(ok, mid, up_lo), np.where(ok, up_hi, mid)
    return np.where(k > 0, lo, 0.0), np.where(k < t, up_hi, 1.0)


def _bounds(method: str, n_a: torch.Tensor, t: int, alpha_j: float,
            upper_alpha: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) confidence bounds on p_A after t draws with n_a votes (float64 [R], device of n_a).

    The lower bound carries the guarantee; the upper bound only decides when a grid level is out of reach. For
    ``"staged_cp"`` the upper bound is the one-sided Clopper-Pearson bound at ``upper_alpha`` (default ``alpha_j``).
    """
    if method == "staged_cp":
        lower = stats.clopper_pearson_lower(n_a, t, alpha_j)  # the exact bound certify uses
        k = n_a.detach().to("cpu", torch.float64).numpy()
        with np.errstate(invalid="ignore"):
            upper = np.where(k < t, sps.beta.isf(alpha_j if upper_alpha is None else upper_alpha, k + 1, t - k), 1.0)
        return lower, torch.as_tensor(upper, dtype=torch.float64, device=n_a.device)
    k = n_a.detach().to("cpu", torch.float64).numpy()
    low, up = _mixture_bounds(k, t, alpha_j)
    return (torch.as_tensor(low, dtype=torch.float64, device=n_a.device),
            torch.as_tensor(up, dtype=torch.float64, device=n_a.device))


def certify_sequential(
    base: LogitsFn,
    x: torch.Tensor,
    *,
    sigma: float,
    alpha: float,
    radii: Sequence[float],
    n0: int,
    n_max: int,
    num_classes: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    noise_space: NoiseSpace | None = None,
    method: Method = "staged_cp",
    looks: Sequence[int] | None = None,
    final_alpha_share: float | None = None,
    futility_alpha: float = DEFAULT_FUTILITY_ALPHA,
) -> Certificates:
    """CERTIFY with early stopping per image, settled for a grid of radii (see the module docstring for the bounds).

    1. Selection as in CERTIFY: c_A = argmax of the counts of ``n0`` draws (ties -> lowest class index).
    2. Fresh estimation draws for the images still running, up to the next look t_j; at each look the lower bound
       LB_j and an upper bound UB_j on p_A = P(f(x + e) = c_A) are computed (``method``). Running images share
       device batches (draws of several images per forward pass, as ``sample_counts``); settled ones drop out.
    3. An image is settled at look j when, with LB its largest lower bound so far and the grid levels
       Phi(r / sigma) (r in ``radii``, converted to the noise space's units) restricted to the levels that n_max can
       reach at all (the all-votes bound at n_max; higher levels are skipped):
       (a) LB reaches the highest reachable level; or (b) the lowest reachable level above LB is out of reach even
       if p_A were as large as UB (the smallest upper bound so far): the lower bound n_max draws would give with a
       vote share of UB (the final look's bound at floor(UB * n_max) votes) is below that level, so spending the
       remaining draws would not certify it (a stopping heuristic only: UB is a one-sided bound at
       ``futility_alpha``, it never enters a reported bound); or (c) t_j = n_max.
    4. As CERTIFY: abstain when LB < 1/2, else radius = sigma * Phi^-1(LB) (a continuous radius, not rounded to the
       grid), in pixel units (``noise_space.pixel_radius``).

    Guarantee:
        For each image, with probability >= 1 - alpha over the estimation draws, p_A >= LB_j at every look j
        simultaneously (union bound over the looks for ``"staged_cp"``; Ville's inequality for ``"mixture_cs"``),
        hence at the data-dependent stopping look, whatever the stopping rule did; so the result either abstains or
        the smoothed classifier g satisfies g(x + d) = label for every ||d||_2 < radius (Cohen et al. 2019, Thm. 1
        with p_B = 1 - p_A). With ``looks=(n_max,)`` and ``method="staged_cp"`` it is fixed-n CERTIFY: the same
        draws, counts, label and radius as ``certify(..., n=n_max)`` for the same generator state.

    Args:
        base: Base classifier in eval mode, [m, C, H, W] in [0, 1] -> logits [m, K'] with K' <= num_classes.
        x: Images [B, C, H, W] in [0, 1].
        sigma: Noise standard deviation in the units of ``noise_space`` (> 0). alpha: Failure probability in (0, 1).
        radii: The grid of L2 radii (pixel units, >= 0) the answer must be settled for, e.g. (0.25, 0.5, 0.75, 1.0),
            or one radius. Radius 0 stands for "certified at all" (p_A > 1/2).
        n0: Selection draws per image (>= 1). n_max: The most estimation draws an image may get (>= 1).
        num_classes: K >= 2. batch_size: Noisy samples per forward pass.
        generator: Noise source on the device of ``x``.
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
        method: ``"staged_cp"`` (default, Horvath et al. 2022) or ``"mixture_cs"`` (confidence sequence).
        looks: Strictly increasing estimation-draw counts at which the bounds are evaluated, ending at ``n_max``;
            default ``geometric_looks(n_max)`` (64, 96, 144, ... x1.5, then n_max).
        final_alpha_share: ``"staged_cp"`` only: the share of alpha spent at the last look (default 0.8); the rest
            is split evenly over the earlier looks. With a single look all of alpha is spent there.
        futility_alpha: Confidence of the upper bound used by stopping rule (b) (default 0.02; for
            ``"mixture_cs"`` the upper end of its confidence sequence at ``alpha`` is used instead). It trades draws
            for the chance of stopping an image that n_max would have certified at the next grid level; it does not
            affect the guarantee.
    Returns:
        ``Certificates`` with ``num_samples`` int64 [B] (n0 + the estimation draws of each image: every forward pass
        spent on it), ``counts_estimation`` the votes at stopping (row sums = num_samples - n0), ``p_a_lower`` the
        bound LB at stopping, ``n = n_max`` and ``alpha`` the total failure probability.
    Raises:
        ValueError: before any sampling, on a malformed ``x`` (4-D float, finite, in [0, 1]), ``sigma <= 0``,
            ``n0``/``n_max``/``batch_size`` < 1, ``alpha`` outside (0, 1), ``num_classes`` < 2, an empty or negative
            ``radii``, an unknown ``method``, ``looks`` that are not strictly increasing ints ending at ``n_max``, a
            ``final_alpha_share`` outside (0, 1] (or given for ``"mixture_cs"``), a ``futility_alpha`` outside
            (0, 1), or a base that is not a fixed
            function; after sampling, when the base returned NaN / infinite logits. A ``RuntimeWarning`` names grid
            radii that n_max can never certify (they are skipped by the stopping rule) and says when nothing can be
            certified at all.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> x = torch.full((2, 1, 2, 2), 0.9)  # p_A = Phi(3.2): votes unanimous at first
        >>> certs = certify_sequential(LinearToy(torch.ones(4), b=-2.0), x, sigma=0.25, alpha=0.001, radii=[0.5],
        ...                            n0=10, n_max=10_000, num_classes=2, batch_size=500,
        ...                            generator=torch.Generator().manual_seed(0))
        >>> certs.label.tolist(), bool((certs.radius >= 0.5).all()), certs.num_samples.tolist()
        ([1, 1], True, [496, 496])
    """
    validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size, generator=generator,
                           noise_space=noise_space)
    validation.check_positive_int(n0, "n0")
    validation.check_positive_int(n_max, "n_max")
    alpha = validation.check_alpha(alpha)
    if isinstance(futility_alpha, bool) or not isinstance(futility_alpha, (int, float)) or not (
            0.0 < futility_alpha < 1.0):
        raise ValueError(f"futility_alpha must be a number in (0, 1) (the stopping heuristic's upper-bound level), "
                         f"got {futility_alpha!r}")
    grid = _check_radii(radii)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    schedule = geometric_looks(n_max) if looks is None else _check_looks(looks, n_max)
    look_alphas = _look_alphas(method, alpha, len(schedule), final_alpha_share)
    sigma = float(sigma)
    space = resolve(noise_space)
    device = x.device

    # grid levels Phi(r / sigma) in the noise space's units; keep only those the all-votes bound at n_max reaches
    unit = float(space.pixel_radius(torch.tensor(1.0, dtype=torch.float64)))  # pixel radius of a unit radius
    levels = sps.norm.cdf(np.array(grid) / unit / sigma)  # float64 [G], ascending
    final_alpha = float(look_alphas[-1])
    cap = float(_bounds(method, torch.tensor([n_max]), n_max, final_alpha)[0][0])
    reachable = levels <= cap
    if cap < 0.5:
        warnings.warn(f"n_max={n_max} with alpha={alpha} (method={method!r}) can never certify: even if all votes "
                      f"agree, the lower bound at n_max is {cap:.4f} < 0.5, so every point abstains",
                      RuntimeWarning, stacklevel=2)
    elif not reachable.all():
        skipped = [r for r, ok in zip(grid, reachable, strict=True) if not ok]
        warnings.warn(f"radii {skipped} can never be certified with n_max={n_max}, sigma={sigma} and alpha={alpha} "
                      f"(method={method!r}; at most sigma * Phi^-1({cap:.6f}) in the noise space's units): the "
                      "stopping rule skips them", RuntimeWarning, stacklevel=2)
    targets = torch.as_tensor(levels[reachable], dtype=torch.float64, device=device)  # [G'] ascending
    top = targets[-1] if len(targets) else None
    padded = torch.cat([targets, targets.new_full((1,), 2.0)])  # [G' + 1]

    num_images = x.shape[0]
    counts_selection = _sample_counts(base, x, n0, sigma, num_classes, batch_size, generator, space)  # [B, K]
    c_hat = counts_selection.argmax(dim=1)  # [B]; first maximum on ties
    counts = torch.zeros_like(counts_selection)  # [B, K] estimation votes so far
    drawn = torch.zeros(num_images, dtype=torch.long, device=device)  # [B] estimation draws so far
    lower = torch.zeros(num_images, dtype=torch.float64, device=device)  # [B] largest lower bound so far
    upper = torch.ones(num_images, dtype=torch.float64, device=device)  # [B] smallest upper bound so far
    running = torch.ones(num_images, dtype=torch.bool, device=device)  # [B]
    previous = 0
    for t, alpha_j in zip(schedule, look_alphas.tolist(), strict=True):
        index = running.nonzero().squeeze(1)  # [R] images still sampling
        x_run = x if len(index) == num_images else x[index]
        counts[index] += _sample_counts(base, x_run, t - previous, sigma, num_classes, batch_size, generator, space)
        drawn[index] = t
        previous = t
        n_a = counts[index].gather(1, c_hat[index, None]).squeeze(1)  # [R]
        lb, ub = _bounds(method, n_a, t, alpha_j, futility_alpha)
        lower[index] = torch.maximum(lower[index], lb)  # valid: the bound holds at every look at once
        upper[index] = torch.minimum(upper[index], ub)
        if t == n_max:
            break
        lb, ub = lower[index], upper[index]
        if top is None:
            settled = torch.ones_like(lb, dtype=torch.bool)  # no grid level can be reached: nothing to sample for
        else:
            next_level = padded[torch.searchsorted(targets, lb, right=True)]  # [R] lowest level above lb (2: none)
            # the bound n_max draws would give if p_A were ub: below next_level means the level is out of reach
            reach = _bounds(method, torch.floor(ub * n_max), n_max, final_alpha)[0]  # [R]
            settled = (lb >= top) | (reach < next_level)
        running[index[settled]] = False
        if not bool(running.any()):
            break

    certified = lower >= 0.5
    radius_native = torch.where(certified, sigma * stats.normal_ppf(lower), torch.zeros_like(lower))
    label = torch.where(certified, c_hat, torch.full_like(c_hat, ABSTAIN))
    return Certificates(
        label=label, radius=space.pixel_radius(radius_native), p_a_lower=lower,
        sigma=torch.full_like(lower, sigma), counts_selection=counts_selection, counts_estimation=counts,
        n0=n0, n=n_max, alpha=alpha, noise_space=space, radius_noise_space=radius_native, sigmas=(sigma,),
        num_samples=drawn + n0,
    )
