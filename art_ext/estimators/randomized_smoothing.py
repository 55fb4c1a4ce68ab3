"""Gaussian randomized smoothing (Cohen et al.) as an ART ``PyTorchClassifier``: ART's drop-in and art_ext's wrapper.

``PyTorchRandomizedSmoothing`` is one class with two constructors:

* ``PyTorchRandomizedSmoothing(model, loss, input_shape, nb_classes, ..., sample_size=32, scale=0.1, alpha=0.001)``:
  exactly the constructor of ART's ``art.estimators.certification.randomized_smoothing.PyTorchRandomizedSmoothing``
  (plus keyword-only ``seed`` / ``generator``), so an ART user's script runs after changing one import;
* ``PyTorchRandomizedSmoothing.from_classifier(classifier, scale, ...)``: wraps an existing ART ``PyTorchClassifier``.

``RandomizedSmoothingClassifier(estimator, sigma, ...)`` is the second constructor under art_ext's earlier name and
defaults (soft smoothed scores from ``predict``). The training methods of ART's subclasses (MACER, SmoothAdv,
SmoothMix) subclass it in ``art_ext.estimators.macer``, ``.smooth_adv`` and ``.smooth_mix``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext import _art
from art_ext.estimators._base import DEFAULT_OUTPUT, OUTPUTS, CheckedPyTorchClassifier, loss_for
from art_ext.estimators.smoothed_inference import smoothed_forward
from art_ext.ops import stats, validation
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.certify import Certificates, certify, predict
from art_ext.smoothing.inference import SmoothedInference
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.noise import NoiseSpace
from art_ext.smoothing.sampling import sample_counts

#: ``predict``'s outputs: ART's (``"votes"``: Cohen's PREDICT over ``sample_size`` draws as one-hot rows, all-zero
#: where it abstains) or the soft smoothed scores of art_ext's earlier wrapper (``_base.OUTPUTS``).
PREDICT_OUTPUTS = ("votes", *OUTPUTS)
#: noisy samples per forward pass of the soft smoothed forward (gradients, soft ``predict``)
DEFAULT_FORWARD_BATCH = 1000
#: the constructor arguments of ART 1.20.1's randomized-smoothing estimators, in ART's order
ART_ARGUMENTS = (
    "model", "loss", "input_shape", "nb_classes", "optimizer", "channels_first", "clip_values",
    "preprocessing_defences", "postprocessing_defences", "preprocessing", "device_type", "sample_size", "scale",
    "alpha",
)


def check_scale(scale: object) -> float:
    """ART's ``scale``: the noise standard deviation sigma in pixel units, finite and > 0."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale (sigma, the noise std in pixel units) must be a real number, got {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"scale (sigma, the noise std in pixel units) must be finite and > 0, got {scale!r}")
    return value


def check_number(value: object, name: str, *, low: float = 0.0, strict: bool = False, integer: bool = False) -> Any:
    """A finite number >= ``low`` (> ``low`` when ``strict``), an int when ``integer``; bools refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        kind = "an int" if integer else "a real number"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if integer and not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < low or (strict and number == low):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {low:g}, got {value!r}")
    return int(value) if integer else number


def _check_art_arguments(model: object, loss: object, input_shape: object, nb_classes: object, optimizer: object,
                         channels_first: object, device_type: object) -> tuple[int, ...]:
    """The checks ART leaves to the first forward pass, made before any work; returns ``input_shape`` as ints."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be a torch loss module (e.g. torch.nn.CrossEntropyLoss()), got {loss!r}")
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or not input_shape or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in input_shape):
        raise ValueError("input_shape must be a non-empty tuple of positive ints (one input's shape, e.g. "
                         f"(1, 16, 16)), got {input_shape!r}")
    validation.check_num_classes(nb_classes)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    if not isinstance(channels_first, bool):
        raise TypeError(f"channels_first must be a bool, got {channels_first!r}")
    if device_type not in ("gpu", "cpu"):
        raise ValueError(f"device_type must be 'gpu' or 'cpu', got {device_type!r}")
    return tuple(int(d) for d in input_shape)


