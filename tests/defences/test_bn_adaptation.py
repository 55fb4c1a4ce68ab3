import io

import pytest
import torch
from torch import nn

from art_ext.defences import BNAdaptationConfig, CertificationThroughAdaptation, adapt_batchnorm
from art_ext.defences.bn_adaptation import batchnorm_layers
from art_ext.smoothing import DEFAULT_SIGMAS, NoiseKeys, NoiseStreams, auto_noise_certify, certify
from art_ext.testing import tiny_cnn
from art_ext.types import ABSTAIN


def bn_model(seed: int = 0) -> nn.Module:
    """Conv-BN2d-ReLU-Conv-BN2d-ReLU-Linear-BN1d-Linear on 1x6x6, with non-trivial training statistics and affine
    parameters, in eval mode. Kept here rather than ``art_ext.testing.tiny_cnn(batchnorm=True)``: the tests need
    several BatchNorm layers (2d and 1d, so that one layer's adaptation feeds the next) and running statistics
    and affine parameters away from their defaults."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 36, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5),
    )
    with torch.no_grad():
        for _, bn in batchnorm_layers(model):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return model.eval()


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def keyed_noisy(clean: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """The noisy set adapt_batchnorm draws with ``generator=torch.Generator().manual_seed(seed)``: one key per image
    from one draw, image i + sigma * its key's sample 0."""
    keys = NoiseKeys.draw(torch.Generator().manual_seed(seed), clean.shape[0])
    return clean + sigma * NoiseStreams(keys, clean.shape[1:]).draw(0, 1)[:, 0]


