"""ART adapter of smoothed inference: same numbers as the module, preprocessing kept, abstains explicit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import ProjectedGradientDescent
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_ext.smoothing import SmoothedInference
from art_ext.estimators import SmoothedInferenceClassifier
from art_ext.models.classifiers import Normalize

MEAN, STD = (0.4,), (0.3,)


def raw_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10)).eval()


def art_classifier(model: nn.Module) -> PyTorchClassifier:
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, clip_values=(0.0, 1.0),
                             preprocessing=(MEAN, STD), device_type="cpu")


def images() -> np.ndarray:
    return np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)


@pytest.mark.parametrize("mode", ["prediction", "weighted", "soft"])
def test_predictions_equal_the_module_at_the_same_seed(mode) -> None:
    model = raw_model()
    est = SmoothedInferenceClassifier(art_classifier(model), 0.3, mode=mode, num_samples=16, batch_size=64, seed=11)
    got = est.predict(images())
    # the module: ART's preprocessing (mean, std) becomes the base's first layer, noise in pixel space before it
    module = SmoothedInference(nn.Sequential(Normalize(MEAN, STD), model).eval(), 0.3, num_classes=10, mode=mode,
                               num_samples=16, batch_size=64, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        want = module(torch.from_numpy(images())).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert est.nb_classes == 10 and tuple(est.clip_values.ravel()) == (0.0, 1.0) and est.input_shape == (1, 8, 8)
    assert np.all(got.max(axis=1) > 0)  # never an all-zero row


def test_sigma_zero_preserves_the_wrapped_estimator() -> None:
    inner = art_classifier(raw_model())
    est = SmoothedInferenceClassifier(inner, 0.0, mode="prediction", seed=0)
    assert np.array_equal(est.predict(images()).argmax(1), inner.predict(images()).argmax(1))


def test_ties_are_explicit_abstains() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 3.0, 2.0]]).expand(x.shape[0], 3) + 0 * x.flatten(1)[:, :1]

    inner = PyTorchClassifier(Constant(), nn.CrossEntropyLoss(), (1, 8, 8), 3, clip_values=(0.0, 1.0),
                              device_type="cpu")
    est = SmoothedInferenceClassifier(inner, 0.2, mode="weighted", weights=(1.0, 1.0), num_samples=4, seed=0)
    scores = est.predict(images()[:3])
    np.testing.assert_allclose(scores, [[0.0, 0.5, 0.5]] * 3)
    assert est.predict_labels(images()[:3]).tolist() == [-1, -1, -1]


def test_art_attacks_run_on_soft_mode_and_hard_modes_refuse_gradients() -> None:
    inner = art_classifier(raw_model())
    x = images()[:4]
    y = np.eye(10)[inner.predict(x).argmax(1)]
    soft = SmoothedInferenceClassifier(inner, 0.2, mode="soft", num_samples=4, seed=0)
    grad = soft.loss_gradient(x, y)
    assert grad.shape == x.shape and np.isfinite(grad).all() and np.abs(grad).sum() > 0
    x_adv = ProjectedGradientDescent(soft, norm=np.inf, eps=0.05, eps_step=0.02, max_iter=2,
                                     verbose=False).generate(x, y=y)
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6 and not np.array_equal(x_adv, x)
    hard = SmoothedInferenceClassifier(inner, 0.2, mode="prediction", num_samples=4, seed=0)
    with pytest.raises(ValueError, match="not differentiable"):
        hard.loss_gradient(x, y)
