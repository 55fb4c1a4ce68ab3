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
  A large share of alpha at the last look keeps the final bound close to fixed-n CERTIFY; a second large share sits
  at the *top look*, the first draw count at which an image whose votes all went to c_A certifies the highest grid
  radius the run can reach (t = ceil(ln alpha_top / ln Phi(r_top / sigma)), since the all-votes bound is
  alpha_top^(1/t)); the remaining looks, which mostly serve the stopping rule, share what is left.
* ``"mixture_cs"``: a time-uniform confidence sequence from the Beta-binomial (Jeffreys Beta(1/2, 1/2)) mixture
  martingale M_t(p) = B(1/2 + S_t, 1/2 + t - S_t) / B(1/2, 1/2) / (p^S_t (1 - p)^(t - S_t)) and Ville's inequality
  P(exists t: M_t(p_A) >= 1 / alpha) <= alpha (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon, Ann. Statist.
  2021, Sec. 3; Waudby-Smith & Ramdas, JRSS-B 2023). Valid at every draw, so the schedule of looks costs nothing
  statistically, but the bound is looser than Clopper-Pearson at a fixed n (its all-votes cap at n = 10,000 and
  alpha = 0.001 is 3.03 sigma against 3.20 sigma).

Stopping for futility (which never enters a reported bound) uses the predictive probability of success of group
sequential designs (Spiegelhalter, Freedman & Blackburn, Controlled Clinical Trials 1986; Jennison & Turnbull, "Group
Sequential Methods with Applications to Clinical Trials", 2000, Sec. 10.3): the probability, under the Jeffreys
posterior Beta(1/2 + votes, 1/2 + misses) of p_A, that the draws left until n_max would bring the final bound up to
the next grid level.
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
from art_ext.smoothing.keys import NoiseKeys, resolve_keys
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.smoothing.sampling import _sample_counts, noise_streams, validate_sampling_args
from art_ext.types import ABSTAIN, LogitsFn

Method = Literal["staged_cp", "mixture_cs"]
METHODS: tuple[str, ...] = ("staged_cp", "mixture_cs")
# Defaults chosen by replaying 200 fixed-n certificates per model (README, "How the defaults were chosen").
DEFAULT_FINAL_ALPHA_SHARE = 0.75  # share of alpha at n_max
DEFAULT_TOP_ALPHA_SHARE = 0.2  # share of alpha at the top look (staged_cp's default schedule)
DEFAULT_LOOK_RATIO = 1.3  # growth of the default look schedule
DEFAULT_FUTILITY = 0.03  # stop when the predictive probability of reaching the next level is below this
_MIXTURE_PRIOR = 0.5  # Jeffreys Beta(1/2, 1/2)
_BISECTION_STEPS = 64  # halves [0, 1] down to 2^-64, below float64 resolution


def geometric_looks(n_max: int, *, first: int = 64, ratio: float = DEFAULT_LOOK_RATIO) -> tuple[int, ...]:
    """Look schedule ``first, ceil(first * ratio), ...`` below ``n_max``, then ``n_max`` (estimation draws so far).

    Examples:
        >>> geometric_looks(1000, ratio=1.5)
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


def _check_share(value: object, name: str, *, low_open: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and (
        (0.0 < value <= 1.0) if low_open else (0.0 <= value < 1.0))
    if not ok:
        raise ValueError(f"{name} must be a number in {'(0, 1]' if low_open else '[0, 1)'}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _look_alphas(schedule: Sequence[int], alpha: float, final_share: float, top_look: int | None = None,
                 top_share: float = 0.0) -> np.ndarray:
    """``"staged_cp"``: failure probability spent at each look (float64 [J], summing to alpha).

    One look gets all of alpha (fixed-n CERTIFY). Otherwise the last look gets ``final_share * alpha``, the top look
    (if any) ``top_share * alpha``, and the other looks share the rest evenly (with no other look, the rest goes to
    the last look).
    """
    if len(schedule) == 1:
        return np.array([alpha])
    spent = final_share + (top_share if top_look is not None else 0.0)
    others = [t for t in schedule[:-1] if t != top_look]
    alphas = np.array([top_share * alpha if t == top_look else (1.0 - spent) * alpha / max(len(others), 1)
                       for t in schedule[:-1]] + [final_share * alpha])
    if not others:
        alphas[-1] += (1.0 - spent) * alpha
    return alphas


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


def _lower(method: str, n_a: torch.Tensor, t: int, alpha_j: float) -> torch.Tensor:
    """Lower confidence bound on p_A after t draws with n_a votes (float64 [R], device of n_a): the reported bound."""
    if method == "staged_cp":
        return stats.clopper_pearson_lower(n_a, t, alpha_j)  # the exact bound certify uses
    low, _ = _mixture_bounds(n_a.detach().to("cpu", torch.float64).numpy(), t, alpha_j)
    return torch.as_tensor(low, dtype=torch.float64, device=n_a.device)


def _votes_needed(method: str, n_max: int, alpha_final: float, levels: np.ndarray) -> np.ndarray:
    """Smallest vote count at n_max whose final-look bound reaches each level (int64 [G]; levels <= the cap)."""
    lo, hi = np.full(len(levels), -1), np.full(len(levels), n_max)  # bound(lo) < level <= bound(hi)
    while bool((hi - lo > 1).any()):
        mid = (lo + hi) // 2
        ok = _lower(method, torch.as_tensor(np.maximum(mid, 0), dtype=torch.float64), n_max, alpha_final).numpy()
        ok = (ok >= levels) & (mid >= 0)
        active = hi - lo > 1
        hi, lo = np.where(active & ok, mid, hi), np.where(active & ~ok, mid, lo)
    return hi


def _top_look(method: str, level: float, alpha_top: float) -> int:
    """First draw count at which unanimous votes give a bound >= level (all-votes Clopper-Pearson: alpha^(1/t))."""
    t = max(1, math.ceil(math.log(alpha_top) / math.log(level)))
    while float(_lower(method, torch.tensor([float(t)]), t, alpha_top)[0]) < level:  # float rounding guard
        t += 1
    return t


def _predictive_success(misses: np.ndarray, votes: np.ndarray, draws_left: int, misses_allowed: np.ndarray
                       ) -> np.ndarray:
    """Probability that at most ``misses_allowed`` draws in all miss c_A once ``draws_left`` more are taken.

    The further misses are Beta-binomial: Binomial(draws_left, 1 - p_A) with 1 - p_A drawn from the Jeffreys
    posterior Beta(1/2 + misses, 1/2 + votes) (Spiegelhalter et al. 1986's predictive probability of success).

    Examples:
        >>> float(_predictive_success(np.array([0]), np.array([1000]), 0, np.array([0]))[0])
        1.0
        >>> p = _predictive_success(np.array([3, 3]), np.array([6097, 6097]), 3900, np.array([3, 5]))
        >>> bool(0.1 < p[0] < p[1] < 0.7)
        True
    """
    room = misses_allowed - misses
    return np.where(room < 0, 0.0, sps.betabinom.cdf(np.maximum(room, 0), draws_left, 0.5 + misses, 0.5 + votes))


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
    top_alpha_share: float | None = None,
    futility: float = DEFAULT_FUTILITY,
    keys: NoiseKeys | None = None,
) -> Certificates:
    """CERTIFY with early stopping per image, settled for a grid of radii (see the module docstring for the bounds).

    1. Selection as in CERTIFY: c_A = argmax of the counts of ``n0`` draws (ties -> lowest class index).
    2. Fresh estimation draws for the images still running, up to the next look t_j; at each look the lower bound
       LB_j on p_A = P(f(x + e) = c_A) is computed (``method``). Running images share device batches (draws of
       several images per forward pass, as ``sample_counts``); settled ones drop out.
    3. An image is settled at look j when, with LB its largest lower bound so far and the grid levels
       Phi(r / sigma) (r in ``radii``, converted to the noise space's units) restricted to the levels that n_max can
       reach at all (the all-votes bound of the last look; higher levels are skipped):
       (a) LB reaches the highest reachable level; or (b) the predictive probability that the last look's bound
       reaches the lowest reachable level above LB (that at most n_max - k_g of all n_max draws miss c_A, with k_g
       the votes the last look needs for that level; misses to come Beta-binomial under the Jeffreys posterior of
       the misses so far) is below ``futility``: a stopping heuristic only, it never enters a reported bound;
       or (c) t_j = n_max.
    4. As CERTIFY: abstain when LB < 1/2, else radius = sigma * Phi^-1(LB) (a continuous radius, not rounded to the
       grid), in pixel units (``noise_space.pixel_radius``).

    Guarantee:
        For each image, with probability >= 1 - alpha over the estimation draws, p_A >= LB_j at every look j
        simultaneously (union bound over the looks for ``"staged_cp"``; Ville's inequality for ``"mixture_cs"``),
        hence at the data-dependent stopping look, whatever the stopping rule did; so the result either abstains or
        the smoothed classifier g satisfies g(x + d) = label for every ||d||_2 < radius (Cohen et al. 2019, Thm. 1
        with p_B = 1 - p_A). With ``looks=(n_max,)`` and ``method="staged_cp"`` it is fixed-n CERTIFY: the same
        draws, counts, label and radius as ``certify(..., n=n_max)`` for the same generator state or keys (the
        estimation draws of image i are the same draws as CERTIFY's, in the same order, whatever the looks).

    Args:
        base: Base classifier in eval mode, [m, C, H, W] in [0, 1] -> logits [m, K'] with K' <= num_classes.
        x: Images [B, C, H, W] in [0, 1].
        sigma: Noise standard deviation in the units of ``noise_space`` (> 0). alpha: Failure probability in (0, 1).
        radii: The grid of L2 radii (pixel units, >= 0) the answer must be settled for, e.g. (0.25, 0.5, 0.75, 1.0),
            or one radius. Radius 0 stands for "certified at all" (p_A > 1/2).
        n0: Selection draws per image (>= 1). n_max: The most estimation draws an image may get (>= 1).
        num_classes: K >= 2. batch_size: Noisy samples per forward pass.
        generator: Source of the per-image noise keys (one draw per call) on the device of ``x``.
        noise_space: ``PixelNoise()`` (``None``) or ``NormalizedNoise(mean, std)``.
        method: ``"staged_cp"`` (default, Horvath et al. 2022) or ``"mixture_cs"`` (confidence sequence).
        looks: Strictly increasing estimation-draw counts at which the bounds are evaluated, ending at ``n_max``;
            default ``geometric_looks(n_max)`` (64, 84, 110, ... x1.3, then n_max) plus, for ``"staged_cp"``, the
            top look.
        final_alpha_share: ``"staged_cp"`` only: the share of alpha spent at the last look (default 0.75). With a
            single look all of alpha is spent there.
        top_alpha_share: ``"staged_cp"`` with the default looks only: the share of alpha spent at the top look, the
            first draw count at which unanimous votes certify the highest reachable grid radius with that alpha
            (default 0.2; 0 adds no top look). The looks other than the last and the top look share the rest evenly.
            When the top look would not come before n_max, its share goes to those other looks.
        futility: Threshold of stopping rule (b), in [0, 1) (default 0.03; 0 turns the rule off). It trades draws
            for the chance of stopping an image that n_max would have certified at the next grid level; it does not
            affect the guarantee.
        keys: Fixed per-image noise keys (``NoiseKeys``) instead of ``generator``, as in ``certify``.
    Returns:
        ``Certificates`` with ``num_samples`` int64 [B] (n0 + the estimation draws of each image: every forward pass
        spent on it), ``counts_estimation`` the votes at stopping (row sums = num_samples - n0), ``p_a_lower`` the
        bound LB at stopping, ``n = n_max`` and ``alpha`` the total failure probability.
    Raises:
        ValueError: before any sampling, on a malformed ``x`` (4-D float, finite, in [0, 1]), ``sigma <= 0``,
            ``n0``/``n_max``/``batch_size`` < 1, ``alpha`` outside (0, 1), ``num_classes`` < 2, an empty or negative
            ``radii``, an unknown ``method``, ``looks`` that are not strictly increasing ints ending at ``n_max``, a
            ``final_alpha_share`` outside (0, 1] or a ``top_alpha_share`` outside [0, 1) (or either given for
            ``"mixture_cs"``, or ``top_alpha_share`` with explicit ``looks``), shares that leave no alpha for the
            other looks, a ``futility`` outside [0, 1), or a base that is not a fixed function; after sampling, when
            the base returned NaN / infinite logits. A ``RuntimeWarning`` names grid radii that n_max can never
            certify (they are skipped by the stopping rule) and says when nothing can be certified at all.

    Examples:
        >>> from art_ext.testing import LinearToy
        >>> x = torch.full((2, 1, 2, 2), 1.0)  # p_A = Phi(4): votes unanimous at first
        >>> certs = certify_sequential(LinearToy(torch.ones(4), b=-2.0), x, sigma=0.25, alpha=0.001, radii=[0.5],
        ...                            n0=10, n_max=10_000, num_classes=2, batch_size=500,
        ...                            generator=torch.Generator().manual_seed(0))
        >>> certs.label.tolist(), bool((certs.radius >= 0.5).all()), certs.num_samples.tolist()
        ([1, 1], True, [381, 381])
    """
    x = validate_sampling_args(base, x, sigma=sigma, num_classes=num_classes, batch_size=batch_size,
                               generator=generator, noise_space=noise_space)
    validation.check_positive_int(n0, "n0")
    validation.check_positive_int(n_max, "n_max")
    alpha = validation.check_alpha(alpha)
    futility = _check_share(futility, "futility (the stopping rule's predictive-probability threshold)",
                            low_open=False)
    grid = _check_radii(radii)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "mixture_cs" and (final_alpha_share is not None or top_alpha_share is not None):
        raise ValueError("final_alpha_share / top_alpha_share split alpha over the looks of method='staged_cp'; the "
                         "confidence sequence of method='mixture_cs' spends alpha once for all looks, got "
                         f"final_alpha_share={final_alpha_share!r}, top_alpha_share={top_alpha_share!r}")
    if looks is not None and top_alpha_share is not None:
        raise ValueError(f"top_alpha_share places a look of its own in the default schedule; with explicit looks "
                         f"the looks before n_max share (1 - final_alpha_share) of alpha evenly, got "
                         f"top_alpha_share={top_alpha_share!r} with looks={looks!r}")
    final_share = DEFAULT_FINAL_ALPHA_SHARE if final_alpha_share is None else _check_share(
        final_alpha_share, "final_alpha_share", low_open=True)
    top_share = 0.0 if looks is not None else DEFAULT_TOP_ALPHA_SHARE if top_alpha_share is None else _check_share(
        top_alpha_share, "top_alpha_share", low_open=False)
    schedule = geometric_looks(n_max) if looks is None else _check_looks(looks, n_max)
    if method == "staged_cp" and len(schedule) > 1 and final_share + top_share >= 1.0:
        raise ValueError(f"final_alpha_share={final_share} and top_alpha_share={top_share} leave no alpha for the "
                         "other looks before n_max; use shares summing to < 1, or looks=(n_max,) for a single look")
    sigma = float(sigma)
    space = resolve(noise_space)
    device = x.device

    # grid levels Phi(r / sigma) in the noise space's units; keep only those the all-votes bound at n_max reaches
    unit = float(space.pixel_radius(torch.tensor(1.0, dtype=torch.float64)))  # pixel radius of a unit radius
    levels = sps.norm.cdf(np.array(grid) / unit / sigma)  # float64 [G], ascending
    final_alpha = alpha if method == "mixture_cs" or len(schedule) == 1 else final_share * alpha
    cap = float(_lower(method, torch.tensor([float(n_max)]), n_max, final_alpha)[0])
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
    reachable_levels = levels[reachable]
    top_look = None
    if method == "staged_cp" and top_share > 0 and len(schedule) > 1 and len(reachable_levels):
        candidate = _top_look(method, float(reachable_levels[-1]), top_share * alpha)
        if candidate < n_max:
            top_look = candidate
            schedule = tuple(sorted({*schedule, candidate}))
    if method == "mixture_cs":
        look_alphas = np.full(len(schedule), alpha)
    else:
        look_alphas = _look_alphas(schedule, alpha, final_share, top_look, top_share)
    targets = torch.as_tensor(reachable_levels, dtype=torch.float64, device=device)  # [G'] ascending
    top = targets[-1] if len(targets) else None
    # misses (draws not for c_A) the last look allows for each level, then a sentinel for "no level left"
    allowed = n_max - _votes_needed(method, n_max, float(look_alphas[-1]), reachable_levels)  # [G']
    allowed = np.append(allowed, -1)

    num_images = x.shape[0]
    image_keys = resolve_keys(keys, generator, num_images, x.device)
    selection = noise_streams(image_keys.derive("selection"), x)  # the same draws as certify's
    estimation = noise_streams(image_keys.derive("estimation"), x)
    counts_selection = _sample_counts(base, x, n0, sigma, num_classes, batch_size, selection, space)  # [B, K]
    c_hat = counts_selection.argmax(dim=1)  # [B]; first maximum on ties
    counts = torch.zeros_like(counts_selection)  # [B, K] estimation votes so far
    drawn = torch.zeros(num_images, dtype=torch.long, device=device)  # [B] estimation draws so far
    lower = torch.zeros(num_images, dtype=torch.float64, device=device)  # [B] largest lower bound so far
    running = torch.ones(num_images, dtype=torch.bool, device=device)  # [B]
    previous = 0
    for t, alpha_j in zip(schedule, look_alphas.tolist(), strict=True):
        index = running.nonzero().squeeze(1)  # [R] images still sampling
        x_run = x if len(index) == num_images else x[index]
        counts[index] += _sample_counts(base, x_run, t - previous, sigma, num_classes, batch_size, estimation, space,
                                        start_sample=previous, stream_rows=index.tolist())
        drawn[index] = t
        previous = t
        n_a = counts[index].gather(1, c_hat[index, None]).squeeze(1)  # [R]
        lower[index] = torch.maximum(lower[index], _lower(method, n_a, t, alpha_j))  # valid at every look at once
        if t == n_max:
            break
        lb = lower[index]
        if top is None:
            settled = torch.ones_like(lb, dtype=torch.bool)  # no grid level can be reached: nothing to sample for
        else:
            next_level = torch.searchsorted(targets, lb, right=True).cpu().numpy()  # [R] index of the level above lb
            votes = n_a.cpu().numpy()
            chance = _predictive_success(t - votes, votes, n_max - t, allowed[next_level])  # 0 when none is left
            futile = torch.as_tensor((chance < futility) & (next_level < len(targets)), device=device)
            settled = (lb >= top) | futile
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
