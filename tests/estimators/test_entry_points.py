"""Every entry point of the three classifiers checks its input against the estimator before any work: channel count,
spatial size, NaN, range; labels are read as ART reads them; ART's silent options are refused."""

from __future__ import annotations

import numpy as np
import pytest

from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.testing import CallRecorder, art_classifier, tiny_cnn, tiny_images

KINDS = ("smoothed_inference", "randomized_smoothing", "bn_adaptation")


def make(kind: str, *, in_channels: int = 3, size: int = 8, clip_values=(0.0, 1.0)):
    """The classifier of ``kind`` on [in_channels, size, size]; ``calls`` counts the model's forward passes."""
    model = CallRecorder(tiny_cnn(in_channels=in_channels, size=size, batchnorm=True))
    estimator = art_classifier(model.eval(), input_shape=(in_channels, size, size), clip_values=clip_values)
    if kind == "smoothed_inference":
        clf = SmoothedInferenceClassifier(estimator, 0.25, num_samples=4, seed=0)
    elif kind == "randomized_smoothing":
        clf = RandomizedSmoothingClassifier(estimator, 0.25, num_samples=4, seed=0)
    else:
        clean = tiny_images(8, in_channels=in_channels, size=size).numpy()
        clf = CertificationThroughAdaptationClassifier(estimator, clean, sigmas=(0.25,))
    return clf, model


def entry_points(kind: str):
    """(name, call) for every public method that takes images."""
    y = np.array([1, 2])
    points = {
        "predict": lambda c, x: c.predict(x),
        "loss_gradient": lambda c, x: c.loss_gradient(x, y),
        "class_gradient": lambda c, x: c.class_gradient(x, label=3),
        "compute_loss": lambda c, x: c.compute_loss(x, y),
    }
    if kind == "smoothed_inference":
        points["predict_labels"] = lambda c, x: c.predict_labels(x)
    elif kind == "randomized_smoothing":
        points["predict_labels"] = lambda c, x: c.predict_labels(x, 20, 20, seed=0)
        points["certify"] = lambda c, x: c.certify(x, 20, 20, n0=5, seed=0)
        points["certificates"] = lambda c, x: c.certificates(x, 20, 20, n0=5, seed=0)
    else:
        points["predict_labels"] = lambda c, x: c.predict_labels(x)
        points["certify"] = lambda c, x: c.certify(x, 20, 20, sigma=0.25, n0=5, seed=0)
        points["certify_auto_noise"] = lambda c, x: c.certify_auto_noise(x, 20, 20, n_auto=20, n0=5, seed=0)
    return list(points.items())


CASES = [(kind, name, call) for kind in KINDS for name, call in entry_points(kind)]
IDS = [f"{kind}-{name}" for kind, name, _ in CASES]


def good_images(in_channels: int = 3, size: int = 8) -> np.ndarray:
    return tiny_images(2, in_channels=in_channels, size=size).numpy()


@pytest.mark.parametrize("kind, name, call", CASES, ids=IDS)
def test_valid_inputs_are_accepted(kind, name, call) -> None:
    clf, model = make(kind)
    call(clf, good_images())
    assert model.samples > 0


@pytest.mark.parametrize("kind, name, call", CASES, ids=IDS)
def test_a_one_channel_batch_on_a_three_channel_estimator_is_refused_not_broadcast(kind, name, call) -> None:
    clf, model = make(kind, in_channels=3)
    with pytest.raises(ValueError, match=r"shape \(2, 1, 8, 8\).*\[N, 3, 8, 8\]"):
        call(clf, good_images(in_channels=1))
    assert model.samples == 0  # refused before any forward pass


@pytest.mark.parametrize("kind, name, call", CASES, ids=IDS)
def test_28x28_images_on_a_32x32_estimator_are_refused(kind, name, call) -> None:
    clf, model = make(kind, in_channels=1, size=32)
    with pytest.raises(ValueError, match=r"shape \(2, 1, 28, 28\).*\[N, 1, 32, 32\]"):
        call(clf, good_images(in_channels=1, size=28))
    assert model.samples == 0


