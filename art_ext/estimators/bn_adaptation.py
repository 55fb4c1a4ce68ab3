"""ART adapter: certification through BN adaptation with Auto-Noise for an ART ``PyTorchClassifier``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from art_ext import _art
from art_ext.defences.bn_adaptation import CertificationThroughAdaptation
from art_ext.smoothing import DEFAULT_SIGMAS, Certificates
from art_ext.ops.modes import eval_mode


class CertificationThroughAdaptationEstimator:
    """Nandy et al.'s certification through adaptation (Alg. 1) and Auto-Noise (Alg. 2) for an ART estimator.

    Numpy in once, numpy out once; the work is ``art_ext.defences.bn_adaptation.CertificationThroughAdaptation`` on
    the estimator's predict-time pipeline (preprocessing defences and ``preprocessing`` mean/std as torch ops, then
    ``estimator.model``), so noise is added in pixel space and the adapted copies never touch the estimator's own
    model. ``predict`` returns the original model's labels (never abstains); ``certify`` / ``certify_auto_noise``
    return ``-1`` labels where no certificate is issued.

    Args:
        estimator: ART ``PyTorchClassifier`` on inputs in [0, 1] whose model has BatchNorm layers.
        clean_images: Adaptation images, numpy [M, C, H, W] in [0, 1], disjoint from the points to certify.
        sigmas, rho, adaptation_batch_size, adaptation_seed: See ``CertificationThroughAdaptation``.
    """

    def __init__(
        self,
        estimator: object,
        clean_images: np.ndarray,
        *,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        rho: float = 1.0,
        adaptation_batch_size: int = 512,
        adaptation_seed: int = 0,
    ) -> None:
        _art.check_pytorch_classifier(estimator)
        _art.check_pixel_clip_values(estimator)
        self.estimator = estimator
        self.device = _art.estimator_device(estimator)
        view = _art.ARTModelView(estimator)
        self.method = CertificationThroughAdaptation(
            view, self._to_tensor(clean_images, "clean_images"), num_classes=int(estimator.nb_classes),  # type: ignore[attr-defined]
            sigmas=sigmas, rho=rho, adaptation_batch_size=adaptation_batch_size, adaptation_seed=adaptation_seed,
        )

    def _to_tensor(self, x: np.ndarray, name: str = "x") -> torch.Tensor:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a numpy array [B, C, H, W] in [0, 1], got {type(x).__name__}")
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)  # the only numpy -> torch

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """int64 [B]: the original model's labels (what the defended system outputs)."""
        return self.method.predict(self._to_tensor(x), batch_size=batch_size).cpu().numpy()

    def certificates(
        self, x: np.ndarray, *, sigma: float | None = None, n_auto: int = 1000, n0: int = 100, n: int = 100_000,
        alpha: float = 0.001, batch_size: int = 1000, seed: int | None = None,
    ) -> Certificates:
        """Full ``Certificates`` (torch tensors): Algorithm 1 at ``sigma``, or Auto-Noise when ``sigma`` is
        None. The estimator's model mode flags are restored afterwards."""
        x_t = self._to_tensor(x)
        generator = _art.generator_for(seed, self.device)
        with eval_mode(self.method.model):
            if sigma is not None:
                return self.method.certify(x_t, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                                           generator=generator)
            return self.method.certify_auto_noise(x_t, n_auto=n_auto, n0=n0, n=n, alpha=alpha,
                                                  batch_size=batch_size, generator=generator)

    def certify(
        self, x: np.ndarray, sigma: float, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
        batch_size: int = 1000, seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 1 at ``sigma``: ``(labels int64 [B], -1 = no certificate; radii float64 [B], pixel units)``."""
        certs = self.certificates(x, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed)
        return certs.label.cpu().numpy(), certs.radius.cpu().numpy()

    def certify_auto_noise(
        self, x: np.ndarray, n_auto: int = 1000, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
        batch_size: int = 1000, seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Algorithm 2: ``(labels int64 [B], -1 = no certificate; radii float64 [B]; selected sigma float64 [B])``;
        each radius holds for the smoothed classifier at its own selected sigma."""
        certs = self.certificates(x, n_auto=n_auto, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed)
        return certs.label.cpu().numpy(), certs.radius.cpu().numpy(), certs.sigma.cpu().numpy()
