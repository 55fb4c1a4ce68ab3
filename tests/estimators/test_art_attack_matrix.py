"""Every ART evasion attack against the three art_ext classifiers (randomized smoothing, smoothed inference soft,
certification through adaptation), and art_ext's EPGD / SmoothAdv on the smoothed ones.

The matrix (docs/how-to/art-attack-matrix.md shows it as a table): FGSM, BIM, PGD (inf, 2, targeted), APGD-CE /
APGD-DLR, AutoAttack (inf, 2), Carlini-Wagner L2 / LInf, DeepFool, NewtonFool, ElasticNet, HopSkipJump, Boundary,
SquareAttack (inf, 2) and SimBA (pixel and DCT) either run to the end, returning finite points of the input's shape
inside [0, 1] (and inside the eps-ball where the attack has a budget), or are refused by a one-line error naming why
(SimBA needs probability outputs: it runs on ``output="probabilities"``, and the refusal of the default
log-probability output is tested). A tiny untrained CNN (``art_ext.testing.tiny_cnn``) and a few iterations: these
tests check that each attack runs, not that it lowers accuracy (tests/estimators/test_art_attacks.py does that on a
trained model). ART's ``AutoAttack.generate`` imports the package ``multiprocess``, which the test extra installs
(its four default attacks run one by one here too: APGD-CE, APGD-DLR, DeepFool, Square). ART's attacks draw from
numpy's global RNG, which each test seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from art.attacks.evasion import (
    AutoAttack,
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    BoundaryAttack,
    CarliniL2Method,
    CarliniLInfMethod,
    DeepFool,
    ElasticNet,
    FastGradientMethod,
    HopSkipJump,
    NewtonFool,
    ProjectedGradientDescent,
    SimBA,
    SquareAttack,
)
from torch import nn

from art_ext.attacks import EPGD, SmoothAdvPGD
from art_ext.estimators import (
    CertificationThroughAdaptationClassifier,
    PyTorchMACER,
    PyTorchRandomizedSmoothing,
    PyTorchSmoothAdv,
    PyTorchSmoothMix,
    RandomizedSmoothingClassifier,
    SmoothedInferenceClassifier,
)
from art_ext.testing import art_classifier, tiny_cnn

#: ART's randomized-smoothing estimators by name, built with ART's constructor (their ``predict`` is Cohen's PREDICT
#: as ART's: one-hot rows, all zero where the test abstains)
DROP_INS = {"PyTorchRandomizedSmoothing": PyTorchRandomizedSmoothing, "PyTorchMACER": PyTorchMACER,
            "PyTorchSmoothAdv": PyTorchSmoothAdv, "PyTorchSmoothMix": PyTorchSmoothMix}
KINDS = ("randomized_smoothing", "smoothed_inference", "bn_adaptation", *DROP_INS)
SMOOTHED = ("randomized_smoothing", "smoothed_inference")
SIGMA = 0.25
EPS = 0.5  # L2 budgets
EPS_INF = 0.1  # Linf budgets
N = 4


def build(kind: str, **kwargs: Any):
    if kind in DROP_INS and "output" in kwargs:  # soft smoothed scores instead of PREDICT's votes
        return DROP_INS[kind].from_classifier(art_classifier(tiny_cnn(batchnorm=True)), SIGMA, sample_size=16, seed=0,
                                              **kwargs)
    if kind in DROP_INS:
        return DROP_INS[kind](tiny_cnn(batchnorm=True), nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0),
                              device_type="cpu", sample_size=16, scale=SIGMA, seed=0, **kwargs)
    estimator = art_classifier(tiny_cnn(batchnorm=True))
    if kind == "randomized_smoothing":
        return RandomizedSmoothingClassifier(estimator, SIGMA, num_samples=4, seed=0, **kwargs)
    if kind == "smoothed_inference":
        return SmoothedInferenceClassifier(estimator, SIGMA, num_samples=4, seed=0, **kwargs)
    clean = np.random.default_rng(1).random((16, 1, 8, 8), dtype=np.float32)
    return CertificationThroughAdaptationClassifier(estimator, clean, sigmas=(SIGMA,), **kwargs)


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).random((N, 1, 8, 8), dtype=np.float32)


def apgd(c, norm, loss_type: str):
    eps = EPS if norm == 2 else EPS_INF
    return AutoProjectedGradientDescent(c, norm=norm, eps=eps, eps_step=eps / 4, max_iter=3, nb_random_init=1,
                                        loss_type=loss_type, verbose=False)


def auto_attack(c, norm):
    """ART's AutoAttack with its four default attacks, each cut to a few iterations."""
    eps = EPS if norm == 2 else EPS_INF
    attacks = [apgd(c, norm, "cross_entropy"), apgd(c, norm, "difference_logits_ratio"),
               DeepFool(c, max_iter=2, verbose=False),
               SquareAttack(c, norm=norm, eps=eps, max_iter=5, nb_restarts=1, verbose=False)]
    return AutoAttack(c, norm=norm, eps=eps, eps_step=eps / 4, attacks=attacks, batch_size=N)


