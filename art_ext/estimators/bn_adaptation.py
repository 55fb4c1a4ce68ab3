"""Certification through BN adaptation with Auto-Noise (Nandy et al.) as an ART ``PyTorchClassifier``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from art_ext import _art
from art_ext.defences.bn_adaptation import CertificationThroughAdaptation
from art_ext.estimators._base import CheckedPyTorchClassifier, wrappers_in_eval
from art_ext.ops.modes import eval_mode
from art_ext.smoothing import DEFAULT_SIGMAS, Certificates


class CertificationThroughAdaptationClassifier(CheckedPyTorchClassifier):
    """An ART classifier that predicts with the original model f and certifies through BN-adapted smoothed copies.

    Certification through adaptation of Nandy, Saha, Hsu, Lee & Tan (arXiv:2102.05096v3): the deployed system
    outputs f(x), the wrapped (e.g. adversarially trained) model, so its benign accuracy and empirical robustness
    are f's (Alg. 1); a certificate for f(x) is issued only where the smoothed classifier of f_adapt (f with its
    BatchNorm statistics re-estimated on noisy ``clean_images``) certifies the same label. Auto-Noise picks sigma
    per example from ``sigmas`` with a cheap certification and certifies at it with fresh draws (Alg. 2). The work
    is ``art_ext.defences.CertificationThroughAdaptation`` on the estimator's predict-time pipeline
    (``_art.ARTModelView``: preprocessing defences, then ``preprocessing`` mean/std, then the model), so noise is
    added in [0, 1] pixel space and the adapted copies never touch the estimator's own model.

    What the methods return:
        * ``predict``: f's logits float32 [N, K] (the wrapped estimator's ``predict``); ``predict_labels``: f's
          labels int64 [N] (never abstains: what the method deploys).
        * ``loss_gradient`` / ``class_gradient``: gradients of f (cross-entropy on f's logits / f's logits), since f
          is what is deployed; ART's PGD, APGD (cross-entropy and DLR), DeepFool, HopSkipJump and AutoAttack accept
          it and attack f.
        * ``certify(x, n, batch_size=32, *, sigma, n0=100, alpha=0.001, seed=None)``: Alg. 1 at ``sigma``:
          ``(labels int64 [N], -1 = no certificate; radii float64 [N], pixel units)``.
        * ``certify_auto_noise(x, n, batch_size=32, *, n_auto=1000, n0=100, alpha=0.001, seed=None)``: Alg. 2:
          ``(labels, radii, sigma float64 [N])``, each radius valid for the smoothed classifier at its own sigma.
        * ``certificates(...)``: the full ``art_ext.smoothing.Certificates`` (per-example ``sigma``, ``prediction``
          = f(x)); ``sigma=None`` runs Auto-Noise.

    The model runs in eval mode for every call, and every submodule's train/eval flag is restored afterwards.

    Args:
        estimator: ART ``PyTorchClassifier`` on [0, 1] inputs whose model has BatchNorm layers with running
            statistics; no postprocessing defences.
        clean_images: Adaptation images, float [M, *input_shape] in [0, 1], disjoint from the points to certify.
        sigmas, rho, adaptation_batch_size, adaptation_seed: See ``CertificationThroughAdaptation``.

    Examples:
        >>> import numpy as np
        >>> from art_ext.testing import art_classifier, tiny_cnn
        >>> f = art_classifier(tiny_cnn(batchnorm=True))
        >>> rng = np.random.default_rng(0)
        >>> clean, x = rng.random((32, 1, 8, 8), dtype=np.float32), rng.random((2, 1, 8, 8), dtype=np.float32)
        >>> cta = CertificationThroughAdaptationClassifier(f, clean, sigmas=(0.25, 0.5))
        >>> bool(np.array_equal(cta.predict(x), f.predict(x)))  # predicts with f itself
        True
        >>> labels, radii, sigmas = cta.certify_auto_noise(x, 100, 200, n_auto=20, n0=10, alpha=0.01, seed=0)
        >>> sigmas.dtype, bool(set(sigmas) <= {0.25, 0.5})
        (dtype('float64'), True)

    References:
        Nandy et al., "Towards Bridging the gap between Empirical and Certified Robustness against Adversarial
        Examples", arXiv:2102.05096v3 (Alg. 1, Alg. 2, Eq. 4).
    """

    def __init__(
        self,
        estimator: Any,
        clean_images: np.ndarray,
        *,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        rho: float = 1.0,
        adaptation_batch_size: int = 512,
        adaptation_seed: int = 0,
    ) -> None:
        _art.check_pytorch_classifier(estimator)
        view = _art.ARTModelView(estimator)
        wrappers_in_eval(view)
        super().__init__(estimator, view, loss=nn.CrossEntropyLoss())
        self.method = CertificationThroughAdaptation(
            view, self._inputs(clean_images, "clean_images"), num_classes=self.nb_classes, sigmas=sigmas, rho=rho,
            adaptation_batch_size=adaptation_batch_size, adaptation_seed=adaptation_seed,
        )

    @property
    def sigmas(self) -> tuple[float, ...]:
        return self.method.sigmas

    def predict_labels(self, x: np.ndarray, training_mode: bool = False) -> np.ndarray:
        """f's labels int64 [N] (the deployed prediction; never abstains)."""
        self._check_call("predict_labels", training_mode, {})
        x_t = self._inputs(x)
        with torch.no_grad():
            return _art.to_numpy(self._run(x_t).argmax(dim=1))

    def certificates(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, sigma: float | None = None, n_auto: int = 1000,
        n0: int = 100, alpha: float = 0.001, seed: int | None = None,
    ) -> Certificates:
        """Full ``Certificates`` (torch tensors): Algorithm 1 at ``sigma``, or Auto-Noise (Algorithm 2) when
        ``sigma`` is None. ``n`` estimation draws, ``batch_size`` noisy samples per forward pass."""
        x_t = self._inputs(x)
        generator = _art.generator_for(seed, self.device)
        with eval_mode(self.model), torch.no_grad():
            if sigma is not None:
                return self.method.certify(x_t, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                                           generator=generator)
            return self.method.certify_auto_noise(x_t, n_auto=n_auto, n0=n0, n=n, alpha=alpha,
                                                  batch_size=batch_size, generator=generator)

    def certify(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, sigma: float, n0: int = 100, alpha: float = 0.001,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 1 at ``sigma``: ``(labels int64 [N], -1 = no certificate; radii float64 [N], pixel units)``;
        an issued label is always f(x)."""
        certs = self.certificates(x, n, batch_size, sigma=sigma, n0=n0, alpha=alpha, seed=seed)
        return _art.to_numpy(certs.label), _art.to_numpy(certs.radius)

    def certify_auto_noise(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, n_auto: int = 1000, n0: int = 100,
        alpha: float = 0.001, seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Algorithm 2: ``(labels int64 [N], -1 = no certificate; radii float64 [N]; selected sigma float64 [N])``;
        each radius holds for the smoothed classifier at its own selected sigma."""
        certs = self.certificates(x, n, batch_size, n_auto=n_auto, n0=n0, alpha=alpha, seed=seed)
        return _art.to_numpy(certs.label), _art.to_numpy(certs.radius), _art.to_numpy(certs.sigma)
