"""The shared base of art_ext's ART classifiers: one checked entry point per ART method, a fixed-function model.

ART's ``PyTorchClassifier`` does almost everything an art_ext classifier needs once its ``model`` is the right torch
module (the smoothed forward, or the deployed model with the wrapped estimator's preprocessing as layers). What it
does not do, and this base adds:

* one input check at every entry point (``_art.input_to_tensor``: dtype, NaN/inf, shape == ``input_shape`` with a
  channel-order hint, values inside ``clip_values`` and [0, 1]); ART reads whatever it is given and broadcasts;
* one cast there: numpy (or tensor) images of any floating dtype (float16, float32, float64; bfloat16 tensors) are
  converted once to the dtype of the wrapped model's parameters (float32 for a parameter-free model), so a float64
  array never reaches a float32 model; ``predict`` returns float32, gradients come back in the caller's dtype;
* noise keyed per image per call: a smoothed classifier draws one ``NoiseKeys`` key per image of a public call
  (one draw of its generator) and hands each batch its images' keys, so ``predict(batch_size=...)`` and the other
  images of the call do not change an image's noise (DESIGN.md convention 6);
* labels read as ART reads them (``_art.labels_to_indices``: indices [N], a column [N, 1], one-hot [N, K]), where
  ART's own ``loss_gradient`` fails on index labels;
* the model run as a fixed function: eval mode for the call, every submodule's train/eval flag restored afterwards
  (ART switches the whole model to eval and leaves it there); ``training_mode=True`` is refused, since a base with
  batch statistics is not a fixed function;
* gradients with respect to the input only (``torch.autograd.grad``), never accumulated into the model's parameters;
* the keywords ART's attacks pass accepted (``predict(logits=True)`` from Carlini-Wagner: the outputs are already
  logits-like, and ART's ``PyTorchClassifier`` ignores the flag too), other unknown keywords refused (ART ignores
  them);
* the values of ART's own intermediate iterates handled as ART's ``PyTorchClassifier`` handles them (see
  ``_attack_inputs``): the methods ART's attacks call (``predict``, ``loss_gradient``, ``class_gradient``,
  ``compute_loss``) check the form of ``x`` (type, dtype, shape) but not its values, while the user-facing entry
  points (``certify``, ``certificates``, ``predict_labels``, ``fit``) keep the full check.

This module is private: the public classes are ``SmoothedInferenceClassifier``, ``RandomizedSmoothingClassifier``
and ``CertificationThroughAdaptationClassifier``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext import _art
from art_ext.ops.modes import eval_mode
from art_ext.smoothing.inference import SmoothedInference
from art_ext.smoothing.keys import NoiseKeys

#: What the smoothed classifiers' ``predict`` returns: log of the smoothed class probabilities (the default: a
#: PyTorchClassifier's model outputs logits, and log-probabilities are logits of the smoothed classifier, since
#: softmax(log p) = p; ART's APGD and AutoAttack refuse probability outputs) or the probabilities themselves.
OUTPUTS = ("log_probabilities", "probabilities")
DEFAULT_OUTPUT = "log_probabilities"


class ScoresNLLLoss(nn.NLLLoss):
    """Negative log-likelihood of *probabilities*: NLL(log(p), y) = -log p_y (no clamping: p_y = 0 gives inf).

    The loss of ``output="probabilities"``; with ``output="log_probabilities"`` the loss is ``nn.NLLLoss`` on the
    outputs, the same value. On the soft mode it is -log(1/M sum_i softmax(f(x + eta_i))_y), the SmoothAdv
    objective (Salman et al., 2019, arXiv:1906.04584v5, Eq. S1). Subclassing ``nn.NLLLoss`` makes ART read labels
    for it as class indices.
    """

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        return F.nll_loss(input.log(), target, weight=self.weight, reduction=self.reduction)


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return output


def loss_for(output: str) -> nn.Module:
    """The loss whose value is -log p_y of the smoothed probabilities, for either output."""
    return nn.NLLLoss() if check_output(output) == "log_probabilities" else ScoresNLLLoss()


class SmoothedScores(nn.Module):
    """The smoothed forward as an ART model: ``SmoothedInference`` scores [B, K], or their log (``output``).

    This module is what the smoothed classifiers hand to ART as ``model``: ART attacks that rebuild an estimator
    from ``estimator.model`` (APGD with ``loss_type`` set) attack the smoothed classifier, not its base.
    """

    def __init__(self, smoothed: SmoothedInference, output: str) -> None:
        super().__init__()
        self.smoothed = smoothed
        self.output = check_output(output)

    def forward(self, x: torch.Tensor, keys: NoiseKeys | None = None) -> torch.Tensor:
        """Scores (or their log) [B, K]; ``keys``: one noise key per image (``None``: fresh keys from the smoothed
        forward's generator, one draw per call, which is what ART attacks that call the model directly get)."""
        scores = self.smoothed(x) if keys is None else self.smoothed.scores(x, keys=keys)  # [B, K], rows sum to 1
        return scores.log() if self.output == "log_probabilities" else scores


def wrappers_in_eval(*modules: nn.Module) -> None:
    """Mark art_ext's own wrapper modules as eval without touching the modules they hold (the user's model keeps
    its flags; every call runs it in eval mode and restores them)."""
    for module in modules:
        module.training = False
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                child.training = False


def check_wrapped(estimator: object) -> None:
    """The estimator art_ext can wrap: an ART ``PyTorchClassifier`` on [0, 1] pixels without postprocessing, whose
    preprocessing defences accept it (``check_estimator`` of art_ext's denoiser preprocessors, run when wrapped)."""
    _art.check_pytorch_classifier(estimator)
    _art.check_pixel_clip_values(estimator)
    post = [type(op).__name__ for op in (getattr(estimator, "postprocessing_defences", None) or [])]
    if post:
        raise ValueError(
            f"the estimator has postprocessing_defences {post}; art_ext's classifiers take their outputs from the "
            "torch model (to sample and differentiate it), so ART's numpy postprocessing would be skipped: wrap an "
            "estimator without postprocessing defences"
        )
    for op in getattr(estimator, "preprocessing_defences", None) or []:
        check = getattr(op, "check_estimator", None)  # art_ext's preprocessors: channel order, count, normalization
        if callable(check):
            check(estimator)


def _class_labels(label: object, num_examples: int, nb_classes: int) -> list[int] | np.ndarray | None:
    """``class_gradient``'s ``label`` as ART reads it: None (all classes), one int, or one int per example."""
    if label is None:
        return None
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= int(label) < nb_classes:
            raise ValueError(f"label {label} is out of range; expected an int in [0, {nb_classes})")
        return [int(label)]
    array = np.asarray(label)
    if array.ndim != 1 or array.shape[0] != num_examples or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"label has shape {array.shape} and dtype {array.dtype}; expected None, an int, or integer class indices "
            f"of shape [{num_examples}] (one per input)"
        )
    if array.min() < 0 or array.max() >= nb_classes:
        raise ValueError(f"label holds classes in [{array.min()}, {array.max()}]; expected [0, {nb_classes})")
    return array.astype(np.int64)