#: name -> (attack factory, norm of its budget and the budget (None: a minimal-perturbation attack without one))
ATTACKS: dict[str, tuple[Callable[[Any], Any], tuple[str, float] | None]] = {
    "fgsm": (lambda c: FastGradientMethod(c, eps=EPS_INF), ("inf", EPS_INF)),
    "bim": (lambda c: BasicIterativeMethod(c, eps=EPS_INF, eps_step=EPS_INF / 4, max_iter=3, verbose=False),
            ("inf", EPS_INF)),
    "pgd_inf": (lambda c: ProjectedGradientDescent(c, norm=np.inf, eps=EPS_INF, eps_step=EPS_INF / 4, max_iter=3,
                                                   verbose=False), ("inf", EPS_INF)),
    "pgd_l2": (lambda c: ProjectedGradientDescent(c, norm=2, eps=EPS, eps_step=0.2, max_iter=3, verbose=False),
               ("2", EPS)),
    "pgd_l2_targeted": (lambda c: ProjectedGradientDescent(c, norm=2, eps=EPS, eps_step=0.2, max_iter=3,
                                                           targeted=True, verbose=False), ("2", EPS)),
    "apgd_ce": (lambda c: apgd(c, 2, "cross_entropy"), ("2", EPS)),
    "apgd_dlr": (lambda c: apgd(c, np.inf, "difference_logits_ratio"), ("inf", EPS_INF)),
    "carlini_l2": (lambda c: CarliniL2Method(c, max_iter=2, binary_search_steps=1, batch_size=N, verbose=False), None),
    "carlini_linf": (lambda c: CarliniLInfMethod(c, max_iter=2, initial_const=1.0, largest_const=2.0,
                                                 decrease_factor=0.1, batch_size=N, verbose=False), None),
    "deepfool": (lambda c: DeepFool(c, max_iter=3, batch_size=N, verbose=False), None),
    "newton_fool": (lambda c: NewtonFool(c, max_iter=3, batch_size=N, verbose=False), None),
    "elastic_net": (lambda c: ElasticNet(c, max_iter=2, binary_search_steps=1, batch_size=N, verbose=False), None),
    "hop_skip_jump": (lambda c: HopSkipJump(c, max_iter=1, max_eval=10, init_eval=5, init_size=10, verbose=False),
                      None),
    "boundary": (lambda c: BoundaryAttack(c, targeted=False, max_iter=3, num_trial=3, sample_size=3, init_size=10,
                                          verbose=False), None),
    "square_inf": (lambda c: SquareAttack(c, norm=np.inf, eps=EPS_INF, max_iter=10, nb_restarts=1, verbose=False),
                   ("inf", EPS_INF)),
    "square_l2": (lambda c: SquareAttack(c, norm=2, eps=EPS, max_iter=10, nb_restarts=1, verbose=False), ("2", EPS)),
}
TARGETS = np.array([1, 2, 3, 4])
#: attacks that work one image at a time (decision-based queries, CW-LInf's per-image search): two images suffice
ONE_BY_ONE = {"boundary", "carlini_linf", "hop_skip_jump"}


def check_points(x_adv: np.ndarray, x: np.ndarray, budget: tuple[str, float] | None) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.isfinite(x_adv).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if budget is not None:
        norm, eps = budget
        delta = (x_adv - x).reshape(len(x), -1)
        size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert size.max() <= eps * (1 + 1e-5) + 1e-6  # float32 rounding of x + delta


#: APGD reads the outputs as logits and refuses probabilities; the drop-ins' PREDICT rows (one-hot, or all zero
#: where PREDICT abstains) look like probabilities to it
PREDICT_ROWS_REFUSED = (r"^The provided estimator seems to predict probabilities\. If loss_type='[a-z_]+' the "
                        r"estimator has to to predict logits\.$")
REFUSED = {(kind, attack): PREDICT_ROWS_REFUSED for kind in DROP_INS for attack in ("apgd_ce", "apgd_dlr")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_art_attack_runs(kind: str, attack: str, x: np.ndarray) -> None:
    """Each cell of the matrix: the attack runs, or (``REFUSED``) it is refused with the tested one-line reason."""
    np.random.seed(0)  # ART's attacks draw from numpy's global RNG
    make, budget = ATTACKS[attack]
    if (kind, attack) in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[kind, attack]):
            make(build(kind)).generate(x)
        return
    if attack in ONE_BY_ONE:
        x = x[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ART's own warnings (e.g. HopSkipJump's) are not what this checks
        x_adv = make(build(kind)).generate(x, y=TARGETS if attack.endswith("targeted") else None)
    check_points(x_adv, x, budget)


