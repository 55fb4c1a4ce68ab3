"""RandomizedSmoothingClassifier: an ART classifier whose certify / predict_labels are art_ext's CERTIFY / PREDICT on
the wrapped estimator's predict-time pipeline, with ART's positional certify signature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import HopSkipJump, ProjectedGradientDescent
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification import PyTorchClassifier

from art_ext import _art, certify, predict
from art_ext.estimators import RandomizedSmoothingClassifier
from art_ext.models.classifiers import Normalize
from art_ext.smoothing import Certificates, NormalizedNoise
from art_ext.testing import art_classifier, tiny_cnn, tiny_images

MEAN, STD = (0.3,), (0.25,)


def images(n: int = 4) -> np.ndarray:
    return tiny_images(n, seed=0).numpy()


def test_certify_equals_art_ext_certify_on_the_art_model_view_exactly() -> None:
    inner = art_classifier(tiny_cnn(batchnorm=True), preprocessing=(MEAN, STD))
    rs = RandomizedSmoothingClassifier(inner, 0.25)
    labels, radii = rs.certify(images(), 500, 200, n0=50, alpha=0.01, seed=7)
    certs = certify(_art.ARTModelView(inner).eval(), torch.from_numpy(images()), n0=50, n=500, sigma=0.25,
                    alpha=0.01, num_classes=10, batch_size=200, generator=torch.Generator().manual_seed(7))
    assert labels.dtype == np.int64 and radii.dtype == np.float64
    # same-kernel: the adapter runs certify on the same ARTModelView, draws and batches
    np.testing.assert_array_equal(labels, certs.label.numpy())
    # same-kernel: the same counts, then the same radius formula
    np.testing.assert_array_equal(radii, certs.radius.numpy())
    assert (labels >= 0).any() and (radii > 0).any()  # the comparison is not between all-abstain results
    # and it is the certificate of the model with ART's (mean, std) as its first layer (float32 rounding aside)
    reference = torch.nn.Sequential(Normalize(MEAN, STD), inner.model).eval()
    again = certify(reference, torch.from_numpy(images()), n0=50, n=500, sigma=0.25, alpha=0.01, num_classes=10,
                    batch_size=200, generator=torch.Generator().manual_seed(7))
    # Two paths (Normalize vs ART's standardisation): a count can move only at a rounding tie of a noisy sample's
    # logits, and a label only if that count sits at the abstain threshold.
    # same-kernel: integer labels (see above)
    np.testing.assert_array_equal(labels, again.label.numpy())
    np.testing.assert_allclose(radii, again.radius.numpy(), rtol=1e-6)


def test_certify_keeps_arts_positional_signature_n_then_batch_size() -> None:
    """ART: certify(x, n, batch_size=32). The second positional argument is the number of estimation draws."""
    rs = RandomizedSmoothingClassifier(art_classifier(tiny_cnn()), 0.25)
    certs = rs.certificates(images(2), 300, 64, seed=0)
    assert isinstance(certs, Certificates)
    assert certs.counts_estimation.sum(1).tolist() == [300, 300] and certs.n == 300
    assert certs.counts_selection.sum(1).tolist() == [100, 100] and certs.n0 == 100  # n0's default, a keyword
    labels, radii = rs.certify(images(2), 300, 64, seed=0)
    # same-kernel: the same certify call through two entry points
    np.testing.assert_array_equal(labels, certs.label.numpy())
    # same-kernel: the same counts, then the same radius formula
    np.testing.assert_array_equal(radii, certs.radius.numpy())
    with pytest.raises(TypeError):
        rs.certify(images(2), 300, 64, 0.001)  # alpha, n0 and seed are keyword-only


def test_predict_labels_is_cohen_predict_with_explicit_abstains() -> None:
    inner = art_classifier(tiny_cnn())
    rs = RandomizedSmoothingClassifier(inner, 0.5)
    got = rs.predict_labels(images(8), 400, 100, alpha=0.01, seed=3)
    want = predict(_art.ARTModelView(inner).eval(), torch.from_numpy(images(8)), n=400, sigma=0.5, alpha=0.01,
                   num_classes=10, batch_size=100, generator=torch.Generator().manual_seed(3))
    # same-kernel: integer labels; the adapter runs predict on the same view, draws and batches
    np.testing.assert_array_equal(got, want.numpy())
    assert got.dtype == np.int64


def test_noise_goes_before_preprocessing_defences() -> None:
    seen = []

    class Recorder(PreprocessorPyTorch):
        def forward(self, x, y=None):
            seen.append(x.detach().clone())
            return x, y

    rs = RandomizedSmoothingClassifier(art_classifier(tiny_cnn(), preprocessing_defences=[Recorder()]), 0.5)
    rs.certify(np.full((1, 1, 8, 8), 0.5, dtype=np.float32), 400, 410, n0=10, alpha=0.01, seed=0)
    noise = torch.cat(seen) - 0.5
    # 410 x 64 values of std 0.5: the 5% tolerance is > 10 standard errors of the sample std
    assert noise.std().item() == pytest.approx(0.5, rel=0.05)


def test_model_mode_is_restored_and_sampling_runs_in_eval() -> None:
    model = tiny_cnn(batchnorm=True).train()
    rs = RandomizedSmoothingClassifier(art_classifier(model), 0.25)
    labels, radii = rs.certify(images(2), 200, 100, n0=20, alpha=0.01, seed=1)
    assert model.training and model[1].training
    model.eval()
    labels_eval, radii_eval = rs.certify(images(2), 200, 100, n0=20, alpha=0.01, seed=1)
    # same-kernel: the same forward in eval mode (the estimator sets it)
    np.testing.assert_array_equal(labels, labels_eval)
    np.testing.assert_array_equal(radii, radii_eval)  # same-kernel: the same forward, draws and batches


def test_pgd_and_hopskipjump_accept_it_where_they_refused_the_old_adapter() -> None:
    rs = RandomizedSmoothingClassifier(art_classifier(tiny_cnn()), 0.25, num_samples=4, seed=0)
    assert isinstance(rs, PyTorchClassifier)
    x = images(2)
    x_adv = ProjectedGradientDescent(rs, norm=2, eps=0.5, eps_step=0.2, max_iter=2, verbose=False).generate(x)
    # same-kernel: asserts a difference (the attack moved)
    assert np.linalg.norm((x_adv - x).reshape(2, -1), axis=1).max() <= 0.5 + 1e-5 and not np.array_equal(x_adv, x)
    np.random.seed(0)
    x_hsj = HopSkipJump(rs, max_iter=1, max_eval=5, init_eval=2, init_size=5, verbose=False).generate(x)
    assert x_hsj.shape == x.shape and 0.0 <= x_hsj.min() and x_hsj.max() <= 1.0


def test_normalized_noise_space_certifies_in_pixel_units() -> None:
    inner = art_classifier(tiny_cnn())
    space = NormalizedNoise(MEAN, STD)
    rs = RandomizedSmoothingClassifier(inner, 1.0, noise_space=space)
    certs = rs.certificates(images(), 300, 300, n0=30, alpha=0.01, seed=2)
    want = certify(_art.ARTModelView(inner).eval(), torch.from_numpy(images()), n0=30, n=300, sigma=1.0,
                   alpha=0.01, num_classes=10, batch_size=300, generator=torch.Generator().manual_seed(2),
                   noise_space=space)
    # same-kernel: the adapter runs certify on the same view, draws and batches
    np.testing.assert_array_equal(certs.radius.numpy(), want.radius.numpy())
    np.testing.assert_allclose(certs.radius.numpy(), certs.radius_noise_space.numpy() * STD[0], rtol=1e-12)


def test_bad_construction() -> None:
    model = tiny_cnn()
    with pytest.raises(ValueError, match="clip_values"):
        RandomizedSmoothingClassifier(art_classifier(model, clip_values=(0, 255)), sigma=0.25)
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        RandomizedSmoothingClassifier(model, sigma=0.25)
    with pytest.raises(ValueError, match="sigma"):
        RandomizedSmoothingClassifier(art_classifier(model), sigma=0.0)
    with pytest.raises(ValueError, match="output"):
        RandomizedSmoothingClassifier(art_classifier(model), sigma=0.25, output="logits")