class PyTorchRandomizedSmoothing(CheckedPyTorchClassifier):
    """Randomized smoothing of Cohen, Rosenfeld & Kolter (2019) with ART's constructor, noise keyed per image.

    The smoothed classifier g(x) = argmax_c P[f(x + e) = c], e ~ N(0, scale^2 I), where f is the base pipeline:
    preprocessing defences, then ``preprocessing`` (mean, std), then ``model``. Noise is added to [0, 1] pixels
    *before* that pipeline, in ``fit`` as in ``predict`` / ``certify``, so ``scale`` and the radii are pixel units.

    Constructors:
        * ``PyTorchRandomizedSmoothing(model, loss, input_shape, nb_classes, optimizer=None, channels_first=True,
          clip_values=None, preprocessing_defences=None, postprocessing_defences=None, preprocessing=(0, 1),
          device_type="gpu", sample_size=32, scale=0.1, alpha=0.001, *, seed=None, generator=None)``: ART's
          arguments, names, order and defaults; ``seed`` or ``generator`` makes every call reproducible.
        * ``from_classifier(classifier, scale, *, sample_size=32, alpha=0.001, ...)``: wraps an existing ART
          ``PyTorchClassifier`` (its model, preprocessing and optimizer).

    What the methods return (ART's meanings):
        * ``predict(x, batch_size=128, verbose=False, is_abstain=True)``: Cohen's PREDICT with ``sample_size``
          draws and level ``alpha`` as float64 one-hot rows [N, K], an all-zero row where the two-sided binomial
          test cannot decide (``is_abstain=False``: the majority class anyway). ``output="log_probabilities"`` /
          ``"probabilities"`` (``from_classifier``) returns the soft smoothed scores instead.
        * ``certify(x, n, batch_size=32)``: Cohen's CERTIFY, ``(labels int64 [N], -1 = abstain; radii float64 [N])``
          with ``sample_size`` selection draws, ``n`` estimation draws and ``alpha``; keyword-only ``n0``,
          ``alpha``, ``seed`` override them per call. ``certificates`` returns the full ``Certificates``.
        * ``fit(x, y, batch_size=128, nb_epochs=10, training_mode=True, drop_last=False, scheduler=None,
          verbose=False)``: trains ``model`` with ``optimizer`` by the class's certified-training method (here
          Gaussian noise augmentation, one fresh pixel-space draw per example per step).
        * ``loss_gradient`` / ``class_gradient`` / ``compute_loss``: of the soft smoothed classifier,
          -log(1/M sum_i softmax(f(x + e_i)))_y over M = ``sample_size`` draws (expectation over noise), the
          objective of SmoothAdv's attack; ART's class differentiates the noise-free base by default.

    Randomness: one generator (``seed`` or ``generator``; neither: torch's default generator) serves every call in
    order. A call draws one value from it and gives each of its images a noise key (``art_ext.smoothing.NoiseKeys``),
    so image i's j-th noisy sample depends on that key and j only, never on ``batch_size``. ``fit`` draws its
    shuffles and noise from the same generator.

    Args:
        model: The network ([0, 1] pixels -> logits). It and ``loss``, ``input_shape``, ``nb_classes``,
            ``optimizer``, ``channels_first``, ``clip_values``, ``preprocessing_defences``,
            ``postprocessing_defences``, ``preprocessing`` and ``device_type`` mean what they mean for ART's
            ``PyTorchClassifier``; ``clip_values`` must be None or (0, 1) (art_ext works on [0, 1] pixels) and
            ``postprocessing_defences`` None.
        sample_size: Draws of ``predict``, selection draws of ``certify`` and M of the soft forward (>= 1).
        scale: Noise standard deviation sigma (> 0), pixel units.
        alpha: Failure probability of ``predict`` and ``certify``, in (0, 1).
        seed: Seed of the classifier's generator. generator: A ``torch.Generator`` on the model's device instead.

    Examples:
        >>> import numpy as np, torch
        >>> from art_ext.testing import tiny_cnn
        >>> rs = PyTorchRandomizedSmoothing(tiny_cnn(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10,
        ...                                 device_type="cpu", sample_size=20, scale=0.25, seed=0)
        >>> x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
        >>> labels, radii = rs.certify(x, 200, 100)       # ART's call: n = 200 estimation draws
        >>> labels.dtype, radii.dtype, rs.predict(x).shape
        (dtype('int64'), dtype('float64'), (2, 10))

    References:
        Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", arXiv:1902.02918v2
        (PREDICT and CERTIFY, Sec. 3.2; Gaussian augmentation, Sec. 4).
    """

    estimator_params = PyTorchClassifier.estimator_params + ["sample_size", "scale", "alpha"]
    #: the method's own constructor arguments after ART's common ones (subclasses)
    method_params: ClassVar[tuple[str, ...]] = ()

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
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self._init_from_art_arguments(locals())

    # -- construction ---------------------------------------------------------------------------------------------
    def _init_from_art_arguments(self, arguments: dict[str, Any]) -> None:
        """The body of every drop-in constructor: check everything, build the base ``PyTorchClassifier`` from ART's
        arguments, then the smoothed classifier over it."""
        shape = _check_art_arguments(*(arguments[k] for k in (
            "model", "loss", "input_shape", "nb_classes", "optimizer", "channels_first", "device_type")))
        method = {name: arguments[name] for name in self.method_params}
        self._check_method_params(method)
        scale, sample_size, alpha = self._check_smoothing(arguments["scale"], arguments["sample_size"],
                                                          arguments["alpha"])
        _check_seed(arguments["seed"], arguments["generator"])
        classifier = PyTorchClassifier(
            model=arguments["model"], loss=arguments["loss"], input_shape=shape, nb_classes=arguments["nb_classes"],
            optimizer=arguments["optimizer"], channels_first=arguments["channels_first"],
            clip_values=arguments["clip_values"], preprocessing_defences=arguments["preprocessing_defences"],
            postprocessing_defences=arguments["postprocessing_defences"], preprocessing=arguments["preprocessing"],
            device_type=arguments["device_type"],
        )
        self._build(classifier, scale, sample_size=sample_size, alpha=alpha, n0=None,
                    batch_size=DEFAULT_FORWARD_BATCH, noise_space=None, output="votes", seed=arguments["seed"],
                    generator=arguments["generator"], method=method)

    @classmethod
    def from_classifier(
        cls, classifier: PyTorchClassifier, scale: float, *, sample_size: int = 32, alpha: float = 0.001,
        n0: int | None = None, batch_size: int = DEFAULT_FORWARD_BATCH, noise_space: NoiseSpace | None = None,
        output: str = "votes", seed: int | None = None, generator: torch.Generator | None = None,
        **method_params: Any,
    ) -> PyTorchRandomizedSmoothing:
        """The smoothed classifier of an existing ART ``PyTorchClassifier`` (its model, preprocessing, optimizer).

        Args:
            classifier: ART ``PyTorchClassifier`` on [0, 1] inputs (``clip_values`` None or (0, 1)), no
                postprocessing defences.
            scale: Noise standard deviation sigma (> 0), in the units of ``noise_space`` (pixels by default).
            sample_size, alpha: As in the constructor.
            n0: ``certify``'s default selection draws (``None``: ``sample_size``, ART's rule).
            batch_size: Noisy samples per forward pass of the soft smoothed forward.
            noise_space: ``None`` (pixel noise) or ``NormalizedNoise(mean, std)`` (certification only; ``fit``
                trains with pixel noise and refuses it).
            output: What ``predict`` returns: ``"votes"`` (ART's PREDICT rows), ``"log_probabilities"`` or
                ``"probabilities"`` (soft smoothed scores).
            seed, generator: The classifier's source of randomness (one of them, or neither).
            method_params: The subclass's own constructor arguments (e.g. ``beta`` for ``PyTorchMACER``), with the
                constructor's defaults; unknown names are refused.

        Examples:
            >>> from art_ext.testing import art_classifier, tiny_cnn
            >>> rs = PyTorchRandomizedSmoothing.from_classifier(art_classifier(tiny_cnn()), 0.5, sample_size=16)
            >>> rs.scale, rs.sample_size, rs.get_params()["alpha"]
            (0.5, 16, 0.001)
        """
        _art.check_pytorch_classifier(classifier)
        defaults = cls._method_defaults()
        _art.refuse_unknown_kwargs(method_params, tuple(defaults), f"{cls.__name__}.from_classifier")
        method = {**defaults, **method_params}
        obj = cls.__new__(cls)
        obj._check_method_params(method)
        scale, sample_size, alpha = obj._check_smoothing(scale, sample_size, alpha, units="noise_space")
        _check_seed(seed, generator)
        obj._build(classifier, scale, sample_size=sample_size, alpha=alpha, n0=n0, batch_size=batch_size,
                   noise_space=noise_space, output=output, seed=seed, generator=generator, method=method)
        return obj

    @classmethod
    def _method_defaults(cls) -> dict[str, Any]:
        parameters = inspect.signature(cls.__init__).parameters
        return {name: parameters[name].default for name in cls.method_params}

    @staticmethod
    def _check_smoothing(scale: object, sample_size: object, alpha: object,
                         units: str = "pixels") -> tuple[float, int, float]:
        sigma = check_scale(scale) if units == "pixels" else validation.check_sigma(scale)  # type: ignore[arg-type]
        return sigma, validation.check_positive_int(sample_size, "sample_size"), validation.check_alpha(alpha)  # type: ignore[arg-type]

    def _check_method_params(self, params: dict[str, Any]) -> None:
        """Subclasses check their own arguments (ValueError / TypeError naming the bad value)."""

    def _build(self, classifier: PyTorchClassifier, scale: float, *, sample_size: int, alpha: float, n0: int | None,
               batch_size: int, noise_space: NoiseSpace | None, output: str, seed: int | None,
               generator: torch.Generator | None, method: dict[str, Any]) -> None:
        if output not in PREDICT_OUTPUTS:
            raise ValueError(f"output must be one of {PREDICT_OUTPUTS}, got {output!r}")
        if n0 is not None:
            validation.check_positive_int(n0, "n0")
        if len(tuple(classifier.input_shape)) != 3:
            raise ValueError(f"input_shape is {tuple(classifier.input_shape)}; art_ext's randomized smoothing samples "
                             "image batches: expected one image's shape, (C, H, W) with channels_first=True or "
                             "(H, W, C) with channels_first=False")
        device = _art.estimator_device(classifier)
        if generator is not None and generator.device.type != device.type:
            raise ValueError(f"generator is on device {generator.device}, but the model runs on {device}; they must "
                             "match")
        soft_output = DEFAULT_OUTPUT if output == "votes" else output
        model = smoothed_forward(
            classifier, scale, mode="soft", num_samples=sample_size, weights=None, soft_average="probabilities",
            batch_size=batch_size, noise_space=noise_space, output=soft_output, seed=seed,
        )
        if generator is not None:
            model.smoothed.generator = generator
        CheckedPyTorchClassifier.__init__(self, classifier, model, loss=loss_for(soft_output))
        self.smoothed: SmoothedInference = model.smoothed
        self.view: _art.ARTModelView = model.smoothed.base  # type: ignore[assignment]  # the base f (predict-time pipeline)
        self.seed = seed
        self._predict_output = output
        self._alpha = alpha
        self._n0 = n0
        for name, value in method.items():
            setattr(self, name, value)
        self._method_ready = True

    # -- ART's parameters -----------------------------------------------------------------------------------------
    @property
    def scale(self) -> float:
        """Noise standard deviation sigma (pixel units unless ``noise_space`` says otherwise); settable."""
        return self.smoothed.sigma

    @scale.setter
    def scale(self, value: float) -> None:
        sigma = check_scale(value)
        self.smoothed.config = dataclasses.replace(self.smoothed.config, sigma=sigma)

    @property
    def sample_size(self) -> int:
        """Draws of ``predict``, default selection draws of ``certify``, M of the soft forward; settable."""
        return self.smoothed.num_samples

    @sample_size.setter
    def sample_size(self, value: int) -> None:
        count = validation.check_positive_int(value, "sample_size")
        self.smoothed.config = dataclasses.replace(self.smoothed.config, num_samples=count)

    @property
    def alpha(self) -> float:
        """Failure probability of ``predict`` and ``certify``; settable."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = validation.check_alpha(value)

    @property
    def sigma(self) -> float:
        return self.smoothed.sigma

    @property
    def num_samples(self) -> int:
        return self.smoothed.num_samples

    @property
    def n0(self) -> int:
        """``certify``'s default selection draws: ``sample_size`` (ART) unless ``from_classifier`` set one."""
        return self.sample_size if self._n0 is None else self._n0

    @property
    def noise_space(self) -> NoiseSpace:
        return self.smoothed.config.noise_space

    @property
    def output(self) -> str:
        """What ``predict`` returns: ``"votes"`` (ART), ``"log_probabilities"`` or ``"probabilities"``."""
        return self._predict_output

    @property
    def generator(self) -> torch.Generator | None:
        """The classifier's generator (``None``: torch's default generator)."""
        return self.smoothed.generator

    def get_params(self) -> dict[str, Any]:
        """ART's ``get_params``: the base classifier's constructor values (``model`` is the user's network, not the
        smoothed forward), then ``sample_size``, ``scale``, ``alpha`` and the method's own parameters."""
        params = {key: getattr(self.estimator, key) for key in PyTorchClassifier.estimator_params}
        params.update({key: getattr(self, key) for key in self.estimator_params if key not in params})
        return params

    def set_params(self, **kwargs: Any) -> None:
        """Set ``sample_size``, ``scale``, ``alpha`` or the method's parameters (checked); the base classifier's
        parameters are refused (build a new classifier instead)."""
        settable = ("sample_size", "scale", "alpha", *self.method_params)
        _art.refuse_unknown_kwargs(kwargs, settable, f"{type(self).__name__}.set_params")
        method = {name: kwargs.get(name, getattr(self, name)) for name in self.method_params}
        self._check_method_params(method)
        for key in ("scale", "sample_size", "alpha"):
            if key in kwargs:
                setattr(self, key, kwargs[key])
        for name, value in method.items():
            setattr(self, name, value)

    def loss_gradient(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, training_mode: bool = False,
                      **kwargs: Any) -> np.ndarray | torch.Tensor:
        """Gradient of the loss w.r.t. ``x``: of the soft smoothed classifier (-log of the mean softmax over
        ``sample_size`` noisy passes; ART's ``sampling=True``) by default and with ``sampling=True``; of the
        noise-free base with ``sampling=False`` (ART's default, here on request). Same shape and type as ``x``."""
        sampling = kwargs.pop("sampling", None)
        if sampling is not None and not isinstance(sampling, bool):
            raise TypeError(f"sampling must be a bool or None, got {sampling!r}")
        if sampling is False:
            self._check_call("loss_gradient", training_mode, kwargs)
            x_t = self._attack_inputs(x)  # the form is checked; ART's base classifier computes the gradient
            labels = self._labels(y, x_t.shape[0]).cpu().numpy()
            one_hot = np.eye(self.nb_classes, dtype=np.float32)[labels]  # ART's loss_gradient fails on index labels
            grad = self.estimator.loss_gradient(_art.to_numpy(x_t), one_hot)
            return self._like(torch.as_tensor(grad), x)
        return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)

    # -- ART's fit -----------------------------------------------------------------------------------------------
    def _training_method(self) -> Any:
        """The certified-training config ``fit`` runs (``art_ext.training.certified``); subclasses override."""
        from art_ext.training.certified import GaussianAugmentation

        return GaussianAugmentation(sigma=self.scale)

    #: whether ``fit``'s objective uses the constructor's ``loss`` (ART: Gaussian augmentation and SmoothAdv do;
    #: MACER and SmoothMix have fixed losses and ignore it)
    _fit_uses_loss: ClassVar[bool] = True

    def fit(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, training_mode: bool = True,
        drop_last: bool = False, scheduler: Any = None, verbose: bool = False, **kwargs: Any,
    ) -> None:
        """ART's ``fit``: train the base model with ``optimizer`` by the class's certified-training method.

        Noise is drawn in [0, 1] pixel space and added *before* the preprocessing defences and ``preprocessing``,
        as in ``predict`` and ``certify`` (ART adds it after ``preprocessing`` in ``fit``), from the classifier's
        generator: the same seed and initial weights give the same trained weights on one device.

        Args:
            x: Training images [N, *input_shape] in [0, 1]. y: Labels, indices [N] or one-hot [N, nb_classes].
            batch_size: Images per loader batch (the multi-noise methods take one optimizer step per chunk of
                ``batch_size / num_noise_vec`` images, as their reference code and ART do).
            nb_epochs: Epochs (>= 0; 0 trains nothing, as in ART).
            training_mode: ``True``: the model trains in train mode (BatchNorm batch statistics, dropout);
                ``False``: in eval mode, as ART's ``model.train(mode=False)``.
            drop_last: Drop each epoch's last incomplete batch (a fresh random subset of
                floor(N / batch_size) * batch_size images per epoch).
            scheduler: Learning-rate scheduler, ``scheduler.step()`` after each epoch (ART's code).
            verbose: A progress bar over the epochs.
        Raises:
            ValueError / TypeError: before any training, on bad images or labels, an unknown keyword (ART ignores
                them), no optimizer, a loss the method cannot use, or a ``NormalizedNoise`` classifier.
        """
        from tqdm.auto import trange

        from art_ext.training.certified import train_certified_epochs

        where = f"{type(self).__name__}.fit"
        _art.refuse_unknown_kwargs(kwargs, (), where)
        validation.check_positive_int(batch_size, "batch_size")
        epochs = check_number(nb_epochs, "nb_epochs", integer=True)
        for name, flag in (("training_mode", training_mode), ("drop_last", drop_last), ("verbose", verbose)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        optimizer = self.estimator.optimizer
        if optimizer is None:
            raise ValueError(f"{where} needs an optimizer: pass optimizer=torch.optim.SGD(model.parameters(), ...) to "
                             "the constructor (or to the wrapped classifier)")
        if self._fit_uses_loss:
            _check_cross_entropy(self.estimator.loss, where)
        if not self.noise_space.is_pixel:
            raise ValueError(f"{where} trains with pixel-space noise, but this classifier certifies "
                             f"noise_space={self.noise_space}; build it with noise_space=None to train it")
        method = self._training_method()  # checks the method's parameters once more
        x_t = self._inputs(x)
        labels = self._labels(y, x_t.shape[0])
        model = self.view if training_mode else _EvalLocked(self.view)
        keep = x_t.shape[0] - x_t.shape[0] % batch_size if drop_last else x_t.shape[0]
        if keep == 0:
            raise ValueError(f"drop_last=True with batch_size={batch_size} > {x_t.shape[0]} images leaves no batch")
        for epoch in trange(epochs, disable=not verbose, desc=where):
            if keep < x_t.shape[0]:  # a random subset that fills whole batches; the trainer shuffles it again
                chosen = torch.randperm(x_t.shape[0], generator=self.generator, device=x_t.device)[:keep]
                images, targets = x_t[chosen], labels[chosen]
            else:
                images, targets = x_t, labels
            train_certified_epochs(model, images, targets, method, optimizer=optimizer, batch_size=batch_size,
                                   nb_epochs=1, generator=self.generator, scheduler=scheduler, start_epoch=epoch)

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs: Any) -> None:
        """Refused: ART's version trains without smoothing noise; load the data and call ``fit(x, y)``."""
        raise NotImplementedError(f"{type(self).__name__}.fit_generator is not supported (ART's trains without the "
                                  "smoothing noise): load the data as arrays and call fit(x, y, ...)")

    # -- ART's predict and certify --------------------------------------------------------------------------------
    def predict(self, x: np.ndarray, batch_size: int = 128, verbose: bool = False,  # type: ignore[override]
                **kwargs: Any) -> np.ndarray:
        """ART's ``predict``: Cohen's PREDICT as float64 rows [N, K] (``output="votes"``), or the soft smoothed
        scores (float32) for the other outputs.

        PREDICT counts ``sample_size`` draws per image; the row is one-hot at the top class when the two-sided
        binomial test of the top two counts has p-value <= ``alpha``, else all zero (``is_abstain=True``, ART's
        default) or one-hot anyway (``is_abstain=False``). ``batch_size``: noisy samples per forward pass.
        ``verbose`` is accepted and shows nothing (one batched call, no per-image loop). Values of ``x`` are not
        range-checked (ART's attacks query their own iterates): a row with a NaN or infinite value gives a NaN row,
        as ART's ``PyTorchClassifier`` returns for it (an all-zero row would read as an abstention, and
        SquareAttack(norm=2) would accept its NaN candidate as a success), other values are clipped to [0, 1]
        first, as for the soft scores.
        """
        if not isinstance(verbose, bool):
            raise TypeError(f"verbose must be a bool, got {verbose!r}")
        if self._predict_output != "votes":
            _art.refuse_unknown_kwargs(kwargs, ("training_mode", "logits"), "predict")
            return super().predict(x, batch_size=batch_size, **kwargs)
        is_abstain = kwargs.pop("is_abstain", True)
        if not isinstance(is_abstain, bool):
            raise ValueError(f"is_abstain must be a bool, got {is_abstain!r}")
        self._check_call("predict", bool(kwargs.pop("training_mode", False)), kwargs, known=("logits",))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int (noisy samples per forward pass), got {batch_size!r}")
        x_t = self._attack_inputs(x)
        keys = NoiseKeys.draw(self.generator, x_t.shape[0], self.device)  # one draw per call
        finite = torch.isfinite(x_t).flatten(1).all(dim=1)  # [N]
        rows = finite.nonzero().flatten()
        out = torch.zeros((x_t.shape[0], self.nb_classes), dtype=torch.float64)  # [N, K]
        out[~finite.cpu()] = float("nan")  # not run: NaN scores, as the model would give them
        if rows.numel() == 0:
            return out.numpy()
        with eval_mode(self.model), torch.no_grad():
            counts = sample_counts(
                self.view, x_t[rows].clamp(0.0, 1.0), n=self.sample_size, sigma=self.sigma,
                num_classes=self.nb_classes, batch_size=int(batch_size), keys=keys[rows],
                noise_space=self.noise_space,
            )  # [R, K]
        top2 = counts.topk(2, dim=1).values  # [R, 2], n_A >= n_B
        decided = stats.binomial_test_pvalues(top2[:, 0], top2[:, 1]).cpu() <= self.alpha  # [R]
        if not is_abstain:
            decided = torch.ones_like(decided)
        winners = counts.argmax(dim=1).cpu()  # first maximum on ties, as ART's np.argmax
        chosen = rows.cpu()[decided]
        out[chosen, winners[decided]] = 1.0
        return out.numpy()

    def certificates(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, n0: int | None = None, alpha: float | None = None,
        seed: int | None = None,
    ) -> Certificates:
        """Cohen et al. CERTIFY as full ``Certificates`` (torch tensors): ``n`` estimation draws, ``n0`` selection
        draws (default ``self.n0``), ``alpha`` (default ``self.alpha``), ``batch_size`` noisy samples per forward
        pass; noise from ``seed`` when given, else from the classifier's generator. Eval mode, flags restored."""
        x_t = self._inputs(x)
        generator = self.generator if seed is None else _art.generator_for(seed, self.device)
        with eval_mode(self.model), torch.no_grad():
            return certify(
                self.view, x_t, n0=self.n0 if n0 is None else n0, n=n, sigma=self.sigma,
                alpha=self.alpha if alpha is None else alpha, num_classes=self.nb_classes, batch_size=batch_size,
                generator=generator, noise_space=self.noise_space,
            )

    def certify(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, n0: int | None = None, alpha: float | None = None,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """ART's ``certify(x, n, batch_size=32)``: ``(labels int64 [N], -1 = abstain; radii float64 [N], pixel
        units)``. With probability >= 1 - alpha per image, g is constant (= label) on the L2 ball of the radius."""
        certs = self.certificates(x, n, batch_size, n0=n0, alpha=alpha, seed=seed)
        return _art.to_numpy(certs.label), _art.to_numpy(certs.radius)

    def predict_labels(
        self, x: np.ndarray, n: int, batch_size: int = 32, *, alpha: float | None = None, seed: int | None = None,
    ) -> np.ndarray:
        """Cohen et al. PREDICT: int64 labels [N], ``-1`` where the two-sided binomial test (level ``alpha``,
        default ``self.alpha``) of the top two counts over ``n`` draws cannot decide."""
        x_t = self._inputs(x)
        generator = self.generator if seed is None else _art.generator_for(seed, self.device)
        with eval_mode(self.model), torch.no_grad():
            labels = predict(
                self.view, x_t, n=n, sigma=self.sigma, alpha=self.alpha if alpha is None else alpha,
                num_classes=self.nb_classes, batch_size=batch_size, generator=generator, noise_space=self.noise_space,
            )
        return _art.to_numpy(labels)


class _EvalLocked(nn.Module):
    """``fit(training_mode=False)``: the model stays in eval mode while the trainer calls ``train()`` on this
    wrapper (ART's ``model.train(mode=False)`` before its loop); flags restored by the trainer."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True) -> _EvalLocked:
        self.training = mode
        self.inner.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def _check_cross_entropy(loss: object, where: str) -> None:
    """Gaussian augmentation and SmoothAdv train with the cross-entropy of their papers; ART calls the user's loss
    there, so a different loss is refused rather than silently replaced."""
    plain = (isinstance(loss, nn.CrossEntropyLoss) and loss.weight is None and loss.label_smoothing == 0.0
             and loss.reduction == "mean")
    if not plain:
        raise ValueError(f"{where} trains with the cross-entropy of its paper; got loss={loss!r}: pass "
                         "torch.nn.CrossEntropyLoss() (no weight, no label smoothing, reduction='mean')")


def _check_seed(seed: object, generator: object) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")


def RandomizedSmoothingClassifier(  # noqa: N802 (art_ext's earlier class name, kept as a constructor)
    estimator: PyTorchClassifier, sigma: float, *, num_samples: int = 8, batch_size: int = DEFAULT_FORWARD_BATCH,
    noise_space: NoiseSpace | None = None, output: str = DEFAULT_OUTPUT, seed: int | None = None,
) -> PyTorchRandomizedSmoothing:
    """Randomized smoothing of an ART ``PyTorchClassifier`` with art_ext's earlier defaults: a
    ``PyTorchRandomizedSmoothing`` whose ``predict`` returns the soft smoothed scores.

    Equal to ``PyTorchRandomizedSmoothing.from_classifier(estimator, sigma, sample_size=num_samples, n0=100,
    batch_size=batch_size, noise_space=noise_space, output=output, seed=seed)``:

    * ``predict``: log of 1/M sum_i softmax(f(x + eta_i)) over M = ``num_samples`` draws (``output=
      "log_probabilities"``; ART's APGD / AutoAttack refuse probability outputs), or the probabilities; the
      differentiable surrogate of g that SmoothAdv attacks (Salman et al., 2019); its argmax estimates g.
    * ``certify(x, n, batch_size=32, *, n0=100, alpha=0.001, seed=None)``: Cohen's CERTIFY with ART's positional
      signature; ``predict_labels(x, n, batch_size=32, *, alpha=0.001, seed=None)``: Cohen's PREDICT, -1 where the
      binomial test cannot decide.
    * ``loss_gradient`` / ``class_gradient``: expectation-over-noise gradients through all M passes.

    Args:
        estimator: ART ``PyTorchClassifier`` on [0, 1] inputs (``clip_values`` None or (0, 1)), no postprocessing.
        sigma: Noise standard deviation (> 0) in the units of ``noise_space`` (pixels by default).
        num_samples: M, noisy passes of ``predict`` and of each gradient (>= 1).
        batch_size: Noisy samples per forward pass of the smoothed forward.
        noise_space: ``None`` (pixel noise) or ``NormalizedNoise(mean, std)``; radii are reported in pixel units.
        output: ``"log_probabilities"`` (default) or ``"probabilities"``.
        seed: Seed of the classifier's generator (``predict``, gradients, and ``certify`` without its own seed).

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
        Cohen, Rosenfeld & Kolter, arXiv:1902.02918v2. Salman et al., "Provably Robust Deep Learning via
        Adversarially Trained Smoothed Classifiers", arXiv:1906.04584v5.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return PyTorchRandomizedSmoothing.from_classifier(
        estimator, sigma, sample_size=num_samples, n0=100, batch_size=batch_size, noise_space=noise_space,
        output=output, seed=seed,
    )