@pytest.mark.parametrize("kind", DROP_INS)
@pytest.mark.parametrize("norm", [np.inf, 2], ids=["inf", "l2"])
def test_autoattack_refuses_predict_rows(kind: str, norm) -> None:
    """AutoAttack builds APGD-CE and APGD-DLR at construction, which refuse the drop-ins' PREDICT rows (attack
    ``PyTorchRandomizedSmoothing.from_classifier(..., output="log_probabilities")`` instead)."""
    with pytest.raises(ValueError, match=PREDICT_ROWS_REFUSED):
        AutoAttack(build(kind), norm=norm, eps=EPS, eps_step=EPS / 4)
    AutoAttack(build(kind, output="log_probabilities"), norm=norm, eps=EPS, eps_step=EPS / 4)  # soft scores: taken


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", [np.inf, 2], ids=["inf", "l2"])
def test_autoattack_runs(kind: str, norm, x: np.ndarray) -> None:
    """AutoAttack runs to the end on every classifier: the drop-ins through their soft scores
    (``from_classifier(..., output="log_probabilities")``; their PREDICT rows are refused above)."""
    np.random.seed(0)
    classifier = build(kind, output="log_probabilities") if kind in DROP_INS else build(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_adv = auto_attack(classifier, norm).generate(x)
    check_points(x_adv, x, ("2", EPS) if norm == 2 else ("inf", EPS_INF))


@pytest.mark.parametrize("kind", SMOOTHED + tuple(DROP_INS))
@pytest.mark.parametrize("variant", ["px", "dct"])
def test_simba_runs_on_probability_outputs(kind: str, variant: str, x: np.ndarray) -> None:
    """SimBA reads the outputs as probabilities: the smoothed classifiers give them with ``output="probabilities"``
    (the smoothed class probabilities themselves; for the drop-ins through ``from_classifier``)."""
    np.random.seed(0)
    clf = build(kind, output="probabilities")
    x_adv = SimBA(clf, attack=variant, max_iter=10, epsilon=0.1, verbose=False).generate(x[:1])
    check_points(x_adv, x[:1], None)


@pytest.mark.parametrize("kind", KINDS)
def test_simba_refuses_log_probability_and_logit_outputs_in_one_line(kind: str, x: np.ndarray) -> None:
    """The default output of the smoothed classifiers is the log of the smoothed probabilities (ART's APGD and
    AutoAttack refuse probabilities); certification through adaptation returns the original model's logits; the
    drop-ins' ``predict`` is ART's PREDICT, whose abstaining rows are all zero (the first image abstains here: 16
    draws of the untrained model do not pass the binomial test). SimBA needs probabilities and says so."""
    np.random.seed(0)
    if kind in DROP_INS:
        assert not build(kind).predict(x[:1]).any()  # PREDICT abstains on it: an all-zero row
    with pytest.raises(ValueError, match=r"^This attack requires an estimator predicting probabilities\. It looks like "
                                         r"the current estimator is not predicting probabilities$"):
        SimBA(build(kind), attack="px", max_iter=10, epsilon=0.1, verbose=False).generate(x[:1])


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


@pytest.mark.parametrize("kind", DROP_INS)
def test_drop_in_predict_rows_at_iterates_outside_the_domain(kind: str, x: np.ndarray) -> None:
    """ART's PREDICT rows at an attack's iterates: out-of-range values are evaluated at the clipped image, a NaN row
    gives a NaN row (as ART's PyTorchClassifier returns for it; an all-zero row would read as an abstention)."""
    outside = x.copy()
    outside[0, 0, 0, 0] = -0.04
    outside[1, 0, 0, 0] = 1.3
    outside[2] = np.nan
    rows = build(kind).predict(outside)
    # same-kernel: both calls draw the same per-image keys from freshly built classifiers and run the same ops
    assert np.array_equal(rows[:2], build(kind).predict(np.clip(outside, 0, 1))[:2])
    assert np.isnan(rows[2]).all() and np.isfinite(rows[[0, 1, 3]]).all()


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


@pytest.mark.parametrize("kind", SMOOTHED + tuple(DROP_INS))
@pytest.mark.parametrize("attack", (EPGD, SmoothAdvPGD))
def test_art_ext_attacks_go_through_the_base_and_the_classifiers_noise(kind: str, attack, x: np.ndarray) -> None:
    """The threat model of both papers: the attack differentiates the base classifier f at x + noise of the smoothed
    classifier's sigma, not the smoothed forward (whose noisy copies left [0, 1] and were refused before). Built on
    the smoothed classifier it gives exactly what it gives on the wrapped estimator with that sigma."""
    clf = build(kind)
    y = np.array([0, 1, 2, 3])
    draws = {"eot_samples": 2} if attack is EPGD else {"num_noise": 2}  # noise draws per step: few, for speed
    on_smoothed = attack(clf, eps=EPS, eps_step=0.2, max_iter=3, seed=0, verbose=False, **draws)
    on_base = attack(clf.estimator, sigma=SIGMA, eps=EPS, eps_step=0.2, max_iter=3, seed=0, verbose=False, **draws)
    assert on_smoothed._model.model is clf.estimator.model  # the base network, not the smoothed forward
    assert on_smoothed.config == on_base.config
    x_adv = on_smoothed.generate(x, y)
    # same-kernel: the same base module, noise keys from the same seed, the same ops in the same order
    assert np.array_equal(x_adv, on_base.generate(x, y))
    assert np.abs(x_adv - x).max() > 1e-3  # it moved
    assert np.linalg.norm((x_adv - x).reshape(len(x), -1), axis=1).max() <= EPS * (1 + 1e-5)
