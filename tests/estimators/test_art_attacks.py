"""ART's own attacks accept the three art_ext classifiers, and their adversarial examples lower smoothed accuracy.

The model is the small BatchNorm CNN of conftest.py, trained on 8x8 digits with sigma = 0.25 noise (96% clean, 88%
noisy accuracy). Accuracy is measured with each classifier's own label method: Cohen's PREDICT for randomized
smoothing (abstains count as wrong), the soft smoothed vote for smoothed inference, f for certification through
adaptation. Everything is seeded (numpy's global RNG for HopSkipJump's random initialisation, which ART draws from
it), so each assertion is deterministic. Margin: the test asks for a drop of at least 0.25; over seeds 0-3 of the
classifiers and of HopSkipJump the smallest measured drops were 0.33 (smoothed inference, HopSkipJump), 0.41
(randomized smoothing, HopSkipJump) and >= 0.53 for every gradient attack. The other gradient attacks, at seed 0:
FGSM / BIM / PGD-inf drop smoothed inference by 0.72 / 0.60 / 0.60 on the 32 images; the minimal-perturbation
attacks (DeepFool, NewtonFool, Carlini-Wagner L2 / LInf, ElasticNet; no budget, 8 images) by >= 0.5 everywhere
except ElasticNet on smoothed inference (0.37, 3 of 8 images); EPGD and SmoothAdv built on the smoothed classifiers
lower them as well.
"""

from __future__ import annotations

import numpy as np
import pytest
from art.attacks.evasion import (
    AutoAttack,
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    CarliniL2Method,
    CarliniLInfMethod,
    DeepFool,
    ElasticNet,
    FastGradientMethod,
    HopSkipJump,
    NewtonFool,
    ProjectedGradientDescent,
)
from art.estimators.classification import PyTorchClassifier

from art_ext.attacks import EPGD, SmoothAdvPGD
from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.testing import art_classifier

SIGMA = 0.25  # the training noise of the conftest model
KINDS = ("smoothed_inference", "randomized_smoothing", "bn_adaptation")
NUM_IMAGES = 32
EPS = 1.0  # L2, pixel units; the 8x8 digits have L2 norm ~3.5
EPS_INF = 0.15  # Linf, pixel units
#: minimal-perturbation attacks (no budget), run on the first 8 images: they cost far more per image
MINIMAL = {
    "deepfool": lambda c: DeepFool(c, max_iter=5, epsilon=0.1, nb_grads=10, batch_size=32, verbose=False),
    "newton_fool": lambda c: NewtonFool(c, max_iter=5, eta=0.1, batch_size=32, verbose=False),
    "carlini_l2": lambda c: CarliniL2Method(c, max_iter=5, binary_search_steps=2, initial_const=1.0, learning_rate=0.1,
                                            batch_size=32, verbose=False),
    "carlini_linf": lambda c: CarliniLInfMethod(c, max_iter=10, initial_const=1.0, largest_const=2.0,
                                                decrease_factor=0.5, learning_rate=0.2, batch_size=32, verbose=False),
    "elastic_net": lambda c: ElasticNet(c, max_iter=5, binary_search_steps=2, initial_const=1.0, learning_rate=0.1,
                                        batch_size=32, verbose=False),
}
BUDGETS = {"pgd": ("2", EPS), "fgsm": ("2", EPS), "apgd_ce": ("2", EPS), "apgd_dlr": ("2", EPS),
           "bim": ("inf", EPS_INF), "pgd_inf": ("inf", EPS_INF)}


@pytest.fixture
def classifiers(digits_cnn, digits_clean):
    """Fresh classifiers per test, so that each test's noise draws do not depend on the tests run before it."""
    estimator = art_classifier(digits_cnn)
    return {
        "smoothed_inference": SmoothedInferenceClassifier(estimator, SIGMA, num_samples=16, seed=0),
        "randomized_smoothing": RandomizedSmoothingClassifier(estimator, SIGMA, num_samples=16, seed=0),
        "bn_adaptation": CertificationThroughAdaptationClassifier(estimator, digits_clean.numpy(), sigmas=(SIGMA,)),
    }


@pytest.fixture(scope="module")
def points(digits_test):
    x, y = digits_test
    return x[:NUM_IMAGES].numpy(), y[:NUM_IMAGES].numpy()


def accuracy(kind: str, clf, x: np.ndarray, y: np.ndarray) -> float:
    if kind == "randomized_smoothing":
        labels = clf.predict_labels(x, 1000, 1000, alpha=0.01, seed=1)  # Cohen PREDICT, -1 = abstain (wrong)
    else:
        labels = clf.predict_labels(x)
    return float((labels == y).mean())


def make_attack(name: str, clf):
    if name == "pgd":
        return ProjectedGradientDescent(clf, norm=2, eps=EPS, eps_step=0.25, max_iter=10, verbose=False)
    if name == "fgsm":
        return FastGradientMethod(clf, norm=2, eps=EPS)
    if name == "bim":
        return BasicIterativeMethod(clf, eps=EPS_INF, eps_step=EPS_INF / 3, max_iter=5, verbose=False)
    if name == "pgd_inf":
        return ProjectedGradientDescent(clf, norm=np.inf, eps=EPS_INF, eps_step=EPS_INF / 3, max_iter=5,
                                        verbose=False)
    if name in MINIMAL:
        return MINIMAL[name](clf)
    if name in ("apgd_ce", "apgd_dlr"):
        loss = "cross_entropy" if name == "apgd_ce" else "difference_logits_ratio"
        return AutoProjectedGradientDescent(clf, norm=2, eps=EPS, eps_step=0.25, max_iter=10, nb_random_init=1,
                                            loss_type=loss, verbose=False)
    return HopSkipJump(clf, max_iter=1, max_eval=10, init_eval=5, init_size=10, verbose=False)


