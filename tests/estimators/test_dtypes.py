"""Issue 19 item 6 at the ART boundary: images of any floating dtype are cast once, at the entry point, to the dtype
of the wrapped model's parameters; ``predict`` returns float32, gradients come back in the caller's dtype, and a
float64 model works on float32 arrays (no "expected scalar type Double but found Float" deep inside)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.testing import art_classifier, tiny_cnn, tiny_images

CLASSIFIERS = {
    "rs": lambda est: RandomizedSmoothingClassifier(est, 0.25, num_samples=4, seed=0),
    "si": lambda est: SmoothedInferenceClassifier(est, 0.25, num_samples=4, seed=0),
    "cta": lambda est: CertificationThroughAdaptationClassifier(est, tiny_images(16, seed=3).numpy(),
                                                                 sigmas=(0.25,)),
}


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_float64_and_float16_arrays_are_cast_once_to_the_model_dtype(kind: str) -> None:
    clf = CLASSIFIERS[kind](art_classifier(tiny_cnn(batchnorm=True)))
    x32 = tiny_images(3, seed=0).numpy()
    y = np.array([1, 2, 3])
    ref, grad = clf.predict(x32), clf.loss_gradient(x32, y)
    clf = CLASSIFIERS[kind](art_classifier(tiny_cnn(batchnorm=True)))  # the same seed again
    # float32 -> float64 -> float32 is exact: the same kernels run on the same float32 data
    out = clf.predict(x32.astype(np.float64))
    assert out.dtype == np.float32
    # same-kernel: one exact cast, then the same kernels on the same data
    np.testing.assert_array_equal(out, ref)
    grad64 = clf.loss_gradient(x32.astype(np.float64), y)
    assert grad64.dtype == np.float64  # returned in the caller's dtype
    # same-kernel: one exact cast, then the same kernels on the same data
    np.testing.assert_array_equal(grad64, grad.astype(np.float64))
    x16 = x32.astype(np.float16)
    first, second = CLASSIFIERS[kind](art_classifier(tiny_cnn(batchnorm=True))), \
        CLASSIFIERS[kind](art_classifier(tiny_cnn(batchnorm=True)))
    # same-kernel: one exact cast, then the same kernels on the same data
    np.testing.assert_array_equal(first.predict(x16), second.predict(x16.astype(np.float32)))
    assert first.class_gradient(x16, label=0).dtype == np.float16


def test_a_float64_model_takes_float32_arrays() -> None:
    est = art_classifier(tiny_cnn().double())
    x = tiny_images(2, seed=0).numpy()  # float32
    rs = RandomizedSmoothingClassifier(est, 0.25, num_samples=4, seed=0)
    assert rs.predict(x).dtype == np.float32
    grad = rs.loss_gradient(x, np.array([0, 1]))
    assert grad.dtype == np.float32 and np.abs(grad).max() > 0
    labels, radii = rs.certify(x, 50, 32, n0=10, alpha=0.05, seed=1)
    labels64, radii64 = rs.certify(x.astype(np.float64), 50, 32, n0=10, alpha=0.05, seed=1)
    # same-kernel: one exact cast, then the same kernels on the same data
    np.testing.assert_array_equal(labels, labels64)  # both cast to float64 once: the same data, the same kernels
    # same-kernel: one exact cast, then the same kernels on the same data
    np.testing.assert_array_equal(radii, radii64)


def test_a_value_that_does_not_fit_the_model_dtype_is_refused_at_the_entry_point() -> None:
    rs = RandomizedSmoothingClassifier(art_classifier(tiny_cnn()), 0.25, seed=0)
    x = tiny_images(1, seed=0).numpy().astype(np.float64)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(as torch.float32\)"):
        rs.predict_labels(x, 10)  # user-facing: refused; predict (ART's attacks' iterates) gives a NaN row instead
    assert np.isnan(rs.predict(x)).all()
    with pytest.raises(ValueError, match="dtype int64"):
        rs.predict(np.zeros((1, 1, 8, 8), dtype=np.int64))
    assert torch.get_default_dtype() == torch.float32
