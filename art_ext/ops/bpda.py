"""The one straight-through estimator of art_ext (BPDA, Athalye et al., 2018, arXiv:1802.00420v4, Sec. 4.1).

Used by ``art_ext.attacks.bpda_pgd`` (BPDA-PGD) and ``art_ext.defences.denoised_smoothing`` (the denoiser's
identity backward pass); it lives in ``ops`` because defences and attacks are siblings that may not import each
other.
"""

from __future__ import annotations

import torch


def straight_through(surrogate: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The value of ``value`` with the gradient of ``surrogate``: ``surrogate + (value - surrogate).detach()``.

    Autograd needs no custom backward: the detached difference carries no gradient, so d(out)/d(input) is
    d(surrogate)/d(input) (the identity when ``surrogate`` is the input itself).

    Args:
        surrogate: Differentiable stand-in [B, ...] (e.g. the defence's input, for the identity surrogate).
        value: The deployed output [B, ...], same shape (its graph, if any, is not used).
    Raises:
        ValueError: when the shapes differ (nothing is broadcast).

    Examples:
        >>> x = torch.tensor([0.2, 0.7], requires_grad=True)
        >>> out = straight_through(x, torch.round(x))
        >>> out.tolist(), torch.autograd.grad(out.sum(), x)[0].tolist()
        ([0.0, 1.0], [1.0, 1.0])
    """
    if value.shape != surrogate.shape:
        raise ValueError(f"the defence's output has shape {tuple(value.shape)}, the surrogate's "
                         f"{tuple(surrogate.shape)}; expected equal shapes")
    return surrogate + (value - surrogate).detach()
