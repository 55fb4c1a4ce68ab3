"""Smoothed inference (Nemcovsky et al.) as an ART ``PyTorchClassifier`` that ART's attacks accept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from art_ext import _art
from art_ext.estimators._base import (
    DEFAULT_OUTPUT,
    CheckedPyTorchClassifier,
    SmoothedScores,
    check_output,
    loss_for,
    wrappers_in_eval,
)
from art_ext.smoothing.inference import DEFAULT_MODE, SmoothedInference, labels_from_scores
from art_ext.smoothing.noise import NoiseSpace, resolve


def smoothed_forward(
    estimator: Any, sigma: float, *, mode: str, num_samples: int, weights: Sequence[float] | None,
    soft_average: str, batch_size: int, noise_space: NoiseSpace | None, output: str, seed: int | None,
) -> SmoothedScores:
    """The smoothed forward of an ART estimator's predict-time pipeline, as the model of an ART classifier.

    Noise in pixel space in front of ``_art.ARTModelView(estimator)`` (preprocessing defences, then
    ``preprocessing`` mean/std, then the model), drawn from one generator seeded by ``seed``.
    """
    check_output(output)
    space = resolve(noise_space)
    if not space.is_pixel and not bool(estimator.channels_first):
        raise ValueError(
            f"noise_space={space} scales noise per channel along dimension 1 (channels first), but the estimator is "
            "channels_last: use pixel noise (noise_space=None) or a channels-first estimator"
        )
    device = _art.estimator_device(estimator)
    view = _art.ARTModelView(estimator)
    smoothed = SmoothedInference(
        view, sigma, num_classes=int(estimator.nb_classes), mode=mode,
        num_samples=num_samples, weights=weights, soft_average=soft_average, batch_size=batch_size,
        noise_space=space, generator=_art.generator_for(seed, device),
    )
    scores = SmoothedScores(smoothed, output)
    wrappers_in_eval(scores, smoothed, view)
    return scores


class SmoothedInferenceClassifier(CheckedPyTorchClassifier):
    """An ART ``PyTorchClassifier`` whose model is the smoothed classifier of an ART ``PyTorchClassifier``.

    Smoothed inference of Nemcovsky et al. (arXiv:1911.07198v2, Eqs. 8-13): the scores of x are the mean over M
    noisy passes f(x + eta_i), eta_i ~ N(0, sigma^2 I), of the mode's votes: vote shares for ``"prediction"`` /
    ``"weighted"``, softmax probabilities for ``"soft"`` (the default, ``art_ext.smoothing.DEFAULT_MODE``, and the
    only differentiable mode). ART's ``ProjectedGradientDescent``, ``AutoProjectedGradientDescent`` (``loss_type``
    ``"cross_entropy"`` and ``"difference_logits_ratio"``), ``DeepFool``, ``HopSkipJump``, ``SquareAttack`` and
    ``AutoAttack`` accept it, and they attack the smoothed classifier, not its base.

    What the ART methods return:
        * ``predict``: float32 [N, K], one fresh set of M draws per call: ``log`` of the smoothed probabilities for
          ``output="log_probabilities"`` (the default), the probabilities (vote shares) for
          ``output="probabilities"``. The default is the log because a ``PyTorchClassifier``'s model outputs
          logits: log-probabilities are logits of the smoothed classifier (softmax(log p) = p, and cross-entropy
          on them is -log p_y), while ART's APGD and AutoAttack refuse models whose outputs look like probabilities.
          A class with no votes in a hard mode has log score -inf. Never an all-zero row; ``predict_labels``
          returns -1 where the top scores tie.
        * ``loss_gradient``: d/dx of -log p_y(x) (mean over the batch), through all M passes of the soft smoothed
          forward ``art_ext.smoothing.SmoothedInference`` with fresh draws: the expectation-over-noise (EOT)
          gradient of the smoothed classifier, i.e. the SmoothAdv objective (Salman et al., 2019, arXiv:1906.04584v5,
          Eq. S1), never the noise-free base's gradient (which is what ART's ``PyTorchRandomizedSmoothing`` returns).
        * ``class_gradient``: gradients of the ``predict`` outputs (log p_c or p_c) from one set of M draws.
        * The hard modes raise ``ValueError`` when a gradient is asked for (they are piecewise constant).

    Preprocessing: the wrapped estimator's predict-time preprocessing (its PyTorch preprocessing defences, then its
    ``preprocessing`` mean/std) moves *inside* the model, behind the noise, via ``_art.ARTModelView``: noise is
    added in [0, 1] pixel space before ART's preprocessing, as in Cohen et al. The new classifier therefore has
    ``preprocessing=None`` and ``clip_values=(0, 1)``; ``nb_classes``, ``input_shape`` and ``channels_first`` are
    the wrapped estimator's. At sigma = 0 it computes the wrapped estimator's function (its softmax for "soft").
    Inputs are checked at every entry point (shape == ``input_shape``, finite, inside [0, 1]) and refused, never
    broadcast or clipped. The wrapped model runs in eval mode and keeps its own train/eval flags.

    Noise: one ``torch.Generator`` seeded by ``seed`` at construction; every public call takes one draw from it
    and derives one noise key per image of the call (``art_ext.smoothing.NoiseKeys``), and each batch of ``predict``
    gets its images' keys: image i's j-th pass depends on that key and j only, so the scores do not depend on
    ``predict``'s ``batch_size``, a run is reproducible, and ``predict`` equals ``SmoothedInference(...)`` on the
    whole array (same base, seed and calls). ART attacks that rebuild a classifier from ``self.model`` (APGD with a
    ``loss_type``) draw from the same generator, one draw per model call.

    Dtypes: inputs of any floating dtype are cast once at the entry point to the dtype of the wrapped model's
    parameters (float32 for a parameter-free model); ``predict`` returns float32, gradients the caller's dtype.

    Args:
        estimator: ART ``PyTorchClassifier`` on [0, 1] inputs (``clip_values`` None or (0, 1)), without
            postprocessing defences.
        sigma: Noise standard deviation (>= 0) in the units of ``noise_space`` (pixels by default).
        mode: ``"soft"`` (default), ``"prediction"`` or ``"weighted"``.
        num_samples: M, noisy passes per call. weights, soft_average, batch_size: as in ``SmoothedInference``
            (``batch_size`` = noisy samples per forward pass of the base).
        noise_space: ``None`` (pixel noise) or ``NormalizedNoise(mean, std)`` (channels-first estimators).
        output: ``"log_probabilities"`` (default) or ``"probabilities"``.
        seed: Seed of the noise generator (``None``: torch's default generator).

    Examples:
        >>> import numpy as np, torch
        >>> from art_ext.testing import art_classifier, tiny_cnn
        >>> clf = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.25, num_samples=16, seed=0)
        >>> x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
        >>> scores = clf.predict(x)                        # log of the smoothed probabilities, [2, 10]
        >>> bool(np.allclose(np.exp(scores).sum(axis=1), 1.0, atol=1e-5))
        True
        >>> clf.loss_gradient(x, np.array([3, 5])).shape  # EOT gradient through the 16 noisy passes
        (2, 1, 8, 8)

    References:
        Nemcovsky et al., "Smoothed Inference for Improving Adversarial Robustness", arXiv:1911.07198v2.
        Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers",
        arXiv:1906.04584v5.
    """

    def __init__(
        self, estimator: Any, sigma: float, *, mode: str = DEFAULT_MODE, num_samples: int = 8,
        weights: Sequence[float] | None = None, soft_average: str = "probabilities", batch_size: int = 1000,
        noise_space: NoiseSpace | None = None, output: str = DEFAULT_OUTPUT, seed: int | None = None,
    ) -> None:
        _art.check_pytorch_classifier(estimator)
        model = smoothed_forward(
            estimator, sigma, mode=mode, num_samples=num_samples, weights=weights, soft_average=soft_average,
            batch_size=batch_size, noise_space=noise_space, output=output, seed=seed,
        )
        super().__init__(estimator, model, loss=loss_for(output))
        self.smoothed: SmoothedInference = model.smoothed
        self.seed = seed

    @property
    def sigma(self) -> float:
        return self.smoothed.sigma

    @property
    def mode(self) -> str:
        return self.smoothed.mode

    @property
    def num_samples(self) -> int:
        return self.smoothed.num_samples

    @property
    def output(self) -> str:
        return self.model.output

    def predict_labels(self, x: np.ndarray, training_mode: bool = False) -> np.ndarray:
        """Smoothed labels int64 [N] from one fresh set of M draws, ``-1`` where the top scores tie."""
        self._check_call("predict_labels", training_mode, {})
        x_t = self._inputs(x)
        with torch.no_grad():
            scores = self._run_call(x_t)
        if self.output == "log_probabilities":
            scores = scores.exp()  # ties are decided on the probabilities (vote shares)
        return _art.to_numpy(labels_from_scores(scores))
