"""The ART preprocessors (``DenoiserPreprocessor``, ``NormalizedNoisePreprocessor``) check the estimator they sit in
and every batch they are handed: a channels-last estimator, a normalization other than the reconstructor's and NaN
images are one-line errors, before the denoiser runs (before: a crash inside the first convolution, a silently wrong
noise level, NaN outputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext.attacks import PGD
from art_ext.defences import DenoiserPreprocessor, NormalizedNoisePreprocessor, NormalizedReconstructor
from art_ext.estimators import RandomizedSmoothingClassifier
from art_ext.testing import CallRecorder, tiny_cnn

MEAN, STD = (0.305,), (0.319,)  # the digits statistics of the zoo's reconstructors


def _estimator(pre, *, shape=(1, 8, 8), channels_first=True, preprocessing=None) -> PyTorchClassifier:
    return PyTorchClassifier(tiny_cnn(), nn.CrossEntropyLoss(), shape, 10, clip_values=(0.0, 1.0),
                             channels_first=channels_first, preprocessing=preprocessing,
                             preprocessing_defences=[pre], device_type="cpu")


def _images(n: int = 3, channels_last: bool = False) -> np.ndarray:
    x = np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)
    return x.transpose(0, 2, 3, 1).copy() if channels_last else x


def _denoiser() -> CallRecorder:
    return CallRecorder(nn.Conv2d(1, 1, 3, padding=1))


def test_a_channels_last_estimator_is_named_at_check_and_at_the_first_call() -> None:
    denoiser = _denoiser()
    pre = DenoiserPreprocessor(denoiser)
    est = _estimator(pre, shape=(8, 8, 1), channels_first=False)
    with pytest.raises(ValueError, match=r"the estimator has channels_first=False \(input_shape \(8, 8, 1\)\); "
                                         r"DenoiserPreprocessor expects channel-first images \[N, 1, H, W\]"):
        pre.check_estimator(est)
    with pytest.raises(ValueError, match=r"got a batch of shape \(3, 8, 8, 1\); its denoiser takes 1 channel\(s\), "
                                         r"expected \[N, 1, H, W\] \(it looks channels-last"):
        est.predict(_images(channels_last=True))
    assert denoiser.batch_sizes == []  # refused before the denoiser ran
    pre.check_estimator(_estimator(pre))  # channel-first with the denoiser's channel count: accepted


def test_a_channel_count_other_than_the_denoisers_is_refused() -> None:
    pre = DenoiserPreprocessor(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"input_shape is \(1, 8, 8\); DenoiserPreprocessor's denoiser takes images "
                                         r"\[N, 3, H, W\]"):
        pre.check_estimator(_estimator(pre))


@pytest.mark.parametrize("make", ["denoiser", "normalized_noise"])
def test_nan_images_are_refused_before_the_denoiser_runs(make: str) -> None:
    denoiser = _denoiser()
    if make == "denoiser":
        pre = DenoiserPreprocessor(denoiser)
        est = _estimator(pre)
    else:
        pre = NormalizedNoisePreprocessor(NormalizedReconstructor(denoiser, MEAN, STD), 0.25, seed=0)
        est = _estimator(pre, preprocessing=(np.array(MEAN), np.array(STD)))
    x = _images()
    assert np.isfinite(est.predict(x)).all()
    calls = len(denoiser.batch_sizes)
    x[1, 0, 2, 2] = np.nan
    x[2, 0, 0, 0] = np.inf
    name = type(pre).__name__
    with pytest.raises(ValueError, match=rf"{name} got 2 NaN or infinite values; expected finite images"):
        est.predict(x)
    with pytest.raises(ValueError, match=rf"{name} got 2 NaN or infinite values"):
        est.loss_gradient(x, np.zeros(3, dtype=np.int64))
    assert len(denoiser.batch_sizes) == calls  # the denoiser never saw the bad batch


def test_attacks_check_the_preprocessors_estimator_when_they_are_built() -> None:
    """The normalization mismatch of the issue (estimator (0.5, 0.5), reconstructor (0.305, 0.319)) is refused when
    an art_ext attack is built on the estimator, and when the estimator is wrapped by a smoothing classifier that the
    attack is built on."""
    pre = NormalizedNoisePreprocessor(NormalizedReconstructor(nn.Identity(), MEAN, STD), 0.25, seed=0)
    wrong = _estimator(pre, preprocessing=(np.array([0.5]), np.array([0.5])))
    message = (r"the estimator normalizes with \(mean, std\) = \(\(0.5,\), \(0.5,\)\), the reconstructor with "
               r"\(\(0.305,\), \(0.319,\)\); pass preprocessing=\(mean, std\) equal to the reconstructor's")
    with pytest.raises(ValueError, match=message):
        PGD(wrong, norm=2, eps=0.5, eps_step=0.1, max_iter=2, verbose=False)
    with pytest.raises(ValueError, match=message):
        PGD(RandomizedSmoothingClassifier(wrong, 0.25, num_samples=2, seed=0), norm=2, eps=0.5, eps_step=0.1,
            max_iter=2, verbose=False)
    right = _estimator(pre, preprocessing=(np.array(MEAN), np.array(STD)))
    PGD(right, norm=2, eps=0.5, eps_step=0.1, max_iter=2, verbose=False)  # matching: accepted
    channels_last = _estimator(DenoiserPreprocessor(nn.Conv2d(1, 1, 1)), shape=(8, 8, 1), channels_first=False)
    with pytest.raises(ValueError, match="channels_first=False"):
        PGD(channels_last, norm=2, eps=0.5, eps_step=0.1, max_iter=2, verbose=False)


@pytest.mark.parametrize("wrap", ["randomized_smoothing", "smoothed_inference"])
def test_wrapping_an_estimator_checks_its_preprocessors(wrap: str) -> None:
    """A smoothing classifier checks the preprocessors of the estimator it wraps when it is built, before any
    sampling: the normalization mismatch is refused at construction, a matching estimator is accepted."""
    from art_ext.estimators import SmoothedInferenceClassifier

    build = RandomizedSmoothingClassifier if wrap == "randomized_smoothing" else SmoothedInferenceClassifier
    pre = NormalizedNoisePreprocessor(NormalizedReconstructor(nn.Identity(), MEAN, STD), 0.25, seed=0)
    wrong = _estimator(pre, preprocessing=(np.array([0.5]), np.array([0.5])))
    with pytest.raises(ValueError, match=r"the estimator normalizes with \(mean, std\) = \(\(0.5,\), \(0.5,\)\)"):
        build(wrong, 0.25, num_samples=2, seed=0)
    right = _estimator(pre, preprocessing=(np.array(MEAN), np.array(STD)))
    assert build(right, 0.25, num_samples=2, seed=0).predict(_images()).shape == (3, 10)


def test_the_declared_channel_count_is_read_from_the_denoiser() -> None:
    from art_ext.defences.preprocessors import declared_channels
    from art_ext.models.denoisers import DnCNN

    assert declared_channels(DnCNN(in_channels=3, depth=2, width=4)) == 3
    assert declared_channels(nn.Sequential(nn.Identity(), nn.Conv2d(2, 4, 1))) == 2
    assert declared_channels(NormalizedReconstructor(nn.Identity(), (0.5, 0.5), (0.2, 0.2))) == 2
    assert declared_channels(nn.Identity()) is None
    pre = DenoiserPreprocessor(nn.Identity())  # nothing declared: any channel count, the other checks stay
    out, _ = pre.forward(torch.zeros(2, 5, 4, 4))
    assert out.shape == (2, 5, 4, 4)
    x = torch.full((1, 1, 2, 2), 0.5)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        pre.forward(x)
