"""The shared body of art_ext's ART ``EvasionAttack`` adapters: one input check, labels as ART reads them, batches,
seed, eval mode, one final projection, numpy out.

Every adapter turns an ART ``PyTorchClassifier`` into an ``nn.Module`` (``_art.ARTModelView``: preprocessing
defences, then ART's mean/std standardisation, then the model), builds its algorithm's config dataclass from
ART-named parameters in ``_check_params`` (so ``set_params`` is validated in the same place), and calls the
pure-torch core on each batch with that batch's slice of the call's per-image noise keys (``NoiseKeys``, drawn once
per ``generate`` from a ``torch.Generator`` seeded with ``seed``). ``generate`` owns the invariants
(foolbox's ``@final`` pattern): the input check (``_art.input_to_tensor``), the labels (``_art.labels_to_indices``),
the ``mask`` and, after the core, one projection of every output onto the eps-ball, the mask and the estimator's
``clip_values`` box, whatever the core returned. Image i's randomness depends on its key only, so ``generate``
equals the core called once on all inputs at the same seed (``generator=torch.Generator().manual_seed(seed)``),
followed by that projection, for any ``batch_size``.

Units: bounds are the estimator's ``clip_values`` (``None`` = unbounded, as in ART) and ``eps`` / ``eps_step`` are
in the same units, as in ART's own attacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator
from torch import nn
from tqdm.auto import tqdm

from art_ext import _art
from art_ext.ops import norms
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.inference import SmoothedInference
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace, resolve
from art_ext.types import Bounds, Norm

#: keywords ``generate`` accepts besides x and y (ART's ``mask``); anything else is refused
GENERATE_KWARGS = ("mask",)


def final_projection(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: Norm, bounds: Bounds,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """The last operation of every adapter: x_adv -> x + Proj(mask * (x_adv - x)), clamped to ``bounds``.

    Proj is ``norms.project_and_clamp`` (eps-ball, then box); the final clamp makes the box exact after the
    rounding of x + delta. A point already inside the ball, the box and the mask moves by at most rounding.

    Args:
        x: Clean inputs [B, ...]; x_adv: the core's output [B, ...] (must be finite).
        mask: Optional bool tensor broadcastable to ``x``; outside it x_adv == x.
    Raises:
        RuntimeError: when ``x_adv`` holds NaN or infinite values (a core bug is reported, not projected away).
    """
    if not bool(torch.isfinite(x_adv).all()):
        raise RuntimeError(f"the attack's core returned {int((~torch.isfinite(x_adv)).sum())} NaN or infinite "
                           "values; expected finite adversarial examples")
    delta = x_adv - x
    if mask is not None:
        delta = delta * mask
    return (x + norms.project_and_clamp(x, delta, eps, norm, bounds)).clamp(bounds.low, bounds.high)


def mask_to_tensor(mask: object, x: torch.Tensor) -> torch.Tensor:
    """ART's ``mask`` (float >= 0 or bool, broadcastable to x, or of x's shape) as a float 0/1 tensor of x's shape
    (1 where mask != 0), checked before any work."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy array broadcastable to x {tuple(x.shape)}, got {type(mask).__name__}")
    if not (np.issubdtype(mask.dtype, np.floating) or mask.dtype == bool):
        raise ValueError(f"mask has dtype {mask.dtype}; expected float (>= 0) or bool, broadcastable to x "
                         f"{tuple(x.shape)}")
    if np.issubdtype(mask.dtype, np.floating) and not (np.all(np.isfinite(mask)) and np.all(mask >= 0)):
        raise ValueError("mask holds negative, NaN or infinite values; expected values >= 0 (0 = not perturbed)")
    if mask.ndim > x.dim():
        raise ValueError(f"mask has shape {mask.shape}, more dimensions than x {tuple(x.shape)}; expected a shape "
                         "broadcastable to x")
    try:
        shape = np.broadcast_shapes(mask.shape, tuple(x.shape))
    except ValueError:
        shape = None
    if shape != tuple(x.shape):
        raise ValueError(f"mask has shape {mask.shape}, not broadcastable to x {tuple(x.shape)}")
    nonzero = torch.as_tensor(mask != 0, device=x.device)
    return torch.broadcast_to(nonzero, x.shape).to(x.dtype)


