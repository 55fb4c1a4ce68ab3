"""UNet: shapes at the three sizes used (16x16 digits, 32x32 CIFAR-10, 224x224 ImageNet), the skip connections,
the linear output, and input validation."""

import pytest
import torch

from art_ext.models import UNet


@pytest.mark.parametrize("channels, side, depth", [(1, 16, 2), (3, 32, 3), (3, 224, 4)])
def test_reconstructs_an_image_of_the_input_size_and_depends_on_every_stage(channels, side, depth):
    torch.manual_seed(0)
    net = UNet(in_channels=channels, depth=depth, width=2).eval()
    x = torch.rand(2, channels, side, side, requires_grad=True)
    out = net(x)
    assert out.shape == x.shape
    # the output of image 0 depends on image 0 only (no mixing across the batch in eval mode)
    grad = torch.autograd.grad(out[0].sum(), x)[0]
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0
    assert len(net.down) == len(net.up) == len(net.merge) == depth


def test_the_skip_connections_carry_the_image_when_the_bottleneck_path_is_cut():
    torch.manual_seed(0)
    net = UNet(in_channels=1, depth=2, width=4).eval()
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        for up in net.up:  # cut every up-sampling path: only the skips reach the decoder
            up.weight.zero_()
            up.bias.zero_()
        cut = net(x)
        other = net(torch.rand(1, 1, 16, 16))
    assert not torch.allclose(cut, other)  # the output still depends on the input, through the skips


def test_the_output_has_no_activation():
    net = UNet(in_channels=1, depth=1, width=2).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(-3.5)
        # same-kernel: zero weights: the head's bias is exact
        assert torch.equal(net(torch.rand(1, 1, 4, 4)), torch.full((1, 1, 4, 4), -3.5))
        net.head.bias.fill_(7.0)
        # same-kernel: zero weights: the head's bias is exact
        assert torch.equal(net(torch.rand(1, 1, 4, 4)), torch.full((1, 1, 4, 4), 7.0))


def test_width_doubles_per_stage_and_out_channels_is_configurable():
    net = UNet(in_channels=3, out_channels=1, depth=3, width=5)
    assert [block[0].out_channels for block in net.down] == [5, 10, 20]
    assert net.bottleneck[0].out_channels == 40
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "depth must be an int >= 1, got 0"),
    ({"width": 1.5}, "width must be an int >= 1, got 1.5"),
    ({"in_channels": 0}, "in_channels must be an int >= 1, got 0"),
    ({"batchnorm": 1}, "batchnorm must be a bool, got 1"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kwargs)


def test_inputs_of_the_wrong_shape_are_refused_before_any_work():
    net = UNet(in_channels=3, depth=3, width=2)
    with pytest.raises(ValueError, match=r"divisible by 8, got input shape \(1, 3, 20, 20\)"):
        net(torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match=r"expects \[B, 3, H, W\], got input shape \(1, 1, 16, 16\)"):
        net(torch.rand(1, 1, 16, 16))
