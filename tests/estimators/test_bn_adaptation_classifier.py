"""CertificationThroughAdaptationClassifier: predicts and differentiates as the original model f, certifies as the
torch core (Nandy et al. Alg. 1 and 2), and never modifies the estimator's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier

from art_ext.defences import CertificationThroughAdaptation
from art_ext.estimators import CertificationThroughAdaptationClassifier
from art_ext.models import Normalize
from art_ext.testing import art_classifier, tiny_cnn, tiny_images

MEAN, STD = (0.3,), (0.25,)


def bn_model() -> torch.nn.Module:
    model = tiny_cnn(batchnorm=True, seed=1)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    return model


def test_certificates_equal_the_core_and_the_estimator_model_is_left_alone() -> None:
    model = bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimator = art_classifier(model, preprocessing=(MEAN, STD))
    clean, x = tiny_images(40, seed=2).numpy(), tiny_images(5, seed=3).numpy()
    cta = CertificationThroughAdaptationClassifier(estimator, clean, sigmas=(0.25, 0.5), adaptation_seed=3)
    labels, radii, sigmas = cta.certify_auto_noise(x, 200, 300, n_auto=50, n0=10, alpha=0.01, seed=7)

    reference = torch.nn.Sequential(Normalize(MEAN, STD), model).eval()
    core = CertificationThroughAdaptation(reference, torch.from_numpy(clean), num_classes=10, sigmas=(0.25, 0.5),
                                          adaptation_seed=3)
    certs = core.certify_auto_noise(torch.from_numpy(x), n_auto=50, n0=10, n=200, alpha=0.01, batch_size=300,
                                    generator=torch.Generator().manual_seed(7))
    assert labels.dtype == np.int64 and radii.dtype == np.float64 and sigmas.dtype == np.float64
    # same-kernel: integer labels from counts (the radius tolerance below: a count moves only at a rounding tie)
    np.testing.assert_array_equal(labels, certs.label.numpy())
    np.testing.assert_allclose(radii, certs.radius.numpy(), rtol=1e-6)  # float32 ops of ART's standardisation
    np.testing.assert_array_equal(sigmas, certs.sigma.numpy())  # same-kernel: sigmas copied from the grid by index
    full = cta.certificates(x, 200, 300, n_auto=50, n0=10, alpha=0.01, seed=7)
    # same-kernel: sigmas copied from the grid by index
    np.testing.assert_array_equal(full.sigma.numpy(), sigmas)  # the Certificates type carries per-example sigma
    # same-kernel: integer labels of f through the same view and batches
    np.testing.assert_array_equal(full.prediction.numpy(), cta.predict_labels(x))

    fixed_labels, fixed_radii = cta.certify(x, 200, 300, sigma=0.12, n0=10, alpha=0.01, seed=1)
    issued = fixed_labels >= 0
    assert issued.any()
    # same-kernel: integer labels of f through the same view and batches
    np.testing.assert_array_equal(fixed_labels[issued], cta.predict_labels(x)[issued])  # an issued label is f(x)
    assert (fixed_radii[~issued] == 0).all()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # same-kernel: copied state, never recomputed


def test_predictions_and_gradients_are_the_original_models() -> None:
    estimator = art_classifier(bn_model(), preprocessing=(MEAN, STD))
    cta = CertificationThroughAdaptationClassifier(estimator, tiny_images(16, seed=2).numpy(), sigmas=(0.25,))
    assert isinstance(cta, PyTorchClassifier)
    x, y = tiny_images(6, seed=4).numpy(), np.array([0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(cta.predict(x), estimator.predict(x), rtol=1e-6, atol=1e-6)
    # same-kernel: integer labels of the same estimator forward on the same batch
    np.testing.assert_array_equal(cta.predict_labels(x), estimator.predict(x).argmax(1))
    np.testing.assert_allclose(cta.loss_gradient(x, y), estimator.loss_gradient(x, np.eye(10)[y]), rtol=1e-5,
                               atol=1e-8)
    np.testing.assert_allclose(cta.class_gradient(x), estimator.class_gradient(x), rtol=1e-5, atol=1e-8)


def test_model_flags_are_restored() -> None:
    model = bn_model().train()
    cta = CertificationThroughAdaptationClassifier(art_classifier(model), tiny_images(16, seed=2).numpy(),
                                                   sigmas=(0.25,))
    x = tiny_images(3, seed=4).numpy()
    cta.predict(x)
    cta.loss_gradient(x, np.array([1, 2, 3]))
    cta.certify(x, 50, 50, sigma=0.25, n0=5, alpha=0.01, seed=0)
    assert all(m.training for m in model.modules())


def test_refuses_models_without_batchnorm_and_misshapen_adaptation_images() -> None:
    plain = art_classifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    with pytest.raises(ValueError, match="no BatchNorm"):
        CertificationThroughAdaptationClassifier(plain, tiny_images(4).numpy())
    with pytest.raises(ValueError, match=r"clean_images has shape \(4, 1, 7, 7\)"):
        CertificationThroughAdaptationClassifier(art_classifier(bn_model()), np.zeros((4, 1, 7, 7), np.float32))
    with pytest.raises(ValueError, match="clean_images"):
        CertificationThroughAdaptationClassifier(art_classifier(bn_model()), np.full((4, 1, 8, 8), 2.0, np.float32))