def smoothed_parts(estimator: object) -> tuple[Any, float, NoiseSpace] | None:
    """``(base estimator, sigma, noise space)`` of an art_ext smoothed classifier (``RandomizedSmoothingClassifier``,
    ``SmoothedInferenceClassifier``: a ``smoothed`` forward over a wrapped ``estimator``), else None. Read by
    attribute, since ``attacks`` must not import ``estimators``."""
    smoothed = getattr(estimator, "smoothed", None)
    base = getattr(estimator, "estimator", None)
    if isinstance(smoothed, SmoothedInference) and base is not None:
        return base, smoothed.sigma, smoothed.config.noise_space
    return None


def noise_of_target(estimator: object, sigma: float | None, noise_space: NoiseSpace | None,
                    attack: str) -> tuple[float, NoiseSpace]:
    """The noise an attack on the smoothed model adds (EPGD, SmoothAdv): the given ``sigma`` / ``noise_space`` for a
    plain ART classifier (the base; ``sigma`` required); for an art_ext smoothed classifier, its own sigma and noise
    space (the threat model of both papers: attack the smoothed model through its base and its noise), refusing a
    different one with the right usage named."""
    parts = smoothed_parts(estimator)
    if parts is None:
        if sigma is None:
            raise ValueError(f"{attack} needs sigma (the noise std of the smoothed model) for a plain ART classifier "
                             "(the base); it is read from the estimator only for art_ext's smoothed classifiers")
        return sigma, resolve(noise_space)
    _, own_sigma, own_space = parts
    if (sigma is not None and sigma != own_sigma) or (noise_space is not None and resolve(noise_space) != own_space):
        raise ValueError(
            f"{attack} attacks an art_ext smoothed classifier through its base with the classifier's own noise "
            f"(sigma={own_sigma}, noise_space={own_space}), got sigma={sigma}, noise_space={noise_space}: leave both "
            f"None, or attack the base estimator (`classifier.estimator`) with sigma=... for another noise level"
        )
    return own_sigma, own_space


def check_preprocessing_defences(estimator: object) -> None:
    """Run ``check_estimator(estimator)`` of every preprocessing defence of ``estimator`` that has one (art_ext's
    ``DenoiserPreprocessor`` / ``NormalizedNoisePreprocessor``: channel order, channel count, normalization), and of
    the base estimator of an art_ext smoothed classifier, so a mismatch is a one-line error when the attack is built
    instead of a failure deep inside the denoiser. Read by attribute: ``attacks`` does not import ``defences``."""
    parts = smoothed_parts(estimator)
    for target in (estimator,) if parts is None else (estimator, parts[0]):
        for op in getattr(target, "preprocessing_defences", None) or []:
            check = getattr(op, "check_estimator", None)
            if callable(check):
                check(target)


