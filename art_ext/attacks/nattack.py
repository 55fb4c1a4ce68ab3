"""NAttack: a score-based black-box attack that learns a Gaussian over adversarial examples with NES."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from art_ext.attacks._common import attack_keys, checked_width, to_model_dtype
from art_ext.ops import norms
from art_ext.ops.validation import check_attack_inputs
from art_ext.smoothing.keys import NoiseKeys, NoiseStreams
from art_ext.types import Bounds, LogitsFn, Norm

#: predict(x [B, ...]) -> int64 labels [B] (-1 = abstain): the deployed decision that judges success
PredictFn = Callable[[torch.Tensor], torch.Tensor]
_ARCTANH_SHRINK = 1.0 - 1e-6  # keeps arctanh finite at pixels 0 and 1 (reference value)


@dataclass(frozen=True)
class NAttackConfig:
    """Parameters of ``nattack`` (reference defaults from Cold-Winter/Nattack robustnet/re_li_attack.py).

    Attributes:
        eps: Radius (pixel units), >= 0. norm: "linf" (the paper's) or "l2".
        max_iter: NES iterations T >= 1. pop_size: population n_pop >= 2. sigma: search std in arctanh space > 0.
        learning_rate: NES step alpha > 0. init_std: std of the initial mean mu > 0.
        max_queries: Per-example query budget (score queries + success checks), never exceeded; None = unbounded.
        check_every: Success of the mean point is checked every this many iterations (reference: 10).
        targeted: Move toward the label passed as y.
        l2_sphere: l2 only: rescale every candidate's perturbation onto the sphere of radius eps (the reference's
            inputtransformations/ behaviour) instead of projecting onto the ball.
        query_batch_size: Rows per model call when scoring a population.
    """

    eps: float
    max_iter: int = 500
    norm: Norm = "linf"
    pop_size: int = 300
    sigma: float = 0.1
    learning_rate: float = 0.02
    init_std: float = 0.001
    max_queries: int | None = None
    check_every: int = 10
    targeted: bool = False
    l2_sphere: bool = False
    query_batch_size: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", norms.norm_name(self.norm))
        for name in ("eps", "sigma", "learning_rate", "init_std"):
            value = getattr(self, name)
            positive = name != "eps"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                    value <= 0 if positive else value < 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        for name, low in (("max_iter", 1), ("pop_size", 2), ("check_every", 1), ("query_batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.max_queries is not None and (isinstance(self.max_queries, bool) or not isinstance(
                self.max_queries, int) or self.max_queries < 1):
            raise ValueError(f"max_queries must be an int >= 1 or None, got {self.max_queries!r}")
        if self.l2_sphere and self.norm != "l2":
            raise ValueError(f"l2_sphere=True needs norm='l2', got norm={self.norm!r}")


@dataclass(frozen=True)
class NAttackResult:
    """x_adv [B, ...] (the successful mean point, else the last one), queries int64 [B], success bool [B]."""

    x_adv: torch.Tensor
    queries: torch.Tensor
    success: torch.Tensor


def margin_loss(log_probs: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-candidate loss [N] = clip(log p_y - max_{c != y} log p_c, 0, 1000) (targeted: the other way round).

    The max over other classes is taken per candidate (the reference's NumPy ``.max(1)[0]`` takes the first
    candidate's value for the whole population; that bug is not reproduced).
    """
    true = log_probs.gather(1, y[:, None]).squeeze(1)  # [N]
    others = log_probs.scatter(1, y[:, None], float("-inf")).amax(1)  # [N], per-candidate max over c != y
    margin = others - true if targeted else true - others
    return margin.clamp(0.0, 1000.0)


