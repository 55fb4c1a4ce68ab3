"""SmoothedInferenceClassifier: the numbers of the torch module, preprocessing kept behind the noise, ART layout kept,
explicit abstains, and gradients that are the smoothed model's EOT gradients (checked by value)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from art.attacks.evasion import AutoProjectedGradientDescent
from torch import nn

from art_ext.estimators import RandomizedSmoothingClassifier, SmoothedInferenceClassifier
from art_ext.models.classifiers import Normalize
from art_ext.smoothing import DEFAULT_MODE, SmoothedInference
from art_ext.testing import art_classifier, tiny_cnn, tiny_images

MEAN, STD = (0.4,), (0.3,)


def images(n: int = 12) -> np.ndarray:
    return tiny_images(n, seed=0).numpy()


def reference_module(model: nn.Module, sigma: float, seed: int, **kwargs) -> SmoothedInference:
    """The torch module the classifier must equal: ART's (mean, std) as the base's first layer, pixel noise."""
    return SmoothedInference(nn.Sequential(Normalize(MEAN, STD), model).eval(), sigma, num_classes=10,
                             generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("output", ["probabilities", "log_probabilities"])
@pytest.mark.parametrize("mode", ["prediction", "weighted", "soft"])
def test_predictions_equal_the_module_at_the_same_seed(mode, output) -> None:
    model = tiny_cnn()
    est = SmoothedInferenceClassifier(art_classifier(model, preprocessing=(MEAN, STD)), 0.3, mode=mode,
                                      num_samples=16, batch_size=64, output=output, seed=11)
    got = est.predict(images())
    module = reference_module(model, 0.3, 11, mode=mode, num_samples=16, batch_size=64)
    with torch.no_grad():
        want = module(torch.from_numpy(images())).numpy()
    if output == "log_probabilities":
        with np.errstate(divide="ignore"):
            want = np.log(want)  # a class without votes in a hard mode: -inf, as predict returns
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
    assert est.nb_classes == 10 and tuple(est.clip_values.ravel()) == (0.0, 1.0) and est.input_shape == (1, 8, 8)
    assert np.all(np.exp(got).max(axis=1) > 0 if output == "log_probabilities" else got.max(axis=1) > 0)


def test_the_default_mode_is_the_modules_and_the_default_output_is_log_probabilities() -> None:
    parameters = inspect.signature(SmoothedInferenceClassifier).parameters
    assert parameters["mode"].default == DEFAULT_MODE == "soft"
    assert parameters["output"].default == "log_probabilities"
    est = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.25, seed=0)
    scores = est.predict(images(4))
    assert (scores < 0).all() and np.allclose(np.exp(scores).sum(axis=1), 1.0, atol=1e-5)


def test_channels_first_is_kept_from_the_wrapped_estimator() -> None:
    """A channels-last estimator stays channels last: its NHWC inputs are accepted, NCHW ones refused with a hint."""

    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_cnn()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [N, H, W, C]
            return self.inner(x.permute(0, 3, 1, 2))

    inner = art_classifier(ChannelsLast().eval(), input_shape=(8, 8, 1), channels_first=False)
    est = SmoothedInferenceClassifier(inner, 0.0, mode="prediction", seed=0)
    assert est.channels_first is False and est.input_shape == (8, 8, 1)
    x_nhwc = images(5).transpose(0, 2, 3, 1)
    # same-kernel: integer labels; sigma 0 is the inner estimator's own forward
    np.testing.assert_array_equal(est.predict(x_nhwc).argmax(1), inner.predict(x_nhwc).argmax(1))
    with pytest.raises(ValueError, match="channel order looks transposed"):
        est.predict(images(5))


def test_sigma_zero_preserves_the_wrapped_estimator() -> None:
    inner = art_classifier(tiny_cnn(), preprocessing=(MEAN, STD))
    est = SmoothedInferenceClassifier(inner, 0.0, seed=0)  # soft: log softmax of the wrapped model's logits
    np.testing.assert_allclose(est.predict(images()), F.log_softmax(torch.from_numpy(inner.predict(images())), 1),
                               atol=1e-5)


def test_ties_are_explicit_abstains_and_never_zero_rows() -> None:
    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 3.0, 2.0]]).expand(x.shape[0], 3) + 0 * x.flatten(1)[:, :1]

    inner = art_classifier(Constant(), nb_classes=3)
    est = SmoothedInferenceClassifier(inner, 0.2, mode="weighted", weights=(1.0, 1.0), num_samples=4,
                                      output="probabilities", seed=0)
    np.testing.assert_allclose(est.predict(images(3)), [[0.0, 0.5, 0.5]] * 3)
    assert est.predict_labels(images(3)).tolist() == [-1, -1, -1]


@pytest.mark.parametrize("make", [
    lambda inner, seed: SmoothedInferenceClassifier(inner, 0.25, num_samples=16, seed=seed),
    lambda inner, seed: RandomizedSmoothingClassifier(inner, 0.25, num_samples=16, seed=seed),
], ids=["smoothed_inference", "randomized_smoothing"])
def test_loss_gradient_is_the_eot_gradient_of_the_smoothed_model_not_the_clean_base(make, digits_cnn,
                                                                                  digits_test) -> None:
    """Equal to torch autograd of -log SmoothedInference(x)_y (mean over the batch) at the same seed, and far from
    the gradient of the noise-free base that ART's PyTorchRandomizedSmoothing returns (ecosystem.md §2.4 item 1)."""
    inner = art_classifier(digits_cnn, preprocessing=(MEAN, STD))
    x, y = digits_test[0][:6].numpy(), digits_test[1][:6].numpy()
    got = make(inner, 5).loss_gradient(x, y)

    module = reference_module(digits_cnn, 0.25, 5, num_samples=16)
    x_t = torch.from_numpy(x).requires_grad_(True)
    loss = F.nll_loss(module(x_t).log(), torch.from_numpy(y))
    (want,) = torch.autograd.grad(loss, x_t)
    error = np.linalg.norm((got - want.numpy()).reshape(6, -1), axis=1) / np.linalg.norm(want.reshape(6, -1), axis=1)
    assert error.max() < 1e-3, error  # measured 0; one run showed float32 kernel differences of 8e-8 absolute

    clean = inner.loss_gradient(x, np.eye(10)[y])  # ART: the base without noise (cross-entropy, mean)
    relative = np.linalg.norm((got - clean).reshape(6, -1), axis=1) / np.linalg.norm(clean.reshape(6, -1), axis=1)
    assert relative.min() > 0.3, relative  # measured: 0.62 to 3.6e6 (confident images have tiny clean gradients)
    # the same classifier at sigma = 0 is the base, so the difference above is the noise, not a scale or sign
    at_zero = SmoothedInferenceClassifier(inner, 0.0, seed=0).loss_gradient(x, y)
    assert np.linalg.norm(at_zero - clean) <= 1e-4 * np.linalg.norm(clean)


