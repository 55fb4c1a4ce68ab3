"""Lp-ball geometry shared by every attack: norms, steepest-ascent steps, random starts and the one projection."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from art_ext.types import Bounds, Norm

_TINY = 1e-12


def norm_name(norm: object) -> Norm:
    """Convert ART's ``norm`` values (2, np.inf, "inf") or art_ext's ("l2", "linf") to ``"l2"`` / ``"linf"``."""
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("l2", "2"):
            return "l2"
        if key in ("linf", "inf"):
            return "linf"
    elif isinstance(norm, (int, float)) and not isinstance(norm, bool):
        if norm == 2:
            return "l2"
        if norm == float("inf"):
            return "linf"
    raise ValueError(f"unsupported norm {norm!r}; expected 2 / 'l2' or np.inf / 'inf' / 'linf'")


def lp_norm(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-example norm [B] of a perturbation [B, ...]."""
    flat = delta.flatten(1)
    return flat.norm(p=2, dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def steepest_ascent(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Unit-norm steepest-ascent direction for the given norm: sign(g) for linf, g / ||g||_2 for l2."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_example(lp_norm(grad, "l2").clamp_min(_TINY), grad)


def project_l2_ball(delta: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """``delta`` scaled per example by min(1, radius / ||delta||_2) (``radius`` a number or one per example [B])."""
    scale = (radius / lp_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
    return delta * _per_example(scale, delta)


def project_and_clamp(x: torch.Tensor, delta: torch.Tensor, eps: float, norm: Norm, bounds: Bounds) -> torch.Tensor:
    """Project ``delta`` onto the eps-ball of ``norm``, then make x + delta lie in ``bounds``.

    The box clamp after the ball projection keeps the result in the ball (clamping only shrinks each coordinate's
    magnitude toward x, which is itself inside the box), so both constraints hold on return.
    """
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = project_l2_ball(delta, eps)
    return (x + delta).clamp(bounds.low, bounds.high) - x


#: relative slack of ``project_onto_ball``: an attack's own projection can leave a norm a few ulps above eps
BALL_RTOL = 1e-6


def project_onto_ball(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm, bounds: Bounds, *,
                      rtol: float = BALL_RTOL) -> torch.Tensor:
    """The final projection of an attack's output ``x_adv`` [B, ...] onto the eps-ball of ``norm`` around ``x`` and
    into ``bounds`` (``project_and_clamp``), applied to every attack's output, external ones included, before it is
    scored.

    An example already inside the ball (its norm at most ``eps * (1 + rtol)``: the float rounding of the attack's
    own projection) and inside the bounds is returned bit for bit; any other example is projected. NaN in
    ``x_adv`` is refused.

    Examples:
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> x_adv = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 2.0)])
        >>> out = project_onto_ball(x, x_adv, 0.5, "linf", Bounds())
        >>> out.flatten(1).amax(1).tolist()
        [0.10000000149011612, 0.5]
    """
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv has shape {tuple(x_adv.shape)}, x {tuple(x.shape)}; expected the same shape")
    if torch.isnan(x_adv).any():
        raise ValueError("x_adv holds NaN; an attack returned no valid point")
    delta = x_adv - x
    inside = lp_norm(delta, norm) <= eps * (1 + rtol)
    inside &= ((x_adv >= bounds.low) & (x_adv <= bounds.high)).flatten(1).all(dim=1)
    if bool(inside.all()):
        return x_adv
    projected = x + project_and_clamp(x, delta, eps, norm, bounds)
    return torch.where(_per_example(inside, x_adv), x_adv, projected)


def random_start(
    x: torch.Tensor, eps: float, norm: Norm, bounds: Bounds, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """A uniform random point of the eps-ball around each x (linf: uniform cube; l2: uniform in the ball), clamped
    to ``bounds``.

    Image i's point is drawn with ``generators[i]`` alone (one generator per image, on x's device; linf: one
    ``rand`` of x[i]'s shape; l2: one ``randn`` of that shape, then one ``rand`` for the radius), so it does not
    depend on the other images in the batch; consecutive calls with the same generators give consecutive starts.
    """
    if len(generators) != x.shape[0]:
        raise ValueError(f"random_start needs one generator per image: got {len(generators)} for {x.shape[0]} images")
    shape, device, dtype = x.shape[1:], x.device, x.dtype
    if norm == "linf":
        unit = torch.stack([torch.rand(shape, generator=g, device=device, dtype=dtype) for g in generators])  # [B, ...]
        delta = (unit * 2 - 1) * eps
    else:
        # u^(1/dim) per image: torch's CPU pow computes a tensor's vectorised body and its scalar tail differently,
        # so on a [B] tensor an image's radius would depend on its place in the batch
        power = 1.0 / x[0].numel()
        draws = [(torch.randn(shape, generator=g, device=device, dtype=dtype),
                  torch.rand((), generator=g, device=device, dtype=dtype) ** power) for g in generators]
        direction = torch.stack([d for d, _ in draws])  # [B, ...]
        direction = direction / _per_example(lp_norm(direction, "l2").clamp_min(_TINY), x)
        radius = torch.stack([r for _, r in draws]) * eps  # [B], uniform in the ball
        delta = direction * _per_example(radius, x)
    return project_and_clamp(x, delta, eps, norm, bounds)
