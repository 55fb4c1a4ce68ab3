"""ART adapter: Cohen et al. PREDICT / CERTIFY for an ART ``PyTorchClassifier``."""

from __future__ import annotations

import numpy as np
import torch

from art_ext import _art
from art_ext.smoothing.classifier import SmoothedClassifier
from art_ext.smoothing.certify import Certificates
from art_ext.ops import validation
from art_ext.ops.modes import eval_mode


class RandomizedSmoothingEstimator:
    """Randomized-smoothing certificates for an ART ``PyTorchClassifier``.

    Noise is added in pixel space *before* the estimator's preprocessing defences and its ``preprocessing``
    (mean, std), so the result is the certificate of ``estimator.model`` with that preprocessing as its first layer,
    and equals ``art_ext.certify`` on that module at the same seed. Unlike ART's ``PyTorchRandomizedSmoothing``:
    selection uses its own ``n0`` draws, abstentions are -1 labels, noise never leaves torch, and ``seed`` makes a
    run reproducible.

    Args:
        estimator: ART ``PyTorchClassifier`` on inputs in [0, 1] (``clip_values`` None or (0, 1)).
        sigma: Noise standard deviation in pixel units (> 0).
    """

    def __init__(self, estimator: object, sigma: float) -> None:
        _art.check_pytorch_classifier(estimator)
        _art.check_pixel_clip_values(estimator)
        sigma = validation.check_sigma(sigma)  # certificates need sigma > 0 (SmoothedClassifier also allows 0)
        self.estimator = estimator
        self.device = _art.estimator_device(estimator)
        self.smoothed = SmoothedClassifier(
            _art.ARTModelView(estimator), sigma, num_classes=int(estimator.nb_classes)  # type: ignore[attr-defined]
        )

    @property
    def sigma(self) -> float:
        return self.smoothed.sigma

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array [B, C, H, W] in [0, 1], got {type(x).__name__}")
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)  # the only numpy -> torch

    def certificates(
        self, x: np.ndarray, *, n0: int = 100, n: int = 100_000, alpha: float = 0.001, batch_size: int = 1000,
        seed: int | None = None,
    ) -> Certificates:
        """Full ``Certificates`` (torch tensors) for numpy images ``x``. The model runs in eval mode (as ART's
        ``predict`` does) and its train/eval flags are restored afterwards."""
        x_t = self._to_tensor(x)
        with eval_mode(self.smoothed.base):
            return self.smoothed.certify(
                x_t, n0=n0, n=n, alpha=alpha, batch_size=batch_size, generator=_art.generator_for(seed, self.device)
            )

    def certify(
        self, x: np.ndarray, n0: int = 100, n: int = 100_000, alpha: float = 0.001, batch_size: int = 1000,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cohen et al. CERTIFY. Returns ``(labels int64 [B] with -1 = abstain, radii float64 [B] in pixel units)``."""
        certs = self.certificates(x, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed)
        return certs.label.cpu().numpy(), certs.radius.cpu().numpy()

    def predict(
        self, x: np.ndarray, n: int = 100_000, alpha: float = 0.001, batch_size: int = 1000, seed: int | None = None
    ) -> np.ndarray:
        """Cohen et al. PREDICT. Returns int64 labels [B], -1 where the binomial test cannot decide."""
        x_t = self._to_tensor(x)
        with eval_mode(self.smoothed.base):
            labels = self.smoothed.predict(
                x_t, n=n, alpha=alpha, batch_size=batch_size, generator=_art.generator_for(seed, self.device)
            )
        return labels.cpu().numpy()