def test_loss_gradient_averages_over_noise_draws(digits_cnn, digits_test) -> None:
    """More draws, less noise: two independent M = 256 gradients agree far better than two M = 1 gradients (fixed
    seeds; measured mean cosines 0.97 vs 0.49)."""
    inner = art_classifier(digits_cnn)
    x, y = digits_test[0][:6].numpy(), digits_test[1][:6].numpy()

    def grads(m: int, seed: int) -> np.ndarray:
        return SmoothedInferenceClassifier(inner, 0.25, num_samples=m, seed=seed).loss_gradient(x, y).reshape(6, -1)

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).mean())

    assert cos(grads(256, 1), grads(256, 2)) > cos(grads(1, 1), grads(1, 2)) + 0.3


@pytest.mark.parametrize("output", ["probabilities", "log_probabilities"])
def test_class_gradient_is_the_gradient_of_the_outputs_at_the_same_seed(output) -> None:
    model = tiny_cnn()
    inner = art_classifier(model, preprocessing=(MEAN, STD))
    x = images(3)

    def reference(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x_t = torch.from_numpy(x).requires_grad_(True)
        scores = reference_module(model, 0.3, seed, num_samples=8)(x_t)
        return x_t, scores.log() if output == "log_probabilities" else scores

    est = SmoothedInferenceClassifier(inner, 0.3, num_samples=8, output=output, seed=2)
    all_classes = est.class_gradient(x)  # first call: first draws
    x_t, out = reference(2)
    want = torch.stack([torch.autograd.grad(out[:, c].sum(), x_t, retain_graph=True)[0] for c in range(10)], 1)
    assert all_classes.shape == (3, 10, 1, 8, 8)
    np.testing.assert_allclose(all_classes, want.numpy(), rtol=1e-4, atol=1e-6)

    est = SmoothedInferenceClassifier(inner, 0.3, num_samples=8, output=output, seed=2)
    per_example = est.class_gradient(x, label=np.array([4, 1, 4]))
    np.testing.assert_allclose(per_example[:, 0], want.numpy()[[0, 1, 2], [4, 1, 4]], rtol=1e-4, atol=1e-6)
    est = SmoothedInferenceClassifier(inner, 0.3, num_samples=8, output=output, seed=2)
    np.testing.assert_allclose(est.class_gradient(x, label=7)[:, 0], want.numpy()[:, 7], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        est.class_gradient(x, label=10)
    with pytest.raises(ValueError, match="one per input"):
        est.class_gradient(x, label=np.array([1, 2]))


def test_gradients_flow_through_a_tensor_in_tensor_out_call_as_arts_pytorch_pgd_makes() -> None:
    est = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.3, num_samples=4, seed=0)
    x = torch.from_numpy(images(2))
    grad = est.loss_gradient(x, torch.eye(10)[[3, 4]])
    assert isinstance(grad, torch.Tensor) and grad.shape == x.shape and not x.requires_grad
    twin = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.3, num_samples=4, seed=0)
    np.testing.assert_allclose(grad.numpy(), twin.loss_gradient(images(2), np.array([3, 4])), rtol=1e-6)


