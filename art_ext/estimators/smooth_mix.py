"""SmoothMix (Jeong et al., 2021) as a drop-in for ART's ``PyTorchSmoothMix``: same constructor, art_ext's
training and certification."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from art_ext.estimators.randomized_smoothing import PyTorchRandomizedSmoothing, check_number
from art_ext.ops import validation


class PyTorchSmoothMix(PyTorchRandomizedSmoothing):
    """ART's ``PyTorchSmoothMix`` with art_ext underneath: ``fit`` is SmoothMix training.

    SmoothMix (Jeong, Park, Kim, Lee, Kim & Shin, "SmoothMix: Training Confidence-calibrated Smoothed Classifiers
    for Certified Robustness", arXiv:2111.09277, as in the reference code jh-jeong/smoothmix): per chunk of a loader
    batch, ``num_noise_vec`` = m noise draws are fixed; ``num_steps`` = T normalized-gradient L2 steps of size
    ``step_size`` on -log of the soft smoothed classifier give the adversarial path x^(0..T) (optionally bounded by
    ``maxnorm``); the clean side is x^(``mix_step``) (bounded by ``maxnorm_s``, default step_size * mix_step, times
    the warm-up factor); inputs mixed with lambda ~ U[0, 1/2) are trained towards (1 - lambda) * smoothed prediction
    + lambda * uniform with weight ``eta`` * warm-up factor, next to cross-entropy on the clean side.

    Constructor: ART's arguments, names, order and defaults (``eta=1.0, num_noise_vec=1, num_steps=10, warmup=1,
    mix_step=0, maxnorm_s=None, maxnorm=None``), plus keyword-only ``step_size`` (the attack's L2 step, pixel units;
    ``None``: 2 * scale, the ratio of the paper's CIFAR-10 recipes at sigma 0.25, 0.5 and 1.0), ``seed`` and
    ``generator``.

    Deviations from ART 1.20.1 (see the ART drop-ins page of the docs): ART uses ``alpha``, the certification failure
    probability (0.001 by default), as the attack's step size, so its adversarial path barely moves; here the step is
    ``step_size`` and ``alpha`` keeps its meaning. Noise is added in pixel space before ``preprocessing`` and the
    [0, 1] box is applied to pixels (ART applies both to the normalized tensor). lambda comes from the classifier's
    generator.

    Examples:
        >>> import torch
        >>> from art_ext.testing import tiny_cnn
        >>> smoothmix = PyTorchSmoothMix(tiny_cnn(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, device_type="cpu",
        ...                              scale=0.25, num_noise_vec=2, num_steps=4, seed=0)
        >>> smoothmix.attack_step_size, smoothmix.alpha
        (0.5, 0.001)
    """

    estimator_params = PyTorchRandomizedSmoothing.estimator_params + [
        "eta", "num_noise_vec", "num_steps", "warmup", "mix_step", "maxnorm_s", "maxnorm", "step_size",
    ]
    method_params: ClassVar[tuple[str, ...]] = (
        "eta", "num_noise_vec", "num_steps", "warmup", "mix_step", "maxnorm_s", "maxnorm", "step_size",
    )

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
        eta: float = 1.0,
        num_noise_vec: int = 1,
        num_steps: int = 10,
        warmup: int = 1,
        mix_step: int = 0,
        maxnorm_s: float | None = None,
        maxnorm: float | None = None,
        *,
        step_size: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self._init_from_art_arguments(locals())

    _fit_uses_loss: ClassVar[bool] = False  # the method's loss is fixed (ART ignores ``loss`` here too)

    def _check_method_params(self, params: dict[str, Any]) -> None:
        check_number(params["eta"], "eta (weight of the mixup loss)")
        for name in ("num_noise_vec", "num_steps", "warmup"):
            validation.check_positive_int(params[name], name)
        mix_step = params["mix_step"]
        check_number(mix_step, "mix_step", integer=True)
        if mix_step > params["num_steps"]:
            raise ValueError(f"mix_step must be in [0, num_steps={params['num_steps']}] (the attack step whose point "
                             f"is the clean side), got {mix_step}")
        for name in ("maxnorm_s", "maxnorm", "step_size"):
            if params[name] is not None:
                check_number(params[name], f"{name} (L2, pixel units) or None", strict=True)

    @property
    def attack_step_size(self) -> float:
        """The attack's L2 step in pixel units: ``step_size``, or 2 * scale when it is None."""
        return 2.0 * self.scale if self.step_size is None else float(self.step_size)

    def _training_method(self) -> Any:
        from art_ext.training.certified import SmoothMixTraining

        return SmoothMixTraining(
            sigma=self.scale, eta=float(self.eta), mix_step=int(self.mix_step), num_steps=int(self.num_steps),
            num_noise_vec=int(self.num_noise_vec), warmup=int(self.warmup), step_size=self.attack_step_size,
            maxnorm_s=self.maxnorm_s, maxnorm=self.maxnorm,
        )
