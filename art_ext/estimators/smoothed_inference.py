"""ART adapter: smoothed inference (Nemcovsky et al.) as an ART ``PyTorchClassifier``."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext import _art
from art_ext.smoothing.inference import DEFAULT_MODE, SmoothedInference, labels_from_scores
from art_ext.ops.modes import eval_mode

_TINY = 1e-12


class ScoresNLLLoss(nn.NLLLoss):
    """Negative log-likelihood of *scores* (probabilities): NLL(log(max(scores, 1e-12)), y).

    On the soft mode this is -log(mean_i softmax(f(x + eta_i))_y), the SmoothAdv objective (Salman et al., 2019,
    arXiv:1906.04584v5, Eq. S1), so ART attacks that call ``loss_gradient`` attack the smoothed classifier itself.
    Subclassing ``nn.NLLLoss`` makes ART reduce one-hot labels to indices for it.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        return F.nll_loss(input.clamp_min(_TINY).log(), target, weight=self.weight, reduction=self.reduction)


class SmoothedInferenceClassifier(PyTorchClassifier):
    """An ART ``PyTorchClassifier`` whose model is the smoothed classifier of an ART ``PyTorchClassifier``.

    ``predict`` returns the smoothed scores [N, K] (vote shares for ``"prediction"``/``"weighted"``, probabilities
    for ``"soft"``): a tied vote keeps its tied scores (never an all-zero row), and ``predict_labels`` returns -1
    there. ART attacks work against the soft mode (``loss_gradient`` is the SmoothAdv loss through all M passes);
    the hard modes raise a ``ValueError`` when a gradient is requested (they are piecewise constant).

    Preprocessing: the wrapped estimator's predict-time preprocessing (its PyTorch preprocessing defences, then
    its ``preprocessing`` mean/std) moves *inside* the smoothed module, behind the noise: noise is added in [0, 1]
    pixel space before ART's preprocessing, as in Cohen et al. and ``RandomizedSmoothingEstimator``. The new
    estimator therefore has ``preprocessing=None``; ``nb_classes``, ``input_shape`` and ``clip_values`` are the
    wrapped estimator's, and at sigma = 0 it computes the wrapped estimator's function (softmax of it for "soft").

    Noise: one ``torch.Generator`` seeded by ``seed`` at construction; every call draws fresh noise from it, so a
    run is reproducible and ``predict`` equals ``SmoothedInference(...).scores`` with the same seed and calls.

    Args:
        estimator: ART ``PyTorchClassifier`` on [0, 1] inputs (``clip_values`` None or (0, 1)).
        sigma: Noise standard deviation in pixel units (>= 0).
        mode, num_samples, weights, soft_average, batch_size: as in ``SmoothedInference``.
        seed: Seed of the noise generator (``None``: torch's default generator).
    """

    def __init__(
        self, estimator: Any, sigma: float, *, mode: str = DEFAULT_MODE, num_samples: int = 8,
        weights: Sequence[float] | None = None, soft_average: str = "probabilities", batch_size: int = 1000,
        seed: int | None = None,
    ) -> None:
        _art.check_pytorch_classifier(estimator)
        _art.check_pixel_clip_values(estimator)
        device = _art.estimator_device(estimator)
        smoothed = SmoothedInference(
            _art.ARTModelView(estimator), sigma, num_classes=int(estimator.nb_classes), mode=mode,
            num_samples=num_samples, weights=weights, soft_average=soft_average, batch_size=batch_size,
            generator=_art.generator_for(seed, device),
        )
        super().__init__(
            model=smoothed, loss=ScoresNLLLoss(), input_shape=tuple(estimator.input_shape),
            nb_classes=int(estimator.nb_classes), clip_values=estimator.clip_values, preprocessing=None,
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        self.smoothed, self.seed = smoothed, seed

    @property
    def sigma(self) -> float:
        return self.smoothed.sigma

    @property
    def mode(self) -> str:
        return self.smoothed.mode

    @property
    def num_samples(self) -> int:
        return self.smoothed.num_samples

    def _scores(self, x: np.ndarray, training_mode: bool) -> torch.Tensor:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array [N, C, H, W] in [0, 1], got {type(x).__name__}")
        x_t = torch.as_tensor(x, dtype=torch.float32, device=self.device)  # the only numpy -> torch
        with torch.no_grad():
            if training_mode:
                return self.smoothed(x_t)
            with eval_mode(self.smoothed):
                return self.smoothed(x_t)

    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs: Any) -> np.ndarray:
        """Smoothed scores float32 [N, K]. The noisy-sample batch is the module's ``batch_size`` (``batch_size``
        here is accepted for ART compatibility and unused)."""
        return self._scores(x, training_mode).cpu().numpy()  # the only torch -> numpy

    def predict_labels(self, x: np.ndarray, training_mode: bool = False) -> np.ndarray:
        """Smoothed labels int64 [N], -1 where the top scores tie (one fresh set of M draws)."""
        return labels_from_scores(self._scores(x, training_mode)).cpu().numpy()
