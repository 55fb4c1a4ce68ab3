"""The shared body of art_ext's ART ``EvasionAttack`` adapters: numpy in once, batches, seed, eval mode, numpy out.

Every adapter turns an ART ``PyTorchClassifier`` into an ``nn.Module`` on [0, 1] inputs (``_art.ARTModelView``:
preprocessing defences, then ART's mean/std standardisation, then the model), builds its algorithm's config
dataclass from ART-named parameters in ``_check_params`` (so ``set_params`` is validated in the same place), and
calls the pure-torch core on each batch with one ``torch.Generator`` seeded from ``seed``. With ``batch_size`` at
least the number of inputs, ``generate`` therefore equals the core called once at the same seed.
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
from art_ext.ops.modes import eval_mode


class TorchEvasionAttack(EvasionAttack):
    """Base of the art_ext adapters. Subclasses set ``attack_params`` and implement ``_build_config`` and
    ``_attack_batch``; at most a few lines each."""

    attack_params = EvasionAttack.attack_params + ["batch_size", "verbose", "seed"]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(self, estimator: Any, *, batch_size: int = 32, verbose: bool = False, seed: int | None = None,
                 **params: Any) -> None:
        super().__init__(estimator=estimator)
        _art.check_pytorch_classifier(estimator)
        _art.check_pixel_clip_values(estimator)
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

    def _attack_batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      generator: torch.Generator | None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _model_view(self, estimator: Any) -> nn.Module:
        return _art.ARTModelView(estimator)

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
        self._model = self._model_view(self.estimator)  # rebuilt so that set_params reaches it

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Adversarial examples for ``x`` (numpy [N, C, H, W] in [0, 1]).

        Args:
            x: Clean inputs.
            y: True labels (targets when ``targeted``), as indices [N] or one-hot [N, K]. When None, the model's own
                predictions on ``x`` are used (one forward; avoid this for randomized models: pass true labels).
        Returns:
            float32 numpy array of the shape of ``x``.
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array [N, C, H, W] in [0, 1], got {type(x).__name__}")
        x_t = torch.as_tensor(x, dtype=torch.float32, device=self._device)  # the only numpy -> torch
        generator = _art.generator_for(self.seed, self._device)
        out = torch.empty_like(x_t)
        with eval_mode(self._model):
            y_t = self._labels(x_t, y)
            starts = range(0, x_t.shape[0], self.batch_size)
            for start in tqdm(starts, desc=type(self).__name__, disable=not self.verbose):
                end = start + self.batch_size
                out[start:end] = self._attack_batch(self._model, x_t[start:end], y_t[start:end], generator)
        return out.cpu().numpy()  # the only torch -> numpy

    def _labels(self, x: torch.Tensor, y: np.ndarray | None) -> torch.Tensor:
        if y is None:
            if self.targeted:
                raise ValueError("targeted=True needs target labels y, got y=None")
            with torch.no_grad():
                return torch.cat([self._model(x[i:i + self.batch_size]).argmax(1)
                                  for i in range(0, x.shape[0], self.batch_size)])
        y_arr = np.asarray(y)
        if y_arr.ndim == 2:
            y_arr = y_arr.argmax(1)
        if y_arr.ndim != 1 or y_arr.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape [N] or [N, K] with N={x.shape[0]}, got shape {np.shape(y)}")
        return torch.as_tensor(y_arr, dtype=torch.int64, device=x.device)
