"""The adapters' contract (issue 9): one input check, labels as ART reads them, ``mask`` honoured, unknown keywords
refused, bounds = clip_values (None = unbounded) with eps in their units, one final projection whatever the core
returns, NAttack scored on the defended outputs, and the same input check in ``score_randomized``. The pure-torch
cores check their own input (issue 21): x finite and inside the bounds, y int64 indices [B], before any model call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.defences.postprocessor import Rounded
from art.defences.preprocessor import FeatureSqueezing

from art_ext import _art
from art_ext.attacks import (
    BPDAPGD,
    EPGD,
    PGD,
    EPGDConfig,
    NAttack,
    NAttackConfig,
    PGDConfig,
    SmoothAdvConfig,
    SmoothAdvPGD,
    bpda_pgd,
    epgd,
    nattack,
    pgd,
    score_randomized,
    smoothadv_pgd,
)
from art_ext.attacks._adapter import final_projection
from art_ext.ops import norms
from art_ext.ops.validation import check_attack_inputs
from art_ext.testing import CallRecorder, art_classifier, tiny_cnn, tiny_images
from art_ext.types import Bounds

N, K = 6, 5


def clf_for(clip_values=(0.0, 1.0), **kwargs):
    return art_classifier(tiny_cnn(num_classes=K), nb_classes=K, clip_values=clip_values, **kwargs)


def labels(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).argmax(1).numpy()


ADAPTERS = {
    "PGD": lambda c, eps=0.5, norm=2: PGD(c, norm=norm, eps=eps, eps_step=eps / 4, max_iter=6, num_random_init=1,
                                          seed=0),
    "BPDAPGD": lambda c, eps=0.5, norm=2: BPDAPGD(c, norm=norm, eps=eps, eps_step=eps / 4, max_iter=6,
                                                  num_random_init=1, seed=0),
    "EPGD": lambda c, eps=0.5, norm=2: EPGD(c, sigma=0.1, norm=norm, eps=eps, eps_step=eps / 4, max_iter=6,
                                            eot_samples=2, num_random_init=1, seed=0),
    "SmoothAdvPGD": lambda c, eps=0.5, norm=2: SmoothAdvPGD(c, sigma=0.1, norm=norm, eps=eps, max_iter=6,
                                                            num_noise=2, num_random_init=1, seed=0),
    "NAttack": lambda c, eps=0.5, norm=2: NAttack(c, norm=norm, eps=eps, max_iter=6, pop_size=8, seed=0),
}


# ---- input check ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize(
    "make_x, match",
    [
        (lambda x: x * 255, r"values in \[.*\], outside the estimator's clip_values"),  # EPGD: 8,000 L2 away before
        (lambda x: x * 1.2, r"outside the estimator's clip_values"),  # NAttack: NaN before
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x).astype(np.float32),
         r"contains 1 NaN or infinite"),
        (lambda x: (x * 255).astype(np.uint8), r"dtype uint8"),
        (lambda x: x.transpose(0, 2, 3, 1), r"channel order looks transposed"),
    ],
    ids=["x255", "x1.2", "nan", "uint8", "channels-last"],
)
def test_generate_checks_its_input_before_any_work(name, make_x, match):
    x = tiny_images(N).numpy()
    attack = ADAPTERS[name](clf_for())
    with pytest.raises((ValueError, TypeError), match=match):
        attack.generate(make_x(x), labels(attack.estimator.model, torch.as_tensor(x)))


@pytest.mark.parametrize("name", ["PGD", "BPDAPGD", "EPGD", "SmoothAdvPGD"])
def test_unbounded_clip_values_do_not_clamp_and_eps_is_in_input_units(name):
    """clip_values=None on [0, 255] data: no [0, 1] clamp (it was 2,045 L2 away with eps 8), the ball holds."""
    x = tiny_images(N).numpy() * 255
    clf = clf_for(clip_values=None)
    attack = ADAPTERS[name](clf, eps=8.0)
    x_adv = attack.generate(x, labels(clf.model, torch.as_tensor(x)))
    dist = np.sqrt(((x_adv - x) ** 2).reshape(N, -1).sum(1))
    assert (dist <= 8.0 * (1 + 1e-5)).all() and (dist > 1.0).all()  # moved, within eps in pixel-255 units
    assert x_adv.max() > 200.0  # nothing squeezed into [0, 1]


def test_clip_values_0_255_bound_the_output_and_match_the_core():
    x = torch.as_tensor(tiny_images(N).numpy() * 255)
    clf = clf_for(clip_values=(0.0, 255.0))
    y = labels(clf.model, x)
    attack = PGD(clf, norm=np.inf, eps=16.0, eps_step=4.0, max_iter=5, num_random_init=1, seed=2)
    ours = attack.generate(x.numpy(), y)
    assert ours.min() >= 0.0 and ours.max() <= 255.0 and np.abs(ours - x.numpy()).max() <= 16.0 * (1 + 1e-6)
    core = pgd(_art.ARTModelView(clf), x, torch.as_tensor(y), attack.config, bounds=Bounds(0.0, 255.0),
               generator=torch.Generator().manual_seed(2))
    # same-kernel: the adapter is the core plus final_projection, same batch (N <= batch_size)
    np.testing.assert_array_equal(ours, final_projection(x, core, 16.0, "linf", Bounds(0.0, 255.0)).numpy())


def test_nattack_refuses_unbounded_clip_values_at_construction():
    with pytest.raises(ValueError, match=r"NAttack needs finite clip_values .* clip_values are None"):
        NAttack(clf_for(clip_values=None), eps=0.1)
    with pytest.raises(ValueError, match="nattack needs finite bounds"):
        nattack(tiny_cnn(num_classes=K), tiny_images(2), torch.zeros(2, dtype=torch.int64), NAttackConfig(0.1),
                bounds=Bounds(float("-inf"), float("inf")))


# ---- the pure-torch cores check their input ----------------------------------------------------------------------
CORES = {
    "pgd": lambda m, x, y: pgd(m, x, y, PGDConfig(eps=0.5, eps_step=0.25, max_iter=2)),
    "bpda_pgd": lambda m, x, y: bpda_pgd(m, x, y, PGDConfig(eps=0.5, eps_step=0.25, max_iter=2),
                                         defence=lambda z: z),
    "epgd": lambda m, x, y: epgd(m, x, y, EPGDConfig(eps=0.5, eps_step=0.25, sigma=0.1, max_iter=2, eot_samples=2),
                                 generator=torch.Generator().manual_seed(0)),
    "smoothadv_pgd": lambda m, x, y: smoothadv_pgd(m, x, y, SmoothAdvConfig(eps=0.5, sigma=0.1, max_iter=2,
                                                                            num_noise=2),
                                                   generator=torch.Generator().manual_seed(0)),
    "nattack": lambda m, x, y: nattack(m, x, y, NAttackConfig(eps=0.1, max_iter=2, pop_size=4),
                                       generator=torch.Generator().manual_seed(0)),
}


def _nan_at_3(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[3] = float("nan")
    return x


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize(
    "make_x, make_y, match",
    [
        (_nan_at_3, lambda y: y, r"x contains 1 NaN or infinite values"),  # was NaN out (pgd, smoothadv, nattack)
        (lambda x: x * 255, lambda y: y, r"x has values in \[.*\], outside .*'s bounds \[0.0, 1.0\]"),  # clamped
        (lambda x: x, lambda y: y[:, None], r"y has shape \(6, 1\), a column; pass class indices of shape \[6\]"),
        (lambda x: x, lambda y: torch.nn.functional.one_hot(y, K),
         r"y has shape \(6, 5\), one-hot .* \(y.argmax\(1\) for one-hot\)"),
        (lambda x: x, lambda y: torch.where(torch.arange(N) == 2, -1, y), r"y holds negative labels \(min -1\)"),
        (lambda x: x, lambda y: y.float(), r"y has dtype torch.float32; expected int64 class indices"),
        (lambda x: (x * 255).to(torch.uint8), lambda y: y, r"x has dtype torch.uint8; expected floating inputs"),
    ],
    ids=["nan", "x255", "column-y", "one-hot-y", "negative-y", "float-y", "uint8-x"],
)
def test_cores_check_their_input_before_any_model_call(core, make_x, make_y, match):
    model = CallRecorder(tiny_cnn(num_classes=K))
    x = tiny_images(N)
    y = torch.arange(N) % K
    with pytest.raises(ValueError, match=match):
        CORES[core](model, make_x(x), make_y(y))
    assert model.batch_sizes == []  # refused before any forward pass


@pytest.mark.parametrize("core", list(CORES))
def test_cores_refuse_labels_beyond_the_models_output_width_at_the_first_forward(core):
    model = CallRecorder(tiny_cnn(num_classes=K))
    y = torch.arange(N) % K
    y[1] = K
    with pytest.raises(ValueError, match=r"y holds labels up to 5 but the model returns 5 class scores; expected "
                                         r"class indices in \[0, 5\)"):
        CORES[core](model, tiny_images(N), y)
    assert len(model.batch_sizes) == 1  # after one forward, before any step


def test_check_attack_inputs_names_the_range_when_the_width_is_given():
    x, y = tiny_images(2), torch.tensor([0, 7])
    with pytest.raises(ValueError, match=r"labels up to 7 but the model returns 5 class scores"):
        check_attack_inputs(x, y, Bounds(), num_classes=K)
    with pytest.raises(TypeError, match=r"y must be a torch.Tensor of int64 class indices of shape \[2\], got list"):
        check_attack_inputs(x, [0, 1], Bounds())
    with pytest.raises(ValueError, match=r"x has values in \[.*\], outside the attack's bounds \[-1.0, 0.5\]"):
        check_attack_inputs(x, y, Bounds(-1.0, 0.5))
    check_attack_inputs(x * 255, y, Bounds(0.0, 255.0), num_classes=8)  # inside its own bounds: accepted


@pytest.mark.parametrize("core", list(CORES))
def test_cores_accept_inputs_inside_wider_bounds(core):
    """x * 255 with bounds (0, 255) is valid input: the range check follows the bounds given, not [0, 1]."""
    model = tiny_cnn(num_classes=K)
    x = tiny_images(N) * 255
    y = torch.arange(N) % K
    call = {
        "pgd": lambda: pgd(model, x, y, PGDConfig(eps=8.0, eps_step=4.0, max_iter=2), bounds=Bounds(0.0, 255.0)),
        "bpda_pgd": lambda: bpda_pgd(model, x, y, PGDConfig(eps=8.0, eps_step=4.0, max_iter=2),
                                     defence=lambda z: z, bounds=Bounds(0.0, 255.0)),
        "epgd": lambda: epgd(model, x, y, EPGDConfig(eps=8.0, eps_step=4.0, sigma=1.0, max_iter=2, eot_samples=2),
                             bounds=Bounds(0.0, 255.0), generator=torch.Generator().manual_seed(0)),
        "smoothadv_pgd": lambda: smoothadv_pgd(model, x, y, SmoothAdvConfig(eps=8.0, sigma=1.0, max_iter=2,
                                                                            num_noise=2),
                                               bounds=Bounds(0.0, 255.0), generator=torch.Generator().manual_seed(0)),
        "nattack": lambda: nattack(model, x, y, NAttackConfig(eps=8.0, max_iter=2, pop_size=4),
                                   bounds=Bounds(0.0, 255.0), generator=torch.Generator().manual_seed(0)).x_adv,
    }[core]
    out = call()
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 255.0
    assert (norms.lp_norm(out - x, "linf" if core == "nattack" else "l2") <= 8.0 * (1 + 1e-5)).all()


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_adapters_show_a_progress_bar_by_default_like_art(name):
    attack = ADAPTERS[name](clf_for())
    assert attack.verbose is True


# ---- labels ---------------------------------------------------------------------------------------------------------
def test_column_labels_are_indices_and_wrong_width_one_hot_is_refused():
    x = tiny_images(N)
    clf = clf_for()
    y = labels(clf.model, x)
    y[0] = (y[0] + 1) % K  # not all labels equal: an [N, 1] column read as one-hot would make every label 0
    attack = PGD(clf, norm=2, eps=0.5, eps_step=0.125, max_iter=4)
    # same-kernel: the same call, the labels only change format; the second check asserts a difference
    np.testing.assert_array_equal(attack.generate(x.numpy(), y[:, None]), attack.generate(x.numpy(), y))
    # same-kernel: asserts a difference (other labels)
    assert not np.array_equal(attack.generate(x.numpy(), y), attack.generate(x.numpy(), np.zeros(N, np.int64)))
    with pytest.raises(ValueError, match=r"one-hot array must have nb_classes=5 columns"):
        attack.generate(x.numpy(), np.eye(7, dtype=np.float32)[y])
    with pytest.raises(ValueError, match=r"class indices in \[9, 9\]; expected \[0, 5\)"):
        attack.generate(x.numpy(), np.full(N, 9))


# ---- keywords and mask ----------------------------------------------------------------------------------------------
def test_unknown_keywords_are_refused():
    x = tiny_images(2).numpy()
    with pytest.raises(TypeError, match=r"PGD.generate got unknown keyword\(s\) \['x_adv_init'\]"):
        PGD(clf_for()).generate(x, x_adv_init=x)


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("per_example", [True, False], ids=["mask-like-x", "broadcast-mask"])
def test_mask_limits_the_perturbation_including_the_random_start(name, per_example):
    x = tiny_images(N)
    rng = np.random.default_rng(0)
    shape = (N, 1, 8, 8) if per_example else (1, 8, 8)
    mask = (rng.random(shape) < 0.5).astype(np.float32) * 0.7  # any value != 0 means "perturb"
    attack = ADAPTERS[name](clf_for())
    x_adv = attack.generate(x.numpy(), labels(attack.estimator.model, x), mask=mask)
    moved = x_adv != x.numpy()
    full = np.broadcast_to(mask, x.shape) != 0
    assert not moved[~full].any()  # nothing outside the mask
    assert moved[full].mean() > 0.5  # the masked features did move


def test_mask_is_applied_inside_the_loop_not_only_at_the_end():
    """Masked PGD equals the core run with the mask (random start and gradients masked, as ART): the perturbation
    spends its whole l2 budget on the masked features, which a mask applied only afterwards would not."""
    x = tiny_images(N)
    clf = clf_for()
    y = labels(clf.model, x)
    mask = np.zeros((1, 8, 8), np.float32)
    mask[:, :4] = 1.0  # top half only
    attack = PGD(clf, norm=2, eps=0.5, eps_step=0.25, max_iter=8, num_random_init=1, seed=4)
    ours = attack.generate(x.numpy(), y, mask=mask)
    mask_t = torch.as_tensor(np.broadcast_to(mask != 0, x.shape).copy()).float()
    core = pgd(_art.ARTModelView(clf), x, torch.as_tensor(y), attack.config, mask=mask_t,
               generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(ours, core.numpy(), rtol=0, atol=1e-6)
    assert (norms.lp_norm(torch.as_tensor(ours) - x, "l2") > 0.45).all()


@pytest.mark.parametrize(
    "mask, match",
    [
        (-np.ones((1, 8, 8), np.float32), "negative"),
        (np.ones((1, 8, 8), np.int64), "dtype int64"),
        (np.ones((3, 1, 8, 8), np.float32), r"not broadcastable to x \(6, 1, 8, 8\)"),
        ([1.0], "numpy array"),
    ],
)
def test_bad_masks_are_refused(mask, match):
    x = tiny_images(N).numpy()
    with pytest.raises((ValueError, TypeError), match=match):
        PGD(clf_for()).generate(x, mask=mask)


# ---- final projection ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_final_projection_holds_whatever_the_core_returns(name, norm, monkeypatch):
    x = tiny_images(N)
    eps = 0.5 if norm == "l2" else 0.05
    attack = ADAPTERS[name](clf_for(), eps=eps, norm=2 if norm == "l2" else np.inf)

    def misbehaving(model, xb, yb, generator, *, bounds, mask, shift=10.0):
        if isinstance(attack, NAttack):  # NAttack's generate collects per-batch queries / success
            attack._queries.append(torch.zeros(len(xb), dtype=torch.int64))
            attack._success.append(torch.zeros(len(xb), dtype=torch.bool))
        return xb + shift

    monkeypatch.setattr(attack, "_attack_batch", misbehaving)
    mask = np.ones((1, 8, 8), np.float32)
    mask[:, :, :2] = 0
    out = torch.as_tensor(attack.generate(x.numpy(), labels(attack.estimator.model, x), mask=mask))
    assert (norms.lp_norm(out - x, norm) <= eps * (1 + 1e-5)).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    # same-kernel: masked features get delta * 0, x + 0 == x exactly
    assert torch.equal(out[..., :2], x[..., :2])  # the mask is part of the final projection
    assert (out != x).any()
    monkeypatch.setattr(attack, "_attack_batch", lambda *a, **kw: misbehaving(*a, **kw, shift=float("nan")))
    with pytest.raises(RuntimeError, match="returned .* NaN or infinite"):
        attack.generate(x.numpy(), labels(attack.estimator.model, x))


# ---- NAttack sees the defended outputs -------------------------------------------------------------------------------
def test_nattack_scores_what_the_defended_predict_returns():
    x = tiny_images(N)
    defended = clf_for(postprocessing_defences=[Rounded(decimals=1)])
    y = labels(defended.model, x)
    attack = NAttack(defended, eps=0.3, max_iter=6, pop_size=10, seed=1)
    with torch.no_grad():
        np.testing.assert_allclose(attack._model(x).numpy(), defended.predict(x.numpy()), rtol=0, atol=1e-6)
    ours = attack.generate(x.numpy(), y)
    raw = _art.ARTModelView(defended)

    def rounded(z: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.round(raw(z).detach().numpy(), 1))

    expected = nattack(rounded, x, torch.as_tensor(y), attack.config, generator=torch.Generator().manual_seed(1))
    undefended = nattack(raw, x, torch.as_tensor(y), attack.config, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(ours, expected.x_adv.numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(ours, undefended.x_adv.numpy(), atol=1e-4)  # raw logits give another search


# ---- BPDA-PGD --------------------------------------------------------------------------------------------------------
def test_bpda_estimate_forward_refuses_numpy_defences_at_construction():
    clf = clf_for(preprocessing_defences=[FeatureSqueezing(clip_values=(0, 1), bit_depth=2)])
    with pytest.raises(ValueError, match=r"estimate_forward.*\['FeatureSqueezing'\] are numpy-only"):
        BPDAPGD(clf, surrogate="estimate_forward")
    BPDAPGD(clf, surrogate="identity")  # the identity surrogate works for numpy defences


# ---- score_randomized ------------------------------------------------------------------------------------------------
def test_score_randomized_checks_its_input():
    model = tiny_cnn(num_classes=K)
    x = tiny_images(4)
    y = model(x).argmax(1).detach()
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x_adv contains 1 NaN"):
        score_randomized(model, bad, y, draws=2)
    with pytest.raises(ValueError, match=r"x_adv has values in \[.*\], outside"):
        score_randomized(model, x * 2, y, draws=2, bounds=Bounds(0.0, 1.0))
    with pytest.raises(ValueError, match="y has dtype torch.float32"):
        score_randomized(model, x, y.float(), draws=2)
    with pytest.raises(ValueError, match=r"y must have shape \[4\]"):
        score_randomized(model, x, torch.nn.functional.one_hot(y, K), draws=2)
    expected = r"x_adv has dtype torch.int64; expected a float array of shape \[N, 1, 8, 8\]"
    with pytest.raises(ValueError, match=expected):
        score_randomized(model, (x * 255).long(), y, draws=2)
    from_numpy = score_randomized(model, x.numpy(), y.numpy(), draws=2)  # ART's generate output works as is
    assert from_numpy.mean_accuracy == 1.0