def _project(x: torch.Tensor, w: torch.Tensor, config: NAttackConfig, bounds: Bounds,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Image of arctanh-space points w [N, ...] around x [N, ...], inside the eps-ball and the box (and zero
    perturbation where ``mask`` [N, ...] is False)."""
    delta = (torch.tanh(w) + 1) / 2 * (bounds.high - bounds.low) + bounds.low - x  # [N, ...]
    if mask is not None:
        delta = delta * mask
    if config.l2_sphere:
        delta = delta * (config.eps / norms.lp_norm(delta, "l2").clamp_min(1e-12)).view(-1, *([1] * (x.dim() - 1)))
    return x + norms.project_and_clamp(x, delta, config.eps, config.norm, bounds)


def nattack(
    model: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    config: NAttackConfig,
    *,
    predict: PredictFn | None = None,
    bounds: Bounds = Bounds(),
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    keys: NoiseKeys | None = None,
) -> NAttackResult:
    """NAttack (Li et al., ICML 2019, arXiv:1905.00441, Alg. 1), batched over images.

    Per image: w = arctanh((2x - 1)(1 - 1e-6)); mu ~ N(0, init_std^2). Each iteration draws eps_i ~ N(0, I),
    i = 1..n_pop, scores candidates x_i = Proj(tanh-image(w + mu + sigma eps_i)) with ``model``, computes the
    per-candidate margin loss, rewards R_i = -loss_i / 2, z-scores them and updates
    mu <- mu + alpha / (n_pop sigma) sum_i A_i eps_i. Every ``check_every`` iterations the mean point is judged by
    ``predict`` (the deployed decision; default argmax of ``model``) and the image stops when it is adversarial.
    Images the deployed model already misclassifies (or that already hit the target) are returned unchanged with
    success True after one query.

    The randomness is keyed per image: mu's initial value is ``init_std`` times sample 0 of
    ``NoiseStreams(keys.derive("mu"))`` and iteration t's population is samples t * n_pop .. (t + 1) * n_pop - 1 of
    ``NoiseStreams(keys.derive("population"))``, for image i whatever the batch and whichever images are still
    active, so an image attacked alone or among others follows the same search.

    Args:
        model: Scores, [N, C, H, W] in ``bounds`` -> logits or log-probabilities [N, K] (log-softmax is applied, so
            a randomized model may return log of mean softmax over M passes; probabilities, e.g. from a
            postprocessing defence, keep their ranking and the success threshold of the margin).
        x: Clean inputs [B, C, H, W] inside ``bounds``; y: int64 labels [B] (targets when targeted).
        predict: Deployed decision used for success; labels [B] with -1 = abstain (an abstain is not a success of a
            targeted attack but is one of an untargeted attack: the prediction is not y).
        bounds: The box, finite on both sides (the tanh parameterisation maps R onto it).
        mask: Optional bool tensor broadcastable to ``x``: only features where it is True are perturbed.
        generator: Source of the per-image keys (one draw per call; ``None``: torch's default generator).
        keys: Fixed per-image keys (``NoiseKeys``) instead of ``generator``.
    Returns:
        ``NAttackResult``; ``queries`` counts population scores plus success checks, never above ``max_queries``.
        ``x_adv`` has x's shape, dtype and device: the search runs in the model's dtype (its first floating
        parameter's, float32 without parameters), ``x`` of another floating dtype is cast once on entry and
        ``x_adv`` cast back (exact for float64).
    Raises:
        TypeError / ValueError before any model call, from ``check_attack_inputs``: ``x`` not a floating tensor
            [B, ...] of finite values inside ``bounds``, or ``y`` not int64 class indices [B] >= 0.

    Deviations:
        Reference: Cold-Winter/Nattack@2c5ce05 robustnet/re_li_attack.py. The "max other class" is per candidate
        (not the ``.max(1)[0]`` bug); l2 candidates are projected onto the ball (sphere only with ``l2_sphere``);
        the projection is around x itself (not the arctanh round-trip x0), using ``norms.project_and_clamp``;
        no resizing of mu (inputs here are small); the query budget is enforced per image before each iteration.
    """
    if not (math.isfinite(bounds.low) and math.isfinite(bounds.high)):
        raise ValueError(f"nattack needs finite bounds (its tanh parameterisation maps onto the box), got "
                         f"({bounds.low}, {bounds.high})")
    check_attack_inputs(x, y, bounds, attack="nattack")  # before any work
    x_in = x
    x = to_model_dtype(x, model)  # the one cast (a no-op in the model's dtype)
    model = checked_width(model, y)  # labels < the output width, checked at the first forward
    image_keys = attack_keys(keys, generator, x, needed=config.eps > 0)
    if mask is not None:
        mask = torch.broadcast_to(mask, x.shape)
    if predict is None:
        def predict(z: torch.Tensor) -> torch.Tensor:
            return _scores(model, z, config.query_batch_size).argmax(1)

    batch = x.shape[0]
    budget = config.max_queries if config.max_queries is not None else math.inf
    queries = torch.zeros(batch, dtype=torch.int64, device=x.device)
    success = torch.zeros(batch, dtype=torch.bool, device=x.device)
    x_adv = x.detach().clone()
    if config.eps == 0 or image_keys is None:
        return NAttackResult(x_in.detach().clone(), queries, success)
    population = NoiseStreams(image_keys.derive("population"), x.shape[1:], device=x.device, dtype=x.dtype)

    def is_adversarial(labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return labels == target if config.targeted else labels != target

    with torch.no_grad():
        span = bounds.high - bounds.low
        z = (2 * (x - bounds.low) / span - 1) * _ARCTANH_SHRINK  # [B, C, H, W] in (-1, 1)
        # arctanh(z) = (log1p(z) - log1p(-z)) / 2: torch's CPU atanh computes a tensor's body with vector code and
        # its tail with scalar code, which differ by an ulp, so an image's w would depend on its place in the batch
        w = 0.5 * (torch.log1p(z) - torch.log1p(-z))
        start = NoiseStreams(image_keys.derive("mu"), x.shape[1:], device=x.device, dtype=x.dtype)
        mu = config.init_std * start.draw(0, 1)[:, 0]  # [B, C, H, W], sample 0 of each image
        success = is_adversarial(predict(x), y)  # already adversarial: nothing to do
        queries += 1
        active = ~success
        unchecked = torch.zeros_like(active)  # mean point moved since its last success check

        def check(rows: torch.Tensor) -> None:
            idx = rows.nonzero().squeeze(1)
            if idx.numel() == 0:
                return
            point = _project(x[idx], w[idx] + mu[idx], config, bounds, _rows(mask, idx))  # [A, C, H, W]
            hit = is_adversarial(predict(point), y[idx])  # [A]
            queries[idx] += 1
            x_adv[idx] = point
            success[idx] = hit
            active[idx] &= ~hit
            unchecked[idx] = False

        for t in range(config.max_iter):
            # stop images whose budget cannot pay a population plus the final check (checking them first)
            broke = active & (queries + config.pop_size + 1 > budget)
            check(broke & unchecked)
            active &= ~broke
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            a = idx.numel()
            # samples t * P .. (t + 1) * P - 1 of each active image's stream (a per-image loop, to draw only)
            noise = population.draw(t * config.pop_size, config.pop_size, idx.tolist())  # [A, P, C, H, W]
            centre = x[idx].unsqueeze(1).expand_as(noise).flatten(0, 1)  # [A * P, C, H, W]
            search = ((w[idx] + mu[idx]).unsqueeze(1) + config.sigma * noise).flatten(0, 1)  # [A * P, C, H, W]
            cand_mask = None if mask is None else mask[idx].repeat_interleave(config.pop_size, dim=0)
            cand = _project(centre, search, config, bounds, cand_mask)  # [A * P, C, H, W]
            log_probs = _scores(model, cand, config.query_batch_size).log_softmax(1)  # [A * P, K]
            loss = margin_loss(log_probs, y[idx].repeat_interleave(config.pop_size), config.targeted)
            reward = -0.5 * loss.view(a, config.pop_size)  # [A, P]
            advantage = (reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-7)  # [A, P]
            # sum_i A_i eps_i as a product and a sum over P (an einsum's bmm blocks a batch of A images differently
            # from one image, which moves an image's step by rounding with the batch)
            step = (advantage.view(a, config.pop_size, *([1] * (x.dim() - 1))) * noise).sum(1)  # [A, C, H, W]
            mu[idx] += config.learning_rate / (config.pop_size * config.sigma) * step
            queries[idx] += config.pop_size
            unchecked[idx] = True
            if (t + 1) % config.check_every == 0 or t + 1 == config.max_iter:
                check(active & unchecked)
        check(active & unchecked)  # images that stopped on max_iter between checks
    return NAttackResult(x_adv.to(x_in.dtype), queries, success)


def _rows(mask: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
    return None if mask is None else mask[idx]


def _scores(model: LogitsFn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def __getattr__(name: str) -> Any:
    """``NAttack``, the ART adapter, loaded (with ART) on first use: importing this core does not import ART."""
    if name == "NAttack":
        from art_ext.attacks.adapters import NAttack

        return NAttack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
