import pytest
import torch

from art_ext.models.denoisers import DENOISER_ARCHITECTURES, DnCNN, MemNet, build_denoiser, dncnn_wide

SMALL = {
    "dncnn": {"depth": 4, "width": 8},
    "dncnn_wide": {"depth": 3},
    "memnet": {"channels": 8, "num_memory_blocks": 2, "num_resblocks": 2},
}


@pytest.mark.parametrize("architecture", sorted(DENOISER_ARCHITECTURES))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_identity_at_init(architecture: str, channels: int) -> None:
    torch.manual_seed(0)
    model = build_denoiser(architecture, in_channels=channels, **SMALL[architecture])
    x = torch.rand(3, channels, 12, 10)
    for mode in (True, False):  # identity in train mode (batch statistics) and in eval mode
        model.train(mode)
        out = model(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.equal(out, x)  # same-kernel: an identity module returns its input


@pytest.mark.parametrize("architecture", sorted(DENOISER_ARCHITECTURES))
def test_not_identity_after_a_gradient_step(architecture: str) -> None:
    """The zeroed last convolution still receives gradient, so training moves the denoiser off the identity."""
    torch.manual_seed(0)
    model = build_denoiser(architecture, in_channels=1, **SMALL[architecture])
    x = torch.rand(4, 1, 8, 8)
    clean = torch.zeros_like(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.mse_loss(model(x), clean).backward()
    opt.step()
    assert (model(x) - x).abs().max() > 1e-4


def test_dncnn_is_residual_and_paper_sized() -> None:
    torch.manual_seed(0)
    model = DnCNN(in_channels=1, depth=3, width=4).eval()
    torch.nn.init.normal_(model.body[-1].weight)
    x = torch.rand(2, 1, 6, 6)
    assert torch.allclose(model(x), x - model.body(x))
    # paper sizes (Salman et al. App. A): DnCNN 17 x 64 ~ 0.56 M, DnCNN-wide 17 x 128 ~ 2.2 M parameters
    assert sum(p.numel() for p in DnCNN().parameters()) == 558_400
    assert sum(p.numel() for p in dncnn_wide().parameters()) == 2_222_720
    # embedded default: depth 5, width 16 on 1 channel (7.3 k)
    assert sum(p.numel() for p in DnCNN(in_channels=1, depth=5, width=16).parameters()) == 7_312


def test_memnet_gates_see_short_and_long_term_memory() -> None:
    model = MemNet(in_channels=3, channels=8, num_memory_blocks=3, num_resblocks=6)
    # block m (0-based) gates 6 short-term outputs + (m + 1) long-term tensors of 8 channels each
    assert [block.gate[-1].in_channels for block in model.memory_blocks] == [8 * 7, 8 * 8, 8 * 9]
    assert len(model.memory_blocks[0].resblocks) == 6


@pytest.mark.parametrize(
    "factory, kwargs, message",
    [
        (DnCNN, {"depth": 1}, "depth"),
        (DnCNN, {"width": 0}, "width"),
        (MemNet, {"num_resblocks": 0}, "num_resblocks"),
        (MemNet, {"in_channels": 1.5}, "in_channels"),
    ],
)
def test_bad_arguments_are_named(factory, kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


def test_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="unet"):
        build_denoiser("unet")
