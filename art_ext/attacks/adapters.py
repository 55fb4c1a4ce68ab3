"""The ART ``EvasionAttack`` adapters of art_ext's attack cores: ``PGD``, ``BPDAPGD``, ``EPGD``, ``SmoothAdvPGD`` and
``NAttack``.

Each adapter is a few lines over ``_adapter.TorchEvasionAttack`` (one input check, labels as ART reads them,
batches, seed, eval mode, one final projection, numpy out) and calls its pure-torch core (``pgd``, ``bpda_pgd`` /
``BPDA``, ``epgd``, ``smoothadv_pgd``, ``nattack``). They live apart from the cores so that importing a core (or
``art_ext.training`` and the zoo, which use them) does not import ART: ``from art_ext.attacks import PGD`` and
``from art_ext.attacks.pgd import PGD`` still work, and load this module (and ART) on first use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from art_ext import _art
from art_ext.attacks._adapter import TorchEvasionAttack, noise_of_target
from art_ext.attacks.bpda_pgd import BPDA, bpda, warn_if_unreachable
from art_ext.attacks.epgd import EPGDConfig, epgd
from art_ext.attacks.nattack import NAttackConfig, nattack
from art_ext.attacks.pgd import PGDConfig, pgd
from art_ext.attacks.smoothadv import Aggregate, NoiseSchedule, SmoothAdvConfig, smoothadv_pgd
from art_ext.smoothing.noise import NoiseSpace

__all__ = ["BPDAPGD", "EPGD", "PGD", "NAttack", "SmoothAdvPGD"]


class PGD(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``pgd`` (the same loop as every art_ext attack) on an ART ``PyTorchClassifier``.

    Drop-in for ``art.attacks.evasion.ProjectedGradientDescent`` (same parameter names and defaults), except that
    only input gradients are computed (no weight gradients, no extra ``predict`` passes for logging), restarts keep
    the highest-loss point per example, and ``seed`` makes runs reproducible. ``generate`` equals
    ``pgd(ARTModelView(estimator), ...)`` at the same seed, followed by the adapters' final projection, for any
    ``batch_size`` (per-image keys). ``eps`` and ``eps_step`` are in the units of the estimator's
    ``clip_values`` (None = unbounded), as in ART.

    Examples:
        >>> from art_ext.testing import art_classifier, tiny_cnn, tiny_images
        >>> clf = art_classifier(tiny_cnn(), clip_values=(0.0, 1.0))
        >>> x = tiny_images(4).numpy()
        >>> x_adv = PGD(clf, norm=2, eps=0.5, eps_step=0.1, max_iter=5).generate(x)
        >>> bool(((x_adv - x).reshape(4, -1) ** 2).sum(1).max() <= 0.5 ** 2 + 1e-5)
        True
    """

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init"]

    def __init__(self, estimator, norm=float("inf"), eps: float = 0.3, eps_step: float = 0.1, max_iter: int = 100,
                 targeted: bool = False, num_random_init: int = 0, batch_size: int = 32, verbose: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, norm=norm, eps=eps,
                         eps_step=eps_step, max_iter=max_iter, targeted=targeted, num_random_init=num_random_init)

    def _build_config(self) -> PGDConfig:
        return PGDConfig(eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter, norm=self.norm,
                         targeted=self.targeted, num_random_init=self.num_random_init)

    def _attack_batch(self, model, x, y, keys, *, bounds, mask):
        return pgd(model, x, y, self.config, bounds=bounds, mask=mask, keys=keys)


