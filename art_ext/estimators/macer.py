"""MACER (Zhai et al., 2020) as a drop-in for ART's ``PyTorchMACER``: same constructor, art_ext's training and
certification."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from art_ext.estimators.randomized_smoothing import PyTorchRandomizedSmoothing, check_number
from art_ext.ops import validation


class PyTorchMACER(PyTorchRandomizedSmoothing):
    """ART's ``PyTorchMACER`` with art_ext underneath: ``fit`` minimizes MACER's soft-smoothed margin loss.

    MACER (Zhai et al., "MACER: Attack-free and Scalable Robust Training via Maximizing Certified Radius",
    arXiv:2001.02378, Algorithm 1 and Eq. 10 of the paper as restated by the reference code RuntianZ/macer):
    per example, ``gaussian_samples`` = k noisy copies x + e_i (pixel space); the loss is the cross-entropy of the
    soft smoothed classifier 1/k sum_i softmax(f(x + e_i)) plus ``lmbda`` * (scale / 2) * max(``gamma`` - xi, 0) for
    correctly classified examples, where xi = Phi^-1(top-1) - Phi^-1(top-2) of the smoothed softmax at inverse
    temperature ``beta``. Everything else (``predict``, ``certify``, gradients, seeds) is
    ``PyTorchRandomizedSmoothing``'s.

    Constructor: ART's arguments, names, order and defaults (``beta=16.0, gamma=8.0, lmbda=12.0,
    gaussian_samples=16`` after ART's common ones), plus keyword-only ``seed`` / ``generator``.

    Deviations from ART 1.20.1 (see the ART drop-ins page of the docs): noise in pixel space before
    ``preprocessing`` (ART adds it after the mean/std); noisy copies grouped per example for any input rank (ART's
    ``repeat((1, k, 1, 1))`` mixes examples for non-4-D inputs); ``get_params`` works (ART lists ``gauss_num``);
    the user's ``loss`` is not used by ``fit`` (MACER's loss is fixed), as in ART.

    Examples:
        >>> import numpy as np, torch
        >>> from art_ext.testing import tiny_cnn
        >>> model = tiny_cnn()
        >>> macer = PyTorchMACER(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10,
        ...                      optimizer=torch.optim.SGD(model.parameters(), lr=0.01), device_type="cpu",
        ...                      scale=0.25, gaussian_samples=4, seed=0)
        >>> sorted(k for k in macer.get_params() if k in ("beta", "gamma", "lmbda", "gaussian_samples"))
        ['beta', 'gamma', 'gaussian_samples', 'lmbda']
    """

    estimator_params = PyTorchRandomizedSmoothing.estimator_params + ["beta", "gamma", "lmbda", "gaussian_samples"]
    method_params: ClassVar[tuple[str, ...]] = ("beta", "gamma", "lmbda", "gaussian_samples")

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        input_shape: tuple[int, ...],
        nb_classes: int,
        optimizer: torch.optim.Optimizer | None = None,
        channels_first: bool = True,
        clip_values: Any = None,
        preprocessing_defences: Any = None,
        postprocessing_defences: Any = None,
        preprocessing: Any = (0.0, 1.0),
        device_type: str = "gpu",
        sample_size: int = 32,
        scale: float = 0.1,
        alpha: float = 0.001,
        beta: float = 16.0,
        gamma: float = 8.0,
        lmbda: float = 12.0,
        gaussian_samples: int = 16,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self._init_from_art_arguments(locals())

    _fit_uses_loss: ClassVar[bool] = False  # the method's loss is fixed (ART ignores ``loss`` here too)

    def _check_method_params(self, params: dict[str, Any]) -> None:
        check_number(params["beta"], "beta (inverse temperature)", strict=True)
        check_number(params["gamma"], "gamma (hinge threshold)", strict=True)
        check_number(params["lmbda"], "lmbda (trade-off)")
        validation.check_positive_int(params["gaussian_samples"], "gaussian_samples")

    def _training_method(self) -> Any:
        from art_ext.training.certified import MACERTraining

        return MACERTraining(sigma=self.scale, beta=float(self.beta), gamma=float(self.gamma), lbd=float(self.lmbda),
                             num_noise_vec=int(self.gaussian_samples))
