import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier

from art_ext.defences import CertificationThroughAdaptation
from art_ext.estimators import CertificationThroughAdaptationEstimator
from art_ext.models import Normalize

MEAN, STD = (0.3,), (0.25,)


def make_model():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    return model


def test_adapter_equals_core_and_leaves_the_estimator_model_alone():
    model = make_model().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimator = PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0),
                                  preprocessing=(MEAN, STD))
    rng = np.random.default_rng(0)
    clean, x = rng.random((40, 1, 8, 8), dtype=np.float32), rng.random((5, 1, 8, 8), dtype=np.float32)
    adapter = CertificationThroughAdaptationEstimator(estimator, clean, sigmas=(0.25, 0.5), adaptation_seed=3)
    labels, radii, sigmas = adapter.certify_auto_noise(x, n_auto=50, n0=10, n=200, alpha=0.01, batch_size=300, seed=7)

    reference = torch.nn.Sequential(Normalize(MEAN, STD), model).eval()
    core = CertificationThroughAdaptation(reference, torch.from_numpy(clean), num_classes=10, sigmas=(0.25, 0.5),
                                          adaptation_seed=3)
    certs = core.certify_auto_noise(torch.from_numpy(x), n_auto=50, n0=10, n=200, alpha=0.01, batch_size=300,
                                    generator=torch.Generator().manual_seed(7))
    assert labels.dtype == np.int64 and radii.dtype == np.float64 and sigmas.dtype == np.float64
    np.testing.assert_array_equal(labels, certs.label.numpy())
    np.testing.assert_allclose(radii, certs.radius.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(sigmas, certs.sigma.numpy())
    np.testing.assert_array_equal(adapter.predict(x), estimator.predict(x).argmax(1))  # the original model's labels
    fixed_labels, _ = adapter.certify(x, sigma=0.5, n0=10, n=200, alpha=0.01, batch_size=300, seed=1)
    issued = fixed_labels >= 0
    np.testing.assert_array_equal(fixed_labels[issued], adapter.predict(x)[issued])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_adapter_rejects_numpy_less_inputs_and_models_without_batchnorm():
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    estimator = PyTorchClassifier(plain, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0))
    with pytest.raises(ValueError, match="no BatchNorm"):
        CertificationThroughAdaptationEstimator(estimator, np.zeros((4, 1, 8, 8), dtype=np.float32))
    bn_estimator = PyTorchClassifier(make_model(), torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0))
    with pytest.raises(TypeError, match="clean_images must be a numpy array"):
        CertificationThroughAdaptationEstimator(bn_estimator, torch.zeros(4, 1, 8, 8))