class BPDAPGD(TorchEvasionAttack):
    """ART ``EvasionAttack``: PGD with every preprocessing *defence* of the ``PyTorchClassifier`` replaced by its BPDA
    straight-through version (value of the defence, gradient of the surrogate).

    Works where ART's own path does not: ART back-propagates through a ``PreprocessorPyTorch``'s ``forward`` and
    never calls ``estimate_forward`` (ART issue #1526), so a quantiser gives zero gradients; numpy ``Preprocessor``
    defences are also supported (with several defences chained). ``surrogate="identity"`` (default) or
    ``"estimate_forward"`` (each defence's own ART differentiable estimate). The mean/std ``preprocessing`` stays
    exact. Warns when max_iter * eps_step < eps. ``"estimate_forward"`` needs every defence to be a
    ``PreprocessorPyTorch`` (numpy defences have no torch estimate) and is refused at construction otherwise.
    """

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init", "eot_samples", "surrogate"]

    def __init__(self, estimator, norm=2, eps: float = 0.5, eps_step: float = 0.0625, max_iter: int = 20,
                 targeted: bool = False, num_random_init: int = 0, eot_samples: int = 1,
                 surrogate: str = "identity", batch_size: int = 32, verbose: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, norm=norm, eps=eps,
                         eps_step=eps_step, max_iter=max_iter, targeted=targeted, num_random_init=num_random_init,
                         eot_samples=eot_samples, surrogate=surrogate)
        warn_if_unreachable(self.config)

    def _build_config(self) -> PGDConfig:
        if self.surrogate not in ("identity", "estimate_forward"):
            raise ValueError(f"surrogate must be 'identity' or 'estimate_forward', got {self.surrogate!r}")
        if self.surrogate == "estimate_forward":
            from art.defences.preprocessor.preprocessor import PreprocessorPyTorch

            numpy_only = [type(op).__name__ for op in (self.estimator.preprocessing_defences or [])
                          if not isinstance(op, PreprocessorPyTorch)]
            if numpy_only:
                raise ValueError(
                    f"surrogate='estimate_forward' needs PreprocessorPyTorch defences (a torch estimate_forward); "
                    f"{numpy_only} are numpy-only: use surrogate='identity' for them"
                )
        return PGDConfig(eps=self.eps, eps_step=self.eps_step, max_iter=self.max_iter, norm=self.norm,
                         targeted=self.targeted, num_random_init=self.num_random_init, eot_samples=self.eot_samples)

    def _model_view(self, estimator: Any) -> nn.Module:
        def wrap(op: Any) -> BPDA:
            surrogate = (lambda x: op.estimate_forward(x)) if self.surrogate == "estimate_forward" else None
            return bpda(_art.defence_as_tensor_function(op), surrogate)

        return _art.ARTModelView(estimator, wrap_defence=wrap)

    def _attack_batch(self, model, x, y, keys, *, bounds, mask):
        return pgd(model, x, y, self.config, bounds=bounds, mask=mask, keys=keys)


class EPGD(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``epgd`` on an ART ``PyTorchClassifier`` (noise added to the estimator's
    inputs, before its preprocessing; ``noise_space=NormalizedNoise(mean, std)`` declares noise of std sigma after
    the normalization instead).

    Against an art_ext smoothed classifier (``RandomizedSmoothingClassifier``, ``SmoothedInferenceClassifier``) it
    attacks the smoothed model through its base estimator and the classifier's own sigma and noise space (the
    threat model of Salman et al.); ``sigma`` may then be left None, and another sigma is refused."""

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init", "sigma", "eot_samples", "noise_space"]

    def __init__(self, estimator, sigma: float | None = None, norm=2, eps: float = 0.5, eps_step: float = 0.1,
                 max_iter: int = 20,
                 eot_samples: int = 8, targeted: bool = False, num_random_init: int = 0,
                 noise_space: NoiseSpace | None = None, batch_size: int = 32, verbose: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, sigma=sigma, norm=norm,
                         eps=eps, eps_step=eps_step, max_iter=max_iter, eot_samples=eot_samples, targeted=targeted,
                         num_random_init=num_random_init, noise_space=noise_space)

    def _model_view(self, estimator):
        return self._base_view(estimator)

    def _build_config(self) -> EPGDConfig:
        sigma, noise_space = noise_of_target(self.estimator, self.sigma, self.noise_space, type(self).__name__)
        return EPGDConfig(eps=self.eps, eps_step=self.eps_step, sigma=sigma, max_iter=self.max_iter,
                          norm=self.norm, targeted=self.targeted, num_random_init=self.num_random_init,
                          eot_samples=self.eot_samples, noise_space=noise_space)

    def _attack_batch(self, model, x, y, keys, *, bounds, mask):
        return epgd(model, x, y, self.config, bounds=bounds, mask=mask, keys=keys)


class SmoothAdvPGD(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``smoothadv_pgd`` on an ART ``PyTorchClassifier`` (the base classifier; noise is
    added to the estimator's inputs before its preprocessing). ``noise="fixed"`` (default, Salman et al.) or
    ``"fresh"`` (new draws every step).

    Against an art_ext smoothed classifier (``RandomizedSmoothingClassifier``, ``SmoothedInferenceClassifier``) it
    attacks the smoothed model through its base estimator and the classifier's own sigma and noise space (the
    threat model of Salman et al.); ``sigma`` may then be left None, and another sigma is refused."""

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "eps_step", "max_iter", "norm", "targeted", "num_random_init", "sigma", "num_noise", "aggregate",
        "noise", "noise_space"]

    def __init__(self, estimator, sigma: float | None = None, norm=2, eps: float = 0.5,
                 eps_step: float | None = None, max_iter: int = 20, num_noise: int = 8,
                 aggregate: Aggregate = "softmax",
                 noise: NoiseSchedule = "fixed", noise_space: NoiseSpace | None = None, targeted: bool = False,
                 num_random_init: int = 0, batch_size: int = 32, verbose: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, sigma=sigma, norm=norm,
                         eps=eps, eps_step=eps_step, max_iter=max_iter, num_noise=num_noise, aggregate=aggregate,
                         noise=noise, noise_space=noise_space, targeted=targeted, num_random_init=num_random_init)

    def _model_view(self, estimator):
        return self._base_view(estimator)

    def _build_config(self) -> SmoothAdvConfig:
        sigma, noise_space = noise_of_target(self.estimator, self.sigma, self.noise_space, type(self).__name__)
        return SmoothAdvConfig(eps=self.eps, sigma=sigma, max_iter=self.max_iter, eps_step=self.eps_step,
                               norm=self.norm, targeted=self.targeted, num_random_init=self.num_random_init,
                               num_noise=self.num_noise, aggregate=self.aggregate, noise=self.noise,
                               noise_space=noise_space)

    def _attack_batch(self, model, x, y, keys, *, bounds, mask):
        return smoothadv_pgd(model, x, y, self.config, bounds=bounds, mask=mask, keys=keys)


