"""ART's attacks, and art_ext's EPGD / SmoothAdv, run against the three art_ext classifiers (issue 21, items 4-5).

A tiny untrained CNN (``art_ext.testing.tiny_cnn``) and a few iterations: these tests check that each attack runs
to the end and returns finite points of the right shape (inside the eps-ball where the attack has one), not that it
lowers accuracy (tests/estimators/test_art_attacks.py does that on a trained model). ART's ``AutoAttack`` imports
the optional ``multiprocess`` package in ``generate``; where it is missing, ``SquareAttack(norm=2)`` stands in for
its query-based part (the one that produced NaN queries).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from art.attacks.evasion import (
    AutoAttack,
    CarliniL2Method,
    FastGradientMethod,
    NewtonFool,
    ProjectedGradientDescent,
    SquareAttack,
)

from art_ext.attacks import EPGD, SmoothAdvPGD
from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.testing import art_classifier, tiny_cnn

KINDS = ("randomized_smoothing", "smoothed_inference", "bn_adaptation")
SIGMA = 0.25
EPS = 0.5


def build(kind: str):
    estimator = art_classifier(tiny_cnn(batchnorm=True))
    if kind == "randomized_smoothing":
        return RandomizedSmoothingClassifier(estimator, SIGMA, num_samples=4, seed=0)
    if kind == "smoothed_inference":
        return SmoothedInferenceClassifier(estimator, SIGMA, num_samples=4, seed=0)
    clean = np.random.default_rng(1).random((16, 1, 8, 8), dtype=np.float32)
    return CertificationThroughAdaptationClassifier(estimator, clean, sigmas=(SIGMA,))


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)


ATTACKS = {
    "carlini_l2": lambda c: CarliniL2Method(c, max_iter=2, binary_search_steps=1, verbose=False),
    "newton_fool": lambda c: NewtonFool(c, max_iter=3, verbose=False),
    "square_l2": lambda c: SquareAttack(c, norm=2, eps=EPS, max_iter=10, nb_restarts=1, verbose=False),
    "fgsm": lambda c: FastGradientMethod(c, eps=0.1),
    "pgd_l2": lambda c: ProjectedGradientDescent(c, norm=2, eps=EPS, eps_step=0.2, max_iter=3, verbose=False),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_art_attack_runs(kind: str, attack: str, x: np.ndarray) -> None:
    np.random.seed(0)  # ART's attacks draw from numpy's global RNG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_adv = ATTACKS[attack](build(kind)).generate(x)
    assert x_adv.shape == x.shape
    assert np.isfinite(x_adv).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("multiprocess") is None,
                    reason="ART's AutoAttack.generate imports the optional package multiprocess")
@pytest.mark.parametrize("kind", KINDS)
def test_autoattack_l2_runs(kind: str, x: np.ndarray) -> None:
    np.random.seed(0)
    x_adv = AutoAttack(build(kind), norm=2, eps=EPS, eps_step=0.25, batch_size=4).generate(x)
    assert np.isfinite(x_adv).all()


@pytest.mark.parametrize("kind", KINDS)
def test_predict_takes_arts_keywords(kind: str, x: np.ndarray) -> None:
    clf = build(kind)
    assert clf.predict(x, logits=True).shape == (4, 10)
    with pytest.raises(TypeError, match=r"unknown keyword\(s\) \['bogus'\]"):
        clf.predict(x, bogus=1)
    with pytest.raises(ValueError, match="fixed function"):
        clf.predict(x, training_mode=True)
    with pytest.raises(ValueError, match="fixed function"):
        clf.loss_gradient(x, np.zeros(4, dtype=np.int64), training_mode=True)


@pytest.mark.parametrize("kind", ("randomized_smoothing", "smoothed_inference"))
def test_smoothed_outputs_at_iterates_outside_the_domain(kind: str, x: np.ndarray) -> None:
    """Out-of-range values are evaluated at the clipped image; a NaN row gives a NaN row and a NaN gradient."""
    clf = build(kind)
    outside = x.copy()
    outside[0, 0, 0, 0] = -0.04
    outside[1, 0, 0, 0] = 1.3
    outside[2] = np.nan
    # same-kernel: both calls draw the same per-image keys from freshly built classifiers and run the same ops
    assert np.array_equal(clf.predict(outside)[:2], build(kind).predict(np.clip(outside, 0, 1))[:2])
    scores = clf.predict(outside)
    assert np.isnan(scores[2]).all() and np.isfinite(scores[[0, 1, 3]]).all()
    grad = clf.loss_gradient(outside, np.zeros(4, dtype=np.int64))
    assert np.isnan(grad[2]).all() and np.isfinite(grad[[0, 1, 3]]).all()
    grads = clf.class_gradient(np.full_like(x, np.nan), label=3)
    assert grads.shape == (4, 1, 1, 8, 8) and np.isnan(grads).all()


def test_user_entry_points_stay_strict(x: np.ndarray) -> None:
    clf = build("randomized_smoothing")
    bad = x.copy()
    bad[0, 0, 0, 0] = 1.5
    with pytest.raises(ValueError, match="outside the estimator's clip_values"):
        clf.certify(bad, 20, n0=10)
    with pytest.raises(ValueError, match="outside the estimator's clip_values"):
        clf.predict_labels(bad, 20)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build("smoothed_inference").predict_labels(bad)


@pytest.mark.parametrize("kind", ("randomized_smoothing", "smoothed_inference"))
@pytest.mark.parametrize("attack", (EPGD, SmoothAdvPGD))
def test_art_ext_attacks_on_smoothed_classifiers(kind: str, attack, x: np.ndarray) -> None:
    """EPGD / SmoothAdv attack the smoothed model through its base and its own sigma; points stay in the ball."""
    clf = build(kind)
    adv = attack(clf, eps=EPS, eps_step=0.2, max_iter=3, seed=0)
    assert adv.config.sigma == SIGMA
    x_adv = adv.generate(x, np.zeros(4, dtype=np.int64))
    assert np.linalg.norm((x_adv - x).reshape(4, -1), axis=1).max() <= EPS + 1e-5
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    with pytest.raises(ValueError, match=r"attack the base estimator \(`classifier.estimator`\)"):
        attack(clf, sigma=0.5)
    with pytest.raises(ValueError, match="needs sigma"):
        attack(clf.estimator)