@pytest.mark.parametrize("kind", KINDS)
def test_they_are_art_pytorch_classifiers(classifiers, kind) -> None:
    clf = classifiers[kind]
    assert isinstance(clf, PyTorchClassifier)
    assert clf.nb_classes == 10 and clf.input_shape == (1, 8, 8) and clf.channels_first
    assert tuple(np.ravel(clf.clip_values)) == (0.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["pgd", "apgd_ce", "apgd_dlr", "hsj", "fgsm", "bim", "pgd_inf", *MINIMAL])
@pytest.mark.parametrize("kind", KINDS)
def test_art_attacks_lower_the_smoothed_accuracy(classifiers, points, kind, attack) -> None:
    clf = classifiers[kind]
    x, y = points
    if attack == "hsj":  # HopSkipJump queries one image at a time: fewer images keep it to about a second
        x, y = x[:12], y[:12]
    if attack in MINIMAL:
        x, y = x[:8], y[:8]
    if attack == "newton_fool" and kind != "bn_adaptation":
        # NewtonFool reads predict's outputs as softmax values (its step is min(eta |x| |grad|, p_y - 1/K)): on the
        # default log-probabilities p_y - 1/K < 0 and it steps the wrong way, so it needs output="probabilities"
        smoothing = RandomizedSmoothingClassifier if kind == "randomized_smoothing" else SmoothedInferenceClassifier
        clf = smoothing(clf.estimator, SIGMA, num_samples=16, seed=0, output="probabilities")
    before = accuracy(kind, clf, x, y)
    np.random.seed(0)  # HopSkipJump's random initialisation uses numpy's global RNG
    x_adv = make_attack(attack, clf).generate(x, y=y)
    after = accuracy(kind, clf, x_adv, y)
    assert x_adv.shape == x.shape and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if attack in BUDGETS:  # HopSkipJump and the minimal-perturbation attacks have no budget
        norm, eps = BUDGETS[attack]
        delta = (x_adv - x).reshape(len(x), -1)
        assert (np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)).max() <= eps + 1e-4
    assert before >= 0.75, f"{kind}: the model is not accurate enough to show an attack ({before:.2f})"
    assert after <= before - 0.25, f"{kind}/{attack}: accuracy {before:.2f} -> {after:.2f}"


@pytest.mark.slow
@pytest.mark.parametrize("attack", [EPGD, SmoothAdvPGD])
@pytest.mark.parametrize("kind", ["smoothed_inference", "randomized_smoothing"])
def test_art_ext_attacks_lower_the_smoothed_accuracy(classifiers, points, kind, attack) -> None:
    """EPGD and SmoothAdv, built on the smoothed classifier, attack it through its base and its own noise."""
    clf = classifiers[kind]
    x, y = points
    before = accuracy(kind, clf, x, y)
    x_adv = attack(clf, eps=EPS, eps_step=0.25, max_iter=10, seed=0, verbose=False).generate(x, y=y)
    after = accuracy(kind, clf, x_adv, y)
    assert np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1).max() <= EPS + 1e-4
    assert before >= 0.75 and after <= before - 0.25, f"{kind}/{attack.__name__}: {before:.2f} -> {after:.2f}"


def test_random_noise_of_the_same_norm_does_not_lower_accuracy_like_pgd(classifiers, points) -> None:
    """The PGD drop comes from the gradients: a random L2 = EPS perturbation barely changes smoothed accuracy."""
    clf = classifiers["smoothed_inference"]
    x, y = points
    direction = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    direction /= np.linalg.norm(direction.reshape(len(x), -1), axis=1)[:, None, None, None]
    x_random = np.clip(x + EPS * direction, 0.0, 1.0)
    x_pgd = make_attack("pgd", clf).generate(x, y=y)
    random_acc = accuracy("smoothed_inference", clf, x_random, y)
    pgd_acc = accuracy("smoothed_inference", clf, x_pgd, y)
    assert random_acc >= accuracy("smoothed_inference", clf, x, y) - 0.15
    assert pgd_acc <= random_acc - 0.4


@pytest.mark.parametrize("kind", KINDS)
def test_auto_attack_builds_its_default_attacks_on_them(classifiers, kind) -> None:
    """AutoAttack's defaults are APGD-CE, APGD-DLR (both refuse probability outputs), DeepFool and Square.

    (Running AutoAttack.generate needs the optional ``multiprocess`` package, which this environment lacks; its
    attacks are run one by one above.)"""
    attack = AutoAttack(classifiers[kind], norm=2, eps=EPS, eps_step=0.25)
    names = [type(a).__name__ for a in attack.attacks]
    assert names == ["AutoProjectedGradientDescent", "AutoProjectedGradientDescent", "DeepFool", "SquareAttack"]
    assert all(a.estimator.model is classifiers[kind].model for a in attack.attacks[:2])  # APGD attacks our model


def test_probability_outputs_are_refused_by_apgd_which_is_why_the_default_is_log(digits_cnn) -> None:
    probabilities = SmoothedInferenceClassifier(art_classifier(digits_cnn), SIGMA, output="probabilities", seed=0)
    with pytest.raises(ValueError, match="probabilities"):
        AutoProjectedGradientDescent(probabilities, norm=2, eps=EPS, loss_type="cross_entropy")
