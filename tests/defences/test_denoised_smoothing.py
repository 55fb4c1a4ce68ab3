"""DenoisedClassifier and the ART DenoiserPreprocessor: forward values, exact and BPDA gradients, certification."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier

from art_ext import certify
from art_ext.defences import DenoisedClassifier, DenoiserPreprocessor
from art_ext.defences.denoised_smoothing import DenoiserPreprocessorConfig
from art_ext.estimators import RandomizedSmoothingClassifier
from art_ext.models import SmallCNN
from art_ext.models.denoisers import DnCNN


def _models() -> tuple[DnCNN, SmallCNN]:
    torch.manual_seed(0)
    denoiser = DnCNN(in_channels=1, depth=3, width=8)
    torch.nn.init.normal_(denoiser.body[-1].weight, std=0.3)  # a non-identity denoiser
    classifier = SmallCNN(width=4)
    return denoiser.eval(), classifier.eval()


def _estimator(denoiser, classifier, **kwargs) -> PyTorchClassifier:
    return PyTorchClassifier(
        classifier, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 16, 16), nb_classes=10, clip_values=(0.0, 1.0),
        preprocessing_defences=[DenoiserPreprocessor(denoiser, **kwargs)], device_type="cpu",
    )


def _inputs(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 16, 16), dtype=np.float32)
    return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


def test_denoised_classifier_composes() -> None:
    denoiser, classifier = _models()
    x = torch.rand(4, 1, 16, 16)
    out = DenoisedClassifier(denoiser, classifier)(x)
    # same-kernel: the same two modules on the same batch in the same order
    assert torch.equal(out, classifier(denoiser(x)))
    assert not torch.allclose(out, classifier(x))  # the denoiser really changes the input


@pytest.mark.parametrize("gradient", ["exact", "bpda"])
def test_preprocessor_forward_equals_denoised_classifier(gradient: str) -> None:
    denoiser, classifier = _models()
    x, _ = _inputs()
    estimator = _estimator(denoiser, classifier, gradient=gradient)
    expected = DenoisedClassifier(denoiser, classifier)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(estimator.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_exact_gradient_is_autograd_through_the_denoiser() -> None:
    denoiser, classifier = _models()
    x, y = _inputs()
    grad = _estimator(denoiser, classifier, gradient="exact").loss_gradient(x, y)
    x_t = torch.from_numpy(x).requires_grad_(True)
    loss = F.cross_entropy(DenoisedClassifier(denoiser, classifier)(x_t), torch.from_numpy(y).argmax(1))
    (expected,) = torch.autograd.grad(loss, x_t)
    np.testing.assert_allclose(grad, expected.numpy(), rtol=1e-4, atol=1e-7)


def test_bpda_gradient_equals_identity_surrogate() -> None:
    """BPDA: value of f(D(x)), gradient of f(u) at u = D(x) (the denoiser's Jacobian replaced by I)."""
    denoiser, classifier = _models()
    x, y = _inputs()
    grad = _estimator(denoiser, classifier, gradient="bpda").loss_gradient(x, y)
    u = denoiser(torch.from_numpy(x)).detach().requires_grad_(True)
    loss = F.cross_entropy(classifier(u), torch.from_numpy(y).argmax(1))
    (expected,) = torch.autograd.grad(loss, u)
    np.testing.assert_allclose(grad, expected.numpy(), rtol=1e-4, atol=1e-7)
    exact = _estimator(denoiser, classifier, gradient="exact").loss_gradient(x, y)
    assert not np.allclose(grad, exact, atol=1e-5)  # the two gradients really differ for this denoiser


def test_certification_through_art_equals_denoised_classifier() -> None:
    denoiser, classifier = _models()
    x, _ = _inputs(3)
    labels, radii = RandomizedSmoothingClassifier(_estimator(denoiser, classifier), sigma=0.25).certify(
        x, n0=20, n=200, alpha=0.01, batch_size=128, seed=3
    )
    certs = certify(
        DenoisedClassifier(denoiser, classifier).eval(), torch.from_numpy(x), n0=20, n=200, sigma=0.25, alpha=0.01,
        num_classes=10, batch_size=128, generator=torch.Generator().manual_seed(3),
    )
    # same-kernel: integer labels; the ART view runs the same modules on the same noisy batches
    np.testing.assert_array_equal(labels, certs.label.numpy())
    np.testing.assert_allclose(radii, certs.radius.numpy(), rtol=1e-12)


def test_preprocessor_batches_and_keeps_denoiser_in_eval_mode() -> None:
    denoiser, classifier = _models()
    denoiser.train()
    whole = DenoiserPreprocessor(denoiser)
    assert not denoiser.training  # the preprocessor owns eval mode, ART never sets it
    chunked = DenoiserPreprocessor(denoiser, batch_size=2)
    x = torch.rand(5, 1, 16, 16)
    out_whole, _ = whole.forward(x)
    out_chunked, y = chunked.forward(x, torch.arange(5))
    assert torch.allclose(out_whole, out_chunked, atol=1e-6)
    assert torch.equal(y, torch.arange(5))  # same-kernel: integer labels passed through
    assert torch.allclose(whole.estimate_forward(x), out_whole)


@pytest.mark.parametrize("kwargs, message", [({"gradient": "identity"}, "gradient"), ({"batch_size": 0}, "batch")])
def test_config_errors_name_the_value(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DenoiserPreprocessorConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        DenoiserPreprocessor(_models()[0], **kwargs)


def test_the_preprocessor_checks_its_numpy_and_tensor_inputs() -> None:
    """Before: NaN images went through the denoiser (NaN out) and a 3-D batch reached its first convolution."""
    denoiser, _ = _models()
    pre = DenoiserPreprocessor(denoiser)
    x, _ = _inputs(2)
    out, _ = pre(x)
    assert out.shape == x.shape and np.isfinite(out).all()
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        pre(bad)
    with pytest.raises(TypeError, match="float numpy array"):
        pre(x.astype(np.int64))
    with pytest.raises(ValueError, match=r"float tensor \[N, C, H, W\], got \(1, 16, 16\)"):
        pre.forward(torch.from_numpy(x[0]))