def _nan_rows(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad`` [N, ...] with NaN wherever the row of ``x`` [N, ...] holds a NaN or infinite value (a smoothed model
    gives such rows a NaN output without running; autograd would report a zero gradient)."""
    bad = ~torch.isfinite(x.detach()).flatten(1).all(dim=1)  # [N]
    if not bool(bad.any()):
        return grad
    return grad.masked_fill(bad.view(-1, *([1] * (grad.dim() - 1))), float("nan"))


class CheckedPyTorchClassifier(PyTorchClassifier):
    """An ART ``PyTorchClassifier`` over an art_ext torch module, with checked entry points (see the module doc).

    Not public; subclasses build ``model`` and call ``super().__init__``. The new classifier takes ``input_shape``,
    ``nb_classes`` and ``channels_first`` from the wrapped estimator, ``preprocessing=None`` (the wrapped
    estimator's preprocessing is inside ``model``) and ``clip_values=(0, 1)``: art_ext's sigma and radii are in
    pixel units, and declaring the range keeps ART's attacks inside it even when the wrapped estimator declared
    none.
    """

    def __init__(self, estimator: Any, model: nn.Module, *, loss: nn.Module) -> None:
        check_wrapped(estimator)
        device = _art.estimator_device(estimator)
        super().__init__(
            model=model, loss=loss, input_shape=tuple(estimator.input_shape), nb_classes=int(estimator.nb_classes),
            channels_first=bool(estimator.channels_first), clip_values=(0.0, 1.0), preprocessing=None,
            device_type="gpu" if device.type == "cuda" else "cpu",
        )
        self.estimator = estimator
        self._dtype = _art.model_dtype(model)  # what every input is cast to, once (float32 without parameters)

    # -- the one input path ----------------------------------------------------------------------------------
    def _inputs(self, x: object, name: str = "x") -> torch.Tensor:
        """Tensor [N, *input_shape] on the device in the wrapped model's dtype (float32 unless its parameters are
        another float type; any floating input dtype is cast once here); the only numpy -> torch crossing."""
        return _art.input_to_tensor(self, x, name=name, device=self.device, pixel_range=True, dtype=self._dtype)

    def _attack_inputs(self, x: object) -> torch.Tensor:
        """``x`` for the methods ART's attacks call on their own iterates: the form is checked (type, dtype, shape),
        the values are not, as in ART's ``PyTorchClassifier`` (which range-checks nothing and runs NaN through the
        model). NewtonFool steps a little outside [0, 1] and SquareAttack(norm=2) / AutoAttack query NaN rows
        before their own clipping; refusing those calls would end the attack. ``_run_call`` says what such values
        give."""
        return _art.input_to_tensor(self, x, device=self.device, dtype=self._dtype, values=False)

    def _labels(self, y: object, num_examples: int) -> torch.Tensor:
        return _art.labels_to_indices(y, num_examples=num_examples, nb_classes=self.nb_classes, device=self.device)

    @staticmethod
    def _check_call(where: str, training_mode: bool, kwargs: dict[str, Any], known: tuple[str, ...] = ()) -> None:
        _art.refuse_unknown_kwargs(kwargs, known, where)
        if training_mode:
            raise ValueError(
                f"{where}(training_mode=True) is refused: art_ext's classifiers run their model as a fixed function "
                "(eval mode; train-mode BatchNorm or dropout would make the output depend on the batch and update "
                "running statistics)"
            )

    def _noise_keys(self, num_images: int) -> NoiseKeys | None:
        """The noise keys of one public call: one per image from one draw of the smoothed forward's generator, or
        ``None`` for a model without noise."""
        if not isinstance(self.model, SmoothedScores):
            return None
        return NoiseKeys.draw(self.model.smoothed.generator, num_images, self.device)

    def _run(self, x: torch.Tensor, keys: NoiseKeys | None = None) -> torch.Tensor:
        """The model's outputs [N, K] for checked inputs, in eval mode, flags restored afterwards; ``keys``: the
        noise keys of these images (smoothed models only)."""
        with eval_mode(self.model):
            return self.model(x) if keys is None else self.model(x, keys=keys)

    def _run_call(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The outputs [N, K] of one public call: the call's keys drawn once for all N images, then the model run on
        batches of ``batch_size`` images (``None``: all at once), each batch with its images' keys, so the outputs
        do not depend on ``batch_size``.

        Values outside the checked domain (only from ``_attack_inputs``): a model without noise runs on them as
        they are, NaN included, as ART's ``PyTorchClassifier`` runs its model. The smoothing core is defined on
        [0, 1] and refuses anything else, so for a smoothed model a row with a NaN or infinite value gives a NaN
        row without reaching the core, and finite values are clipped to [0, 1]: the smoothed classifier is
        evaluated at the nearest image of its domain (the clip is the identity, with identity gradient, on [0, 1]
        bounds included; its gradient is 0 along a coordinate outside it)."""
        keys = self._noise_keys(x.shape[0])
        if keys is None:
            return self._run_batches(x, None, batch_size)
        finite = torch.isfinite(x.detach()).flatten(1).all(dim=1)  # [N]
        # the core's domain; NaN stays NaN (those rows are not run). Not ``x.clamp``: torch gives clamp a zero
        # gradient *at* the bounds, and [0, 1] images sit on them
        x = torch.where((x < 0.0) | (x > 1.0), x.clamp(0.0, 1.0), x)
        if bool(finite.all()):
            return self._run_batches(x, keys, batch_size)
        out = torch.full((x.shape[0], self.nb_classes), float("nan"), dtype=x.dtype, device=x.device)  # [N, K]
        rows = finite.nonzero().flatten()
        if rows.numel() == 0:
            return out
        return out.index_put((rows,), self._run_batches(x[rows], keys[rows], batch_size))

    def _run_batches(self, x: torch.Tensor, keys: NoiseKeys | None, batch_size: int | None) -> torch.Tensor:
        step = x.shape[0] if batch_size is None else int(batch_size)
        outs = [
            self._run(x[start : start + step], None if keys is None else keys[start : start + step])
            for start in range(0, x.shape[0], step)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @staticmethod
    def _like(t: torch.Tensor, x: object) -> np.ndarray | torch.Tensor:
        """Return a tensor for tensor input (ART's PyTorch attacks pass tensors), numpy for numpy input, in the
        caller's floating dtype (the model may have computed in another)."""
        dtype = getattr(x, "dtype", None)
        if isinstance(x, torch.Tensor):
            return t.detach().to(x.dtype) if t.is_floating_point() and x.is_floating_point() else t.detach()
        out = _art.to_numpy(t)
        if out.dtype.kind == "f" and dtype is not None and np.dtype(dtype).kind == "f":
            out = out.astype(dtype, copy=False)
        return out

    # -- ART's classifier methods -----------------------------------------------------------------------------
    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs: Any) -> np.ndarray:
        """Model outputs float32 [N, K] (see the subclass for what they are); ``batch_size`` images per model call.

        ``logits`` (passed by ART's ``CarliniL2Method``) is accepted and changes nothing, as in ART's
        ``PyTorchClassifier``, which always returns its model's outputs. Values of ``x`` are not checked (ART's
        attacks query their own iterates): see ``_run_call`` for out-of-range and NaN rows."""
        self._check_call("predict", training_mode, kwargs, known=("logits",))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int (images per model call), got {batch_size!r}")
        x_t = self._attack_inputs(x)
        with torch.no_grad():
            out = self._run_call(x_t, int(batch_size))  # [N, K], the call's noise keys drawn once for all N
        return _art.to_numpy(out).astype(np.float32)  # the only torch -> numpy

    def loss_gradient(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, training_mode: bool = False,
                      **kwargs: Any) -> np.ndarray | torch.Tensor:
        """Gradient of the classifier's loss (mean over the batch, as ART's losses reduce) w.r.t. ``x``, same shape
        and type as ``x`` (tensor in, tensor out). ``y``: indices [N], a column [N, 1] or one-hot [N, K]."""
        self._check_call("loss_gradient", training_mode, kwargs)
        x_t = self._attack_inputs(x).detach().requires_grad_(True)
        labels = self._labels(y, x_t.shape[0])
        out = self._run_call(x_t)  # EOT noise keyed per image
        if not out.requires_grad:  # every row NaN: nothing reached the model
            return self._like(torch.full_like(x_t, float("nan")), x)
        (grad,) = torch.autograd.grad(self._loss(out, labels), x_t)  # input gradient only; parameters untouched
        return self._like(_nan_rows(grad, x_t), x)

    def class_gradient(self, x: np.ndarray | torch.Tensor, label: int | list[int] | np.ndarray | None = None,
                       training_mode: bool = False, **kwargs: Any) -> np.ndarray | torch.Tensor:
        """Gradients of the model outputs w.r.t. ``x`` from one forward pass (one set of noise draws):
        [N, K, *input_shape] for ``label=None``, [N, 1, *input_shape] for an int or one class per example."""
        self._check_call("class_gradient", training_mode, kwargs)
        x_t = self._attack_inputs(x).detach().requires_grad_(True)
        classes = _class_labels(label, x_t.shape[0], self.nb_classes)
        out = self._run_call(x_t)  # [N, K], one set of noise draws keyed per image
        if not out.requires_grad:  # every row NaN: nothing reached the model
            width = self.nb_classes if classes is None else 1
            return self._like(torch.full((x_t.shape[0], width, *x_t.shape[1:]), float("nan"), dtype=x_t.dtype,
                                         device=x_t.device), x)
        wanted = list(range(out.shape[1])) if classes is None else sorted({int(c) for c in classes})
        grads = {}
        for i, c in enumerate(wanted):
            (grads[c],) = torch.autograd.grad(out[:, c].sum(), x_t, retain_graph=i < len(wanted) - 1)  # [N, ...]
        if classes is None:
            result = torch.stack([grads[c] for c in wanted], dim=1)  # [N, K, ...]
        elif len(classes) == 1 and not isinstance(classes, np.ndarray):
            result = grads[classes[0]].unsqueeze(1)  # [N, 1, ...]
        else:
            rows = torch.arange(x_t.shape[0], device=x_t.device)
            stacked = torch.stack([grads[c] for c in wanted], dim=1)  # [N, U, ...]
            pick = torch.as_tensor([wanted.index(int(c)) for c in classes], device=x_t.device)
            result = stacked[rows, pick].unsqueeze(1)  # [N, 1, ...]
        return self._like(_nan_rows(result, x_t), x)

    def compute_loss(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, reduction: str = "none",
                     **kwargs: Any) -> np.ndarray | torch.Tensor:
        """The classifier's loss per example (``reduction="none"``), or its ``"mean"`` / ``"sum"``."""
        self._check_call("compute_loss", False, kwargs)
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        x_t = self._attack_inputs(x)
        labels = self._labels(y, x_t.shape[0])
        with torch.no_grad():
            out = self._run_call(x_t)
            previous = self._loss.reduction
            self._loss.reduction = reduction
            try:
                loss = self._loss(out, labels)
            finally:
                self._loss.reduction = previous
        return self._like(loss, x)

    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs: Any) -> None:
        """Refused: train the wrapped estimator's model (e.g. with Gaussian noise augmentation, ``art_ext.training``)
        and wrap it again; this classifier's model is a fixed function of its input."""
        raise NotImplementedError(
            f"{type(self).__name__}.fit is not supported: its model is a fixed function (eval mode, BatchNorm with "
            "running statistics); train the wrapped estimator's model instead (e.g. noise-augmented training in "
            "art_ext.training) and wrap it again"
        )

    def fit_generator(self, generator: Any, nb_epochs: int = 20, **kwargs: Any) -> None:
        """Refused, as ``fit``."""
        self.fit(None, None)  # type: ignore[arg-type]
