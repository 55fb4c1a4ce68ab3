"""Gaussian randomized smoothing (Cohen et al.) of an ART ``PyTorchClassifier``, as an ART ``PyTorchClassifier``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from art_ext import _art
from art_ext.estimators._base import DEFAULT_OUTPUT, CheckedPyTorchClassifier, loss_for
from art_ext.estimators.smoothed_inference import smoothed_forward
from art_ext.ops import validation
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.certify import Certificates, certify, predict
from art_ext.smoothing.inference import SmoothedInference
from art_ext.smoothing.noise import NoiseSpace


class RandomizedSmoothingClassifier(CheckedPyTorchClassifier):
    """Randomized smoothing of an ART ``PyTorchClassifier``: certificates, and a smoothed forward ART can attack.

    The smoothed classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, sigma^2 I), of Cohen, Rosenfeld & Kolter
    (2019), where f is the wrapped estimator's predict-time pipeline (``_art.ARTModelView``: its preprocessing
    defences, then its ``preprocessing`` mean/std, then its model). Noise is added in [0, 1] pixel space *before*
    that preprocessing, so ``certify`` equals ``art_ext.certify`` on that module at the same seed, and sigma and
    radii are in pixel units. It is a real ART classifier: ART's ``ProjectedGradientDescent``,
    ``AutoProjectedGradientDescent`` (cross-entropy and DLR), ``DeepFool``, ``HopSkipJump``, ``SquareAttack`` and
    ``AutoAttack`` accept it.

    What the methods return:
        * ``certify(x, n, batch_size=32, *, n0=100, alpha=0.001, seed=None)``: Cohen's CERTIFY with ART's positional
          signature (``n`` = estimation draws): ``(labels int64 [N], -1 = abstain; radii float64 [N], pixel
          units)``. Selection uses its own ``n0`` draws (ART reuses ``sample_size``). ``certificates`` returns the
          full ``art_ext.smoothing.Certificates``.
        * ``predict_labels(x, n, batch_size=32, *, alpha=0.001, seed=None)``: Cohen's PREDICT, int64 [N], -1 where
          the binomial test cannot decide (ART returns an all-zero row there).
        * ``predict``: the soft smoothed scores of M = ``num_samples`` fresh draws, float32 [N, K]: log of
          1/M sum_i softmax(f(x + eta_i)) by default (``output="log_probabilities"``; ART's APGD / AutoAttack
          refuse probability outputs), the probabilities with ``output="probabilities"``. The soft scores are the
          differentiable surrogate of g that SmoothAdv attacks (Salman et al., 2019); their argmax estimates g.
        * ``loss_gradient`` / ``class_gradient``: expectation-over-noise gradients of those soft scores through all
          M passes (``loss_gradient`` of -log p_y, the SmoothAdv objective), never the noise-free base's gradient,
          which is what ART's ``PyTorchRandomizedSmoothing`` hands to PGD (research/ecosystem.md §2.4 item 1).

    Randomness: ``predict`` and the gradients draw from one generator seeded by ``seed`` at construction: one draw
    per public call gives every image of the call its noise key (``art_ext.smoothing.NoiseKeys``), and image i's
    j-th noisy pass depends on that key and j only, so ``predict``'s ``batch_size`` (and the constructor's
    ``batch_size``) never change the scores. ``certify`` / ``predict_labels`` take their own ``seed`` per call
    (``None``: torch's default generator), keyed per image in the same way. The model runs in eval mode and every
    submodule's train/eval flag is restored afterwards.

    Dtypes: inputs of any floating dtype are cast once at the entry point to the dtype of the wrapped model's
    parameters (float32 for a parameter-free model); ``predict`` returns float32, gradients the caller's dtype.

    Args:
        estimator: ART ``PyTorchClassifier`` on [0, 1] inputs (``clip_values`` None or (0, 1)), no postprocessing.
        sigma: Noise standard deviation (> 0) in the units of ``noise_space`` (pixels by default).
        num_samples: M, noisy passes of ``predict`` and of each gradient (>= 1).
        batch_size: Noisy samples per forward pass of the smoothed forward.
        noise_space: ``None`` (pixel noise) or ``NormalizedNoise(mean, std)``; radii are reported in pixel units.
        output: ``"log_probabilities"`` (default) or ``"probabilities"``.
        seed: Seed of ``predict``'s and the gradients' noise generator.

    Examples:
        >>> import numpy as np
        >>> from art.attacks.evasion import ProjectedGradientDescent
        >>> from art_ext.testing import art_classifier, tiny_cnn
        >>> rs = RandomizedSmoothingClassifier(art_classifier(tiny_cnn()), 0.25, num_samples=8, seed=0)
        >>> x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
        >>> labels, radii = rs.certify(x, 200, 100, n0=20, alpha=0.01, seed=0)  # n = 200 estimation draws
        >>> labels.dtype, radii.dtype
        (dtype('int64'), dtype('float64'))
        >>> pgd = ProjectedGradientDescent(rs, norm=2, eps=0.5, eps_step=0.2, max_iter=3, verbose=False)
        >>> x_adv = pgd.generate(x)                        # PGD on the smoothed classifier (EOT gradients)
        >>> bool(np.linalg.norm((x_adv - x).reshape(2, -1), axis=1).max() <= 0.5 + 1e-5)
        True

    References:
        Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", arXiv:1902.02918v2.
        Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers",
        arXiv:1906.04584v5.
    """

    def __init__(
        self, estimator: Any, sigma: float, *, num_samples: int = 8, batch_size: int = 1000,
        noise_space: NoiseSpace | None = None, output: str = DEFAULT_OUTPUT, seed: int | None = None,
    ) -> None:
        _art.check_pytorch_classifier(estimator)
        sigma = validation.check_sigma(sigma)  # certificates need sigma > 0
        model = smoothed_forward(
            estimator, sigma, mode="soft", num_samples=num_samples, weights=None, soft_average="probabilities",
            batch_size=batch_size, noise_space=noise_space, output=output, seed=seed,
        )
        super().__init__(estimator, model, loss=loss_for(output))
        self.smoothed: SmoothedInference = model.smoothed
        self.view = self.smoothed.base  # the wrapped estimator's predict-time pipeline: the base f
        self.seed = seed

    @property
    def sigma(self) -> float:
        return self.smoothed.sigma

    @property
    def num_samples(self) -> int:
        return self.smoothed.num_samples

    @property
    def noise_space(self) -> NoiseSpace:
        return self.smoothed.config.noise_space

    @property
    def output(self) -> str:
        return self.model.output

    def certificates(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, n0: int = 100, alpha: float = 0.001,
        seed: int | None = None,
    ) -> Certificates:
        """Cohen et al. CERTIFY as full ``Certificates`` (torch tensors): ``n`` estimation draws, ``n0`` selection
        draws, ``batch_size`` noisy samples per forward pass. The model runs in eval mode (flags restored)."""
        x_t = self._inputs(x)
        generator = _art.generator_for(seed, self.device)
        with eval_mode(self.model), torch.no_grad():
            return certify(
                self.view, x_t, n0=n0, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.nb_classes,
                batch_size=batch_size, generator=generator, noise_space=self.noise_space,
            )

    def certify(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, n0: int = 100, alpha: float = 0.001,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cohen et al. CERTIFY with ART's signature: ``(labels int64 [N], -1 = abstain; radii float64 [N], pixel
        units)``. With probability >= 1 - alpha per image, g is constant (= label) on the L2 ball of the radius."""
        certs = self.certificates(x, n, batch_size, n0=n0, alpha=alpha, seed=seed)
        return _art.to_numpy(certs.label), _art.to_numpy(certs.radius)

    def predict_labels(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, alpha: float = 0.001, seed: int | None = None,
    ) -> np.ndarray:
        """Cohen et al. PREDICT: int64 labels [N], ``-1`` where the two-sided binomial test (level ``alpha``) of
        the top two counts over ``n`` draws cannot decide; otherwise g(x) except with probability <= alpha."""
        x_t = self._inputs(x)
        generator = _art.generator_for(seed, self.device)
        with eval_mode(self.model), torch.no_grad():
            labels = predict(
                self.view, x_t, n=n, sigma=self.sigma, alpha=alpha, num_classes=self.nb_classes,
                batch_size=batch_size, generator=generator, noise_space=self.noise_space,
            )
        return _art.to_numpy(labels)
