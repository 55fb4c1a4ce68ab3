"""SmoothAdv (Salman et al., 2019) as a drop-in for ART's ``PyTorchSmoothAdv``: same constructor, art_ext's
training and certification."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from art_ext.estimators.randomized_smoothing import PyTorchRandomizedSmoothing, check_number
from art_ext.ops import validation


class PyTorchSmoothAdv(PyTorchRandomizedSmoothing):
    """ART's ``PyTorchSmoothAdv`` with art_ext underneath: ``fit`` is SmoothAdv adversarial training.

    SmoothAdv (Salman et al., "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers",
    arXiv:1906.04584v5, Eq. S1 for the attack objective, multi-noise training as in the reference code
    Hadisalman/smoothing-adversarial): each loader batch is cut into ``num_noise_vec`` = m chunks; per chunk, m
    noise draws are fixed, an L2 PGD of ``num_steps`` steps (step 2 * eps / num_steps) maximizes
    -log(1/m sum_i softmax(f(x' + e_i)))_y over ||x' - x||_2 <= eps, x' in [0, 1], on the **true** labels, and the
    update minimizes the mean cross-entropy of f(x' + e_i) with the same draws. eps = ``epsilon`` (L2, pixel units)
    warmed up as min(1, (epoch + 1) / ``warmup``) * epsilon.

    Constructor: ART's arguments, names, order and defaults (``epsilon=1.0, num_noise_vec=1, num_steps=10,
    warmup=1``), plus keyword-only ``seed`` / ``generator``.

    Deviations from ART 1.20.1 (see the ART drop-ins page of the docs): ART runs ``num_steps`` one-step L-inf PGD
    calls (eps_step 0.1) on the model's *predicted* labels, each re-centred at the current point; its warm-up writes
    the attack's ``norm`` and has no effect; ``num_noise_vec`` >= 2 raises; noise is added after ``preprocessing``.
    Here the attack is the paper's L2 SmoothAdv-PGD on the true labels, ``epsilon`` is an L2 radius, the warm-up
    scales it, any ``num_noise_vec`` >= 1 works, and noise is added in pixel space before ``preprocessing``.

    Examples:
        >>> import torch
        >>> from art_ext.testing import tiny_cnn
        >>> smoothadv = PyTorchSmoothAdv(tiny_cnn(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu",
        ...                              scale=0.25, epsilon=0.5, num_noise_vec=2, seed=0)
        >>> smoothadv.get_params()["num_noise_vec"], smoothadv.epsilon
        (2, 0.5)
    """

    estimator_params = PyTorchRandomizedSmoothing.estimator_params + ["epsilon", "num_noise_vec", "num_steps",
                                                                      "warmup"]
    method_params: ClassVar[tuple[str, ...]] = ("epsilon", "num_noise_vec", "num_steps", "warmup")

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
        epsilon: float = 1.0,
        num_noise_vec: int = 1,
        num_steps: int = 10,
        warmup: int = 1,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self._init_from_art_arguments(locals())

    def _check_method_params(self, params: dict[str, Any]) -> None:
        check_number(params["epsilon"], "epsilon (L2 radius of the training attack, pixel units)", strict=True)
        for name in ("num_noise_vec", "num_steps", "warmup"):
            validation.check_positive_int(params[name], name)

    def _training_method(self) -> Any:
        from art_ext.training.certified import SmoothAdvTraining

        return SmoothAdvTraining(sigma=self.scale, eps=float(self.epsilon), num_steps=int(self.num_steps),
                                 num_noise_vec=int(self.num_noise_vec), warmup=int(self.warmup))
