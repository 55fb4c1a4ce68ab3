import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from art_ext import certify, predict, sample_counts


class ConstantBrightness(nn.Module):
    """Votes class round(9 * mean pixel): image i of constant value i/9 votes class i under tiny noise (known
    votes, and it keeps every noisy input: the shared toys of ``art_ext.testing`` offer neither)."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        cls = (x.flatten(1).mean(1) * 9).round().clamp(0, 9).long()
        return nn.functional.one_hot(cls, 10).float()


def test_counts_are_assigned_to_the_right_image_when_batches_mix_images():
    x = torch.stack([torch.full((1, 3, 3), i / 9) for i in (3, 7, 0, 9)])
    base = ConstantBrightness().eval()
    counts = sample_counts(base, x, n=7, sigma=1e-4, num_classes=10, batch_size=5)  # 28 samples in batches of 5
    assert counts.dtype == torch.int64 and counts.shape == (4, 10)
    expected = torch.zeros(4, 10, dtype=torch.long)
    expected[torch.arange(4), torch.tensor([3, 7, 0, 9])] = 7
    assert torch.equal(counts, expected)  # same-kernel: integer counts
    assert [t.shape[0] for t in base.inputs] == [5, 5, 5, 5, 5, 3]


def test_noise_is_fresh_gaussian_with_sigma_in_pixel_space_and_not_clipped():
    base = ConstantBrightness().eval()
    x = torch.full((2, 1, 8, 8), 0.5)
    sample_counts(base, x, n=500, sigma=0.5, num_classes=10, batch_size=250, generator=torch.Generator().manual_seed(0))
    noisy = torch.cat(base.inputs)  # [1000, 1, 8, 8]
    noise = noisy - 0.5
    assert noise.mean().abs() < 0.01  # 64,000 draws: sd of the mean 0.002
    assert noise.std().item() == pytest.approx(0.5, rel=0.02)
    assert noisy.min() < 0 and noisy.max() > 1  # no clipping, as Cohen et al.
    assert len({tuple(t.flatten()[:8].tolist()) for t in noisy}) == 1000  # no draw reused


def test_same_seed_same_counts_and_rows_sum_to_n(tiny_cnn, gen):
    x = torch.rand(5, 1, 8, 8, generator=gen)
    a = sample_counts(tiny_cnn, x, n=333, sigma=0.25, num_classes=10, batch_size=100,
                      generator=torch.Generator().manual_seed(3))
    b = sample_counts(tiny_cnn, x, n=333, sigma=0.25, num_classes=10, batch_size=100,
                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.sum(1).tolist() == [333] * 5  # same-kernel: integer counts, the same call twice


def test_device_batches_never_exceed_batch_size():
    base = ConstantBrightness().eval()
    sample_counts(base, torch.full((3, 1, 2, 2), 0.5), n=1000, sigma=0.1, num_classes=10, batch_size=64)
    assert max(t.shape[0] for t in base.inputs) == 64 and sum(t.shape[0] for t in base.inputs) == 3000


def _peak_rss_mb(n: int) -> float:
    script = textwrap.dedent(f"""
        import resource, torch
        from art_ext import sample_counts
        torch.set_num_threads(1)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10)).eval()
        x = torch.rand(1, 3, 16, 16)
        sample_counts(model, x, n=1000, sigma=0.25, num_classes=10, batch_size=1000)  # warm-up allocations
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        counts = sample_counts(model, x, n={n}, sigma=0.25, num_classes=10, batch_size=1000)
        assert int(counts.sum()) == {n}
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_memory_does_not_grow_with_n():
    # materializing n = 100,000 noisy copies of a 3x16x16 image would take 307 MB; streaming keeps one batch
    growth_small, growth_large = _peak_rss_mb(1_000), _peak_rss_mb(100_000)
    assert growth_large < growth_small + 20, (growth_small, growth_large)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=torch.rand(1, 8, 8)), "4-D"),
        (dict(x=torch.randint(0, 2, (1, 1, 8, 8))), "floating"),
        (dict(x=torch.full((1, 1, 8, 8), float("nan"))), "NaN"),
        (dict(x=torch.full((1, 1, 8, 8), 2.0)), r"outside the declared range \[0.0, 1.0\]"),
        (dict(sigma=0.0), "sigma must be finite and > 0"),
        (dict(sigma=-0.5), "got -0.5"),
        (dict(sigma=float("inf")), "sigma"),
        (dict(n=0), "n must be >= 1, got 0"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(num_classes=1), "num_classes must be an int >= 2, got 1"),
        (dict(num_classes=5), "base returns 10 class scores per sample but 5 classes are declared"),
    ],
)
def test_invalid_arguments_name_the_bad_value(tiny_cnn, kwargs, message):
    args = dict(x=torch.rand(2, 1, 8, 8), n=10, sigma=0.25, num_classes=10, batch_size=8)
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(ValueError, match=message):
        sample_counts(tiny_cnn, x, **args)


def test_training_mode_base_is_refused(tiny_cnn):
    x = torch.rand(1, 1, 8, 8)
    tiny_cnn.train()
    with pytest.raises(ValueError, match="training mode"):
        sample_counts(tiny_cnn, x, n=10, sigma=0.25, num_classes=10, batch_size=8)
    tiny_cnn.eval()
    tiny_cnn[1].train()  # only the BatchNorm in train mode: still refused
    with pytest.raises(ValueError, match="training mode"):
        certify(tiny_cnn, x, n0=5, n=10, sigma=0.25, alpha=0.01, num_classes=10, batch_size=8)


@pytest.mark.parametrize("name, value", [("alpha", 0.0), ("alpha", 1.0), ("n0", 0)])
def test_certify_rejects_bad_alpha_and_n0(tiny_cnn, name, value):
    args = dict(n0=5, n=10, sigma=0.25, alpha=0.01, num_classes=10, batch_size=8)
    args[name] = value
    with pytest.raises(ValueError, match=name):
        certify(tiny_cnn, torch.rand(1, 1, 8, 8), **args)
    if name == "alpha":
        with pytest.raises(ValueError, match="alpha"):
            predict(tiny_cnn, torch.rand(1, 1, 8, 8), n=10, sigma=0.25, alpha=value, num_classes=10, batch_size=8)


def test_warns_when_n_and_alpha_can_never_certify(tiny_cnn):
    with pytest.warns(RuntimeWarning, match="can never certify"):
        certs = certify(tiny_cnn, torch.rand(2, 1, 8, 8), n0=5, n=9, sigma=0.25, alpha=0.001, num_classes=10,
                        batch_size=8)
    assert (certs.label == -1).all()  # 0.001 ** (1/9) = 0.46 < 0.5: every point abstains