#: the methods ART's attacks call on their own iterates: form checked, values not (as ART's PyTorchClassifier)
ATTACK_FACING = ("predict", "loss_gradient", "class_gradient", "compute_loss")
USER_CASES = [case for case in CASES if case[1] not in ATTACK_FACING]
USER_IDS = [f"{kind}-{name}" for kind, name, _ in USER_CASES]


@pytest.mark.parametrize("kind, name, call", USER_CASES, ids=USER_IDS)
def test_nan_and_values_outside_the_pixel_range_are_refused(kind, name, call) -> None:
    clf, model = make(kind)
    x = good_images()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        call(clf, x)
    with pytest.raises(ValueError, match="outside the estimator's clip_values"):
        call(clf, good_images() + 0.5)
    assert model.samples == 0


@pytest.mark.parametrize("kind, name, call", CASES, ids=IDS)
def test_the_form_of_x_is_checked_at_every_entry_point(kind, name, call) -> None:
    """Also on the attack-facing methods, which take NaN and out-of-range iterates (test_art_attack_matrix.py)."""
    clf, model = make(kind)
    if name != "predict":  # ART's InputFilter metaclass turns predict's x into np.array(x) before any code of ours
        with pytest.raises(TypeError, match="numpy array"):
            call(clf, good_images().tolist())
    with pytest.raises(ValueError, match="dtype"):
        call(clf, (good_images() > 0.5).astype(np.int64))
    assert model.samples == 0


@pytest.mark.parametrize("kind", KINDS)
def test_unbounded_estimators_get_the_pixel_range(kind) -> None:
    """clip_values=None on the wrapped estimator: the classifier declares (0, 1), so ART attacks stay in it, and
    values outside [0, 1] are still refused by the user-facing entry points (sigma and radii are pixel units)."""
    clf, _ = make(kind, clip_values=None)
    assert tuple(np.ravel(clf.clip_values)) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"outside"):
        clf.predict_labels(good_images() - 0.5, *((20, 20) if kind == "randomized_smoothing" else ()))


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_read_as_art_reads_them(kind) -> None:
    """Indices [N], a column [N, 1] (ART reads it as indices) and one-hot [N, K] give the same gradient; a one-hot
    of the wrong width and out-of-range indices are refused."""
    x, y = good_images(), np.array([1, 7])
    grads = []
    for labels in (y, y[:, None], np.eye(10)[y]):
        clf, _ = make(kind)  # same seed: the same noise draws for each label format
        grads.append(clf.loss_gradient(x, labels))
    # same-kernel: the same noise, kernels and order; the labels only change format
    np.testing.assert_array_equal(grads[0], grads[1])
    # same-kernel: the same noise, kernels and order; the labels only change format
    np.testing.assert_array_equal(grads[0], grads[2])
    clf, model = make(kind)
    with pytest.raises(ValueError, match="nb_classes=10 columns"):
        clf.loss_gradient(x, np.eye(9)[y])
    with pytest.raises(ValueError, match=r"class indices in \[1, 12\]"):
        clf.loss_gradient(x, np.array([1, 12]))
    with pytest.raises(ValueError, match="2 inputs"):
        clf.loss_gradient(x, np.array([1, 2, 3]))
    assert model.samples == 0


@pytest.mark.parametrize("kind", KINDS)
def test_training_mode_unknown_keywords_and_fit_are_refused(kind) -> None:
    clf, model = make(kind)
    x = good_images()
    with pytest.raises(ValueError, match="training_mode=True"):
        clf.predict(x, training_mode=True)
    with pytest.raises(ValueError, match="training_mode=True"):
        clf.loss_gradient(x, np.array([1, 2]), training_mode=True)
    with pytest.raises(TypeError, match="unknown keyword"):
        clf.predict(x, sampling=True)  # ART's PyTorchRandomizedSmoothing option, ignored silently elsewhere
    if kind == "randomized_smoothing":  # PyTorchRandomizedSmoothing trains (Gaussian augmentation) given an optimizer
        with pytest.raises(ValueError, match="optimizer"):
            clf.fit(x, np.array([1, 2]))
    else:
        with pytest.raises(NotImplementedError, match="fit"):
            clf.fit(x, np.array([1, 2]))
    with pytest.raises(ValueError, match="batch_size"):
        clf.predict(x, batch_size=0)
    assert model.samples == 0
