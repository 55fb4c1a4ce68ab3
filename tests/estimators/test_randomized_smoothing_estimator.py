import numpy as np
import pytest
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification import PyTorchClassifier

from art_ext import certify, predict
from art_ext.estimators import RandomizedSmoothingEstimator
from art_ext.models import Normalize

MEAN, STD = (0.3,), (0.25,)


def make_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )


def art_classifier(model, **kwargs):
    return PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0), **kwargs)


def test_adapter_equals_core_with_preprocessing_as_first_layer():
    model = make_model().eval()
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    estimator = RandomizedSmoothingEstimator(art_classifier(model, preprocessing=(MEAN, STD)), sigma=0.25)
    labels, radii = estimator.certify(x, n0=50, n=500, alpha=0.01, batch_size=200, seed=7)
    reference = torch.nn.Sequential(Normalize(MEAN, STD), model).eval()
    certs = certify(reference, torch.from_numpy(x), n0=50, n=500, sigma=0.25, alpha=0.01, num_classes=10,
                    batch_size=200, generator=torch.Generator().manual_seed(7))
    assert labels.dtype == np.int64 and radii.dtype == np.float64
    np.testing.assert_array_equal(labels, certs.label.numpy())
    np.testing.assert_allclose(radii, certs.radius.numpy(), rtol=1e-6)  # float32 ops in ART's standardisation
    p = estimator.predict(x, n=500, alpha=0.01, batch_size=200, seed=3)
    ref = predict(reference, torch.from_numpy(x), n=500, sigma=0.25, alpha=0.01, num_classes=10, batch_size=200,
                  generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(p, ref.numpy())


def test_noise_goes_before_preprocessing_defences():
    seen = []

    class Recorder(PreprocessorPyTorch):
        def forward(self, x, y=None):
            seen.append(x.detach().clone())
            return x, y

    model = make_model().eval()
    estimator = RandomizedSmoothingEstimator(
        art_classifier(model, preprocessing_defences=[Recorder(apply_predict=True)]), sigma=0.5
    )
    estimator.certify(np.full((1, 1, 8, 8), 0.5, dtype=np.float32), n0=10, n=400, alpha=0.01, batch_size=410, seed=0)
    noise = torch.cat(seen) - 0.5
    assert noise.std().item() == pytest.approx(0.5, rel=0.05)  # the defence sees pixel-space noise of std sigma


def test_model_mode_is_restored_and_sampling_runs_in_eval():
    model = make_model().train()
    x = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    estimator = RandomizedSmoothingEstimator(art_classifier(model), sigma=0.25)
    labels, radii = estimator.certify(x, n0=20, n=200, alpha=0.01, batch_size=100, seed=1)
    assert model.training and model[1].training
    model.eval()
    labels_eval, radii_eval = estimator.certify(x, n0=20, n=200, alpha=0.01, batch_size=100, seed=1)
    np.testing.assert_array_equal(labels, labels_eval)
    np.testing.assert_array_equal(radii, radii_eval)


def test_bad_inputs():
    model = make_model().eval()
    with pytest.raises(ValueError, match="clip_values"):
        RandomizedSmoothingEstimator(
            PyTorchClassifier(model, torch.nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0, 255)), sigma=0.25
        )
    with pytest.raises(TypeError, match="PyTorchClassifier"):
        RandomizedSmoothingEstimator(model, sigma=0.25)
    estimator = RandomizedSmoothingEstimator(art_classifier(model), sigma=0.25)
    with pytest.raises(TypeError, match="numpy array"):
        estimator.certify(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="outside the declared range"):
        estimator.certify(np.full((1, 1, 8, 8), 3.0, dtype=np.float32), n0=5, n=50)
    with pytest.raises(ValueError, match="sigma"):
        RandomizedSmoothingEstimator(art_classifier(model), sigma=0.0)