class TorchEvasionAttack(EvasionAttack):
    """Base of the art_ext adapters. Subclasses set ``attack_params`` and implement ``_build_config`` (a config with
    ``eps`` and ``norm``) and ``_attack_batch``; at most a few lines each."""

    attack_params = EvasionAttack.attack_params + ["batch_size", "verbose", "seed"]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(self, estimator: Any, *, batch_size: int = 32, verbose: bool = True, seed: int | None = None,
                 **params: Any) -> None:
        super().__init__(estimator=estimator)
        _art.check_pytorch_classifier(estimator)
        check_preprocessing_defences(estimator)
        self.batch_size = batch_size
        self.verbose = verbose
        self.seed = seed
        for name, value in params.items():
            setattr(self, name, value)
        self._targeted = bool(params.get("targeted", False))
        self._device = _art.estimator_device(estimator)
        self._check_params()

    # ---- hooks -------------------------------------------------------------------------------------------------
    def _build_config(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, keys: NoiseKeys, *, bounds: Bounds,
                      mask: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _model_view(self, estimator: Any) -> nn.Module:
        """The torch module the core attacks: the estimator's predict-time pipeline. Attacks that add the noise
        themselves (EPGD, SmoothAdv) override it to take the base of an art_ext smoothed classifier."""
        return _art.ARTModelView(estimator)

    def _base_view(self, estimator: Any) -> nn.Module:
        """The base of an art_ext smoothed classifier (its wrapped estimator's pipeline), else the estimator's."""
        parts = smoothed_parts(estimator)
        return _art.ARTModelView(estimator if parts is None else parts[0])

    # ---- ART API -----------------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not isinstance(self.verbose, bool):
            raise ValueError(f"verbose must be a bool, got {self.verbose!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None, got {self.seed!r}")
        self.config = self._build_config()  # validates every algorithm parameter (errors name the value)
        self._targeted = bool(getattr(self.config, "targeted", False))
        self._bounds = _art.clip_bounds(self.estimator)  # clip_values None: unbounded, as ART
        self._model = self._model_view(self.estimator)  # rebuilt so that set_params reaches it

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial examples for ``x``, each within ``eps`` of its input, inside ``clip_values`` and unchanged
        where ``mask`` is 0.

        Args:
            x: Clean inputs of shape [N, *estimator.input_shape], a float array inside the estimator's
                ``clip_values`` (checked: dtype, shape, NaN/inf, range; nothing is clamped).
            y: True labels (targets when ``targeted``) as ART reads them: indices [N], a column [N, 1] of indices,
                or one-hot [N, nb_classes]. When None, the model's own predictions on ``x`` are used (one forward;
                avoid this for randomized models: pass true labels).
            mask: Optional array broadcastable to ``x`` (or of its shape): features where it is 0 are not perturbed,
                including by the random start (ART's ``mask``; values != 0 all count as 1).
        Returns:
            float32 numpy array of the shape of ``x``.
        Raises:
            TypeError / ValueError before any work for a bad ``x``, ``y``, ``mask`` or an unknown keyword.
        """
        _art.refuse_unknown_kwargs(kwargs, GENERATE_KWARGS, f"{type(self).__name__}.generate")
        x_t = _art.input_to_tensor(self.estimator, x, device=self._device)  # the only numpy -> torch
        mask_t = mask_to_tensor(kwargs["mask"], x_t) if kwargs.get("mask") is not None else None
        y_t = None if y is None else _art.labels_to_indices(
            y, num_examples=x_t.shape[0], nb_classes=int(self.estimator.nb_classes), device=self._device)
        if y_t is None and self.targeted:
            raise ValueError("targeted=True needs target labels y, got y=None")
        # the call's per-image keys, drawn once: each batch gets its slice, so batch_size changes nothing
        keys = NoiseKeys.draw(_art.generator_for(self.seed, self._device), x_t.shape[0], self._device)
        eps, norm = float(self.config.eps), self.config.norm
        out = torch.empty_like(x_t)
        with eval_mode(self._model):
            if y_t is None:
                y_t = self._predicted_labels(x_t)
            starts = range(0, x_t.shape[0], self.batch_size)
            for start in tqdm(starts, desc=type(self).__name__, disable=not self.verbose):
                batch = slice(start, start + self.batch_size)
                mask_b = None if mask_t is None else mask_t[batch]
                x_adv = self._attack_batch(self._model, x_t[batch], y_t[batch], keys[batch], bounds=self._bounds,
                                           mask=mask_b)
                out[batch] = final_projection(x_t[batch], x_adv.detach(), eps, norm, self._bounds, mask_b)
        return _art.to_numpy(out)  # the only torch -> numpy

    def _predicted_labels(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self._model(x[i:i + self.batch_size]).argmax(1)
                              for i in range(0, x.shape[0], self.batch_size)])