def reference_stats(model: nn.Module, noisy: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Layer by layer, directly on the whole noisy set: unbiased per-channel variance of each BN layer's input when
    all earlier layers already use their reference statistics (a plain re-derivation, no streaming)."""
    model = __import__("copy").deepcopy(model).eval()
    out = []
    for _, bn in batchnorm_layers(model):
        seen = []
        handle = bn.register_forward_pre_hook(lambda m, inp, seen=seen: seen.append(inp[0].double()))
        with torch.no_grad():
            model(noisy)
        handle.remove()
        h = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1)  # [C, N * spatial]
        mean, var = h.mean(1), h.var(1, unbiased=True)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        out.append((mean, var))
    return out


def test_rho_one_equals_statistics_computed_directly_on_the_noisy_set():
    model, clean = bn_model(), images(50)
    # batch_size 16 forces several chunks; each image's noise comes from its own key, whatever the chunking
    noisy = keyed_noisy(clean, 0.5, 3)
    adapted = adapt_batchnorm(model, clean, sigma=0.5, rho=1.0, batch_size=16,
                              generator=torch.Generator().manual_seed(3))
    for (_, bn), (mean, var) in zip(batchnorm_layers(adapted), reference_stats(model, noisy), strict=True):
        torch.testing.assert_close(bn.running_mean, mean.float(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, var.float(), rtol=1e-5, atol=1e-6)


def test_first_layer_matches_pytorch_running_var_convention():
    """A train-mode pass with momentum=None after reset stores the batch mean and the UNBIASED batch variance in
    running_var; the first BN layer (whose input does not depend on other BN layers) must match it."""
    model, clean = bn_model(), images(40)
    noisy = keyed_noisy(clean, 0.3, 5)
    adapted = adapt_batchnorm(model, clean, sigma=0.3, batch_size=1000, generator=torch.Generator().manual_seed(5))
    torch_way = __import__("copy").deepcopy(model)
    first = batchnorm_layers(torch_way)[0][1]
    first.reset_running_stats()
    first.momentum = None
    first.train()
    with torch.no_grad():
        torch_way(noisy)
    ours = batchnorm_layers(adapted)[0][1]
    torch.testing.assert_close(ours.running_mean, first.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.running_var, first.running_var, rtol=1e-5, atol=1e-6)


def test_rho_zero_leaves_statistics_unchanged_and_original_is_byte_identical():
    model, clean = bn_model(), images(30)
    before = state_bytes(model)
    adapted = adapt_batchnorm(model, clean, sigma=0.5, rho=0.0, generator=torch.Generator().manual_seed(0))
    assert state_bytes(adapted) == before
    adapt_batchnorm(model, clean, sigma=0.5, rho=1.0, generator=torch.Generator().manual_seed(0))
    assert state_bytes(model) == before  # the input model is never modified
    assert not model.training


def test_intermediate_rho_mixes_means_and_standard_deviations_as_eq4():
    model, clean = bn_model(), images(40)
    full = adapt_batchnorm(model, clean, sigma=0.4, rho=1.0, generator=torch.Generator().manual_seed(2))
    # rho = 0.3 only on a model with ONE BN layer, where the target statistics do not depend on other layers' mix
    single = nn.Sequential(*list(model.children())[:3]).eval()
    full_single = adapt_batchnorm(single, clean, sigma=0.4, rho=1.0, generator=torch.Generator().manual_seed(2))
    mixed = adapt_batchnorm(single, clean, sigma=0.4, rho=0.3, generator=torch.Generator().manual_seed(2))
    bn_t, bn_T, bn_mix = full_single[1], single[1], mixed[1]
    torch.testing.assert_close(bn_t.running_mean, batchnorm_layers(full)[0][1].running_mean)
    torch.testing.assert_close(bn_mix.running_mean, 0.3 * bn_t.running_mean + 0.7 * bn_T.running_mean)
    std = 0.3 * bn_t.running_var.sqrt() + 0.7 * bn_T.running_var.sqrt()
    torch.testing.assert_close(bn_mix.running_var, std**2)


def test_affine_parameters_never_change_and_adapted_copy_is_frozen_eval():
    model, clean = bn_model(), images(30)
    adapted = adapt_batchnorm(model, clean, sigma=0.25)
    for (_, a), (_, o) in zip(batchnorm_layers(adapted), batchnorm_layers(model), strict=True):
        # same-kernel: copied parameters, never computed; the last check asserts a difference
        assert torch.equal(a.weight, o.weight) and torch.equal(a.bias, o.bias)
        assert a.eps == o.eps and a.momentum == o.momentum
        # same-kernel: asserts a difference (it adapted)
        assert not torch.equal(a.running_mean, o.running_mean)  # it did adapt
    assert not any(m.training for m in adapted.modules())
    assert not any(p.requires_grad for p in adapted.parameters())


def test_adapted_outputs_are_batch_independent():
    adapted = adapt_batchnorm(bn_model(), images(30), sigma=0.5, generator=torch.Generator().manual_seed(0))
    x = images(8, seed=9)
    with torch.no_grad():
        together = adapted(x)
        alone = torch.cat([adapted(x[i : i + 1]) for i in range(8)])
        shuffled = adapted(x.flip(0)).flip(0)
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(together, shuffled)


def test_adaptation_is_deterministic_given_a_generator_and_independent_of_batch_size():
    model, clean = bn_model(), images(64)
    a = adapt_batchnorm(model, clean, sigma=0.5, batch_size=64, generator=torch.Generator().manual_seed(4))
    b = adapt_batchnorm(model, clean, sigma=0.5, batch_size=64, generator=torch.Generator().manual_seed(4))
    assert state_bytes(a) == state_bytes(b)
    # the noise is keyed per image, so batch_size changes only the float summation order of the merged moments
    # (and the conv kernels' batch blocking): float32 statistics within rtol 1e-5 (issue 19's float32 tolerance)
    for bs in (7, 37):
        c = adapt_batchnorm(model, clean, sigma=0.5, batch_size=bs, generator=torch.Generator().manual_seed(4))
        for (_, p), (_, q) in zip(batchnorm_layers(c), batchnorm_layers(a), strict=True):
            torch.testing.assert_close(p.running_mean, q.running_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(p.running_var, q.running_var, rtol=1e-5, atol=1e-6)
    c = adapt_batchnorm(model, clean, sigma=0.0, batch_size=7)  # sigma 0: no noise, so batching is the only change
    d = adapt_batchnorm(model, clean, sigma=0.0, batch_size=64)
    for (_, p), (_, q) in zip(batchnorm_layers(c), batchnorm_layers(d), strict=True):
        torch.testing.assert_close(p.running_var, q.running_var, rtol=1e-6, atol=1e-7)


def test_bad_inputs_raise_clear_errors():
    model, clean = bn_model(), images(10)
    with pytest.raises(ValueError, match="no BatchNorm"):
        adapt_batchnorm(tiny_cnn(size=6, num_classes=3), clean, sigma=0.5)
    with pytest.raises(ValueError, match="rho must be in"):
        adapt_batchnorm(model, clean, sigma=0.5, rho=1.5)
    with pytest.raises(ValueError, match="sigma"):
        adapt_batchnorm(model, clean, sigma=-0.1)
    with pytest.raises(ValueError, match="clean_images has values"):
        adapt_batchnorm(model, clean * 3, sigma=0.5)
    with pytest.raises(ValueError, match="batch_size"):
        BNAdaptationConfig(sigma=0.5, batch_size=0)
    untracked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="track_running_stats=False"):
        adapt_batchnorm(untracked, clean, sigma=0.5)
    shared_bn = nn.BatchNorm2d(1)
    twice = nn.Sequential(shared_bn, nn.ReLU(), shared_bn).eval()
    with pytest.raises(ValueError, match="called more than once"):
        adapt_batchnorm(twice, clean, sigma=0.5)


# --- Auto-Noise and Algorithm 1 --------------------------------------------------------------------------------


class CountingBase(nn.Module):
    """Votes for class 0 when the mean pixel is above a threshold; records every noisy input it sees (a known
    decision rule, so the certified sigma is predictable; ``art_ext.testing.CallRecorder`` records sizes only)."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        score = (x.flatten(1).mean(1) - self.threshold) * 50
        return torch.stack([score, -score], dim=1)


def test_auto_noise_final_stage_never_reuses_selection_draws():
    sigmas = (0.1, 0.3)
    bases = {s: CountingBase().eval() for s in sigmas}
    x = torch.full((2, 1, 4, 4), 0.7)
    x[1] = 0.55
    certs = auto_noise_certify(lambda s: bases[s], x, sigmas=sigmas, n_auto=40, n0=10, n=200, alpha=0.01,
                               num_classes=2, batch_size=25, generator=torch.Generator().manual_seed(0))
    seen = {s: torch.cat(b.seen) for s, b in bases.items()}
    per_image_selection = 10 + 40  # n0 + n_auto per sigma
    for s in sigmas:
        chosen = int((certs.sigma == s).sum())
        assert seen[s].shape[0] == 2 * per_image_selection + chosen * (10 + 200)  # exactly the draws required
        selection, final = seen[s][: 2 * per_image_selection], seen[s][2 * per_image_selection :]
        if chosen:  # no final-stage sample equals any selection-stage sample
            distances = torch.cdist(final.flatten(1), selection.flatten(1))
            assert distances.min() > 0
    assert certs.selection_radius.shape == (2, 2) and certs.n_auto == 40 and certs.n == 200
    # the chosen sigma is the one with the largest selection radius
    expected = torch.tensor(sigmas, dtype=torch.float64)[certs.selection_radius.argmax(1)]
    assert torch.equal(certs.sigma, expected)  # same-kernel: sigmas copied from the grid by index


def test_auto_noise_prefers_large_sigma_when_far_from_boundary_and_ties_go_to_smallest():
    base = CountingBase().eval()
    x = torch.stack([torch.full((1, 4, 4), 0.95), torch.full((1, 4, 4), 0.5)])  # far from / on the boundary
    certs = auto_noise_certify(lambda s: base, x, sigmas=(0.5, 0.1, 1.0), n_auto=100, n0=20, n=500, alpha=0.001,
                               num_classes=2, batch_size=500, generator=torch.Generator().manual_seed(1))
    assert certs.sigmas == (0.1, 0.5, 1.0)
    # image 0: the mean of 16 pixels has noise std sigma/4, margin 0.45 -> certified at every sigma, largest radius
    # at sigma 1.0 (radius grows with sigma until p_A saturates)
    assert certs.sigma[0] == 1.0 and certs.label[0] == 0 and certs.radius[0] > 0
    # image 1 sits on the boundary: every selection run abstains (radius 0 everywhere) -> smallest sigma
    assert torch.all(certs.selection_radius[1] == 0) and certs.sigma[1] == 0.1
    assert certs.label[1] == ABSTAIN and certs.radius[1] == 0


def linear_bn_model() -> nn.Module:
    """Mean pixel -> BN1d -> 2 logits; 3 classes with class 2 never winning (hand-set statistics and weights, so
    that the original and the adapted decisions are known)."""
    class MeanPixel(nn.Module):
        def forward(self, x):
            return x.flatten(1).mean(1, keepdim=True)

    model = nn.Sequential(MeanPixel(), nn.BatchNorm1d(1), nn.Linear(1, 3))
    with torch.no_grad():
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(0.01)
        model[2].weight.copy_(torch.tensor([[10.0], [-10.0], [0.0]]))
        model[2].bias.copy_(torch.tensor([0.0, 0.0, -100.0]))
    return model.eval()


def test_prediction_is_always_the_original_model_and_abstains_when_f_and_g_disagree():
    model = linear_bn_model()
    # Adaptation images have mean pixel ~0.2: with rho = 1 the adapted BN centres at 0.2, so for inputs with mean
    # pixel in (0.2, 0.5) the original f says class 1 while the adapted smoothed g says class 0.
    clean = torch.full((20, 1, 4, 4), 0.2) + 0.05 * torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cta = CertificationThroughAdaptation(model, clean, num_classes=3, sigmas=(0.1, 0.2))
    x = torch.stack([torch.full((1, 4, 4), v) for v in (0.9, 0.35, 0.05)])
    with torch.no_grad():
        f_labels = model(x).argmax(1)
    assert f_labels.tolist() == [0, 1, 1]
    # same-kernel: integer labels of the same model call on the same batch of 3
    assert torch.equal(cta.predict(x), f_labels)
    gen = torch.Generator().manual_seed(0)
    fixed = cta.certify(x, sigma=0.1, n0=20, n=300, alpha=0.001, batch_size=300, generator=gen)
    auto = cta.certify_auto_noise(x, n_auto=100, n0=20, n=300, alpha=0.001, batch_size=300, generator=gen)
    for certs in (fixed, auto):
        # same-kernel: integer labels of the same model call on the same batch
        assert torch.equal(certs.prediction, f_labels)  # predictions are f's, never abstain
        assert certs.label[0] == 0 and certs.radius[0] > 0  # f and g agree far from both boundaries
        assert certs.label[1] == ABSTAIN and certs.radius[1] == 0  # g certifies class 0, f says 1: abstain
        assert certs.label[2] == 1 and certs.radius[2] > 0
    # the adapted g really does certify class 0 at image 1 (so the abstention came from the disagreement rule)
    g = certify(cta.adapted(0.1), x[1:2], n0=20, n=300, sigma=0.1, alpha=0.001, num_classes=3, batch_size=300,
                generator=torch.Generator().manual_seed(0))
    assert g.label.item() == 0


def test_cta_caches_adapted_copies_and_never_touches_the_model():
    model, clean = bn_model(), images(30)
    before = state_bytes(model)
    cta = CertificationThroughAdaptation(model, clean, num_classes=5, sigmas=DEFAULT_SIGMAS)
    first = cta.adapted(0.5)
    assert cta.adapted(0.5) is first
    other = CertificationThroughAdaptation(model, clean, num_classes=5)
    other.adapted(0.25)
    assert state_bytes(other.adapted(0.5)) == state_bytes(first)  # per-sigma seed, not order-dependent
    x = images(6, seed=3)
    cta.certify_auto_noise(x, n_auto=30, n0=10, n=60, alpha=0.05, batch_size=200,
                           generator=torch.Generator().manual_seed(0))
    assert state_bytes(model) == before and not model.training
    assert set(cta._adapted) == set(DEFAULT_SIGMAS)


def test_prediction_equals_original_model_on_every_input():
    model = bn_model()
    cta = CertificationThroughAdaptation(model, images(40), num_classes=5, sigmas=(0.25, 0.5))
    x = images(64, seed=11)
    with torch.no_grad():
        expected = model(x).argmax(1)
        by_ten = torch.cat([model(xb).argmax(1) for xb in x.split(10)])  # predict's batches: the same kernels
    assert torch.equal(cta.predict(x, batch_size=10), by_ten)  # same-kernel: integer labels, f on the same batches
    certs = cta.certify(x, sigma=0.5, n0=10, n=50, alpha=0.05, batch_size=500,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(certs.prediction, expected)  # same-kernel: integer labels of f on the same batch of 64
    issued = ~certs.abstained
    # same-kernel: integer labels of f on the same batch of 64
    assert torch.equal(certs.label[issued], expected[issued])  # a certificate is only ever for f(x)