class NAttack(TorchEvasionAttack):
    """ART ``EvasionAttack`` running ``nattack`` on an ART ``PyTorchClassifier``: scores and success come from what
    the estimator's ``predict`` returns, preprocessing *and postprocessing* defences included
    (``_art.ARTModelView(estimator, postprocessing=True)``), since a score-based attacker only sees those outputs.
    After ``generate``, ``queries`` and ``success`` hold the per-example results.

    The estimator needs finite ``clip_values`` (the search is parameterised by tanh onto that box); ``eps`` is in
    their units.
    """

    attack_params = TorchEvasionAttack.attack_params + [
        "eps", "max_iter", "norm", "targeted", "pop_size", "sigma", "learning_rate", "max_queries", "l2_sphere"]

    def __init__(self, estimator, norm=float("inf"), eps: float = 0.031, max_iter: int = 500, pop_size: int = 300,
                 sigma: float = 0.1, learning_rate: float = 0.02, max_queries: int | None = None,
                 targeted: bool = False, l2_sphere: bool = False, batch_size: int = 32, verbose: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(estimator, batch_size=batch_size, verbose=verbose, seed=seed, norm=norm, eps=eps,
                         max_iter=max_iter, pop_size=pop_size, sigma=sigma, learning_rate=learning_rate,
                         max_queries=max_queries, targeted=targeted, l2_sphere=l2_sphere)
        self._queries: list[torch.Tensor] = []
        self._success: list[torch.Tensor] = []
        self.queries: np.ndarray | None = None  # per-image queries of the last generate, numpy [N]
        self.success: np.ndarray | None = None

    def _model_view(self, estimator):
        return _art.ARTModelView(estimator, postprocessing=True)

    def _build_config(self) -> NAttackConfig:
        bounds = _art.clip_bounds(self.estimator)
        if not (math.isfinite(bounds.low) and math.isfinite(bounds.high)):
            raise ValueError(
                f"NAttack needs finite clip_values (its tanh parameterisation maps the search space onto the box); "
                f"the estimator's clip_values are {self.estimator.clip_values!r}: declare them, e.g. (0, 1)"
            )
        return NAttackConfig(eps=self.eps, max_iter=self.max_iter, norm=self.norm, pop_size=self.pop_size,
                             sigma=self.sigma, learning_rate=self.learning_rate, max_queries=self.max_queries,
                             targeted=self.targeted, l2_sphere=self.l2_sphere)

    def generate(self, x, y=None, **kwargs):
        self._queries, self._success = [], []
        out = super().generate(x, y, **kwargs)
        #: per-image queries used and success flags of the last ``generate`` (numpy [N])
        self.queries = torch.cat(self._queries).cpu().numpy()
        self.success = torch.cat(self._success).cpu().numpy()
        return out

    def _attack_batch(self, model, x, y, keys, *, bounds, mask):
        result = nattack(model, x, y, self.config, bounds=bounds, mask=mask, keys=keys)
        self._queries.append(result.queries)
        self._success.append(result.success)
        return result.x_adv