def test_hard_modes_refuse_gradients() -> None:
    hard = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.2, mode="prediction", num_samples=4, seed=0)
    with pytest.raises(ValueError, match="not differentiable"):
        hard.loss_gradient(images(2), np.array([0, 1]))


def test_apgd_accepts_the_default_output_with_both_losses() -> None:
    est = SmoothedInferenceClassifier(art_classifier(tiny_cnn()), 0.25, num_samples=4, seed=0)
    for loss_type in ("cross_entropy", "difference_logits_ratio"):
        attack = AutoProjectedGradientDescent(est, norm=2, eps=0.5, eps_step=0.2, max_iter=2, nb_random_init=1,
                                              loss_type=loss_type, verbose=False)
        assert attack.estimator.model is est.model  # APGD rebuilds a classifier around the smoothed forward


def test_noise_is_added_in_pixel_space_before_the_preprocessing() -> None:
    model = tiny_cnn()
    seen: list[torch.Tensor] = []
    model[0].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach().clone()))
    est = SmoothedInferenceClassifier(art_classifier(model, preprocessing=(MEAN, STD)), 0.5, num_samples=400,
                                      seed=0)
    est.predict(np.full((1, 1, 8, 8), 0.5, dtype=np.float32))
    normalized_noise = torch.cat(seen) - (0.5 - MEAN[0]) / STD[0]
    # pixel noise of std 0.5 is std 0.5 / 0.3 after (x - mean) / std: 25,600 values, 5% tolerance (>> 5 s.e.)
    assert normalized_noise.std().item() == pytest.approx(0.5 / STD[0], rel=0.05)


def test_model_mode_flags_are_restored() -> None:
    model = tiny_cnn(batchnorm=True).train()
    est = SmoothedInferenceClassifier(art_classifier(model), 0.25, num_samples=4, seed=0)
    est.predict(images(2))
    est.loss_gradient(images(2), np.array([0, 1]))
    assert model.training and all(m.training for m in model.modules())
    model[1].eval()  # a mixed state is restored module by module
    est.class_gradient(images(2), label=3)
    assert model.training and not model[1].training


def test_normalized_noise_is_refused_for_a_channels_last_estimator() -> None:
    from art_ext.smoothing import NormalizedNoise

    inner = art_classifier(tiny_cnn(), input_shape=(8, 8, 1), channels_first=False)
    with pytest.raises(ValueError, match="channels_last"):
        SmoothedInferenceClassifier(inner, 0.25, noise_space=NormalizedNoise(MEAN, STD))
