"""UNet encoder-decoder (Ronneberger et al., 2015, arXiv:1505.04597v1, Fig. 1) as the reconstructor of Kumar &
Narayan's normalized-noise denoiser (Sec. IV-A, Fig. 1; the paper gives no depth or width).

Layout: ``depth`` down-sampling stages, each a double convolution (3x3 conv [+ BatchNorm] + ReLU, twice) followed by
2x2 max pooling, a double-convolution bottleneck, then ``depth`` up-sampling stages (2x2 transposed convolution, the
matching encoder feature map concatenated as a skip connection, double convolution), and a 1x1 output convolution
with no output activation. Widths double per stage: ``width * 2**i`` at stage i. Padded 3x3 convolutions keep the
side length, so an input side must be divisible by ``2**depth``.

Sizes used in art_ext (the defaults are the classic 4-stage, 64-wide UNet, an assumption: research/algorithms.md §9.1):
    * 16x16 digits: ``UNet(in_channels=1, depth=2, width=8)`` (16 -> 8 -> 4; 29k parameters; the zoo's size);
    * 32x32 CIFAR-10: ``UNet(in_channels=3, depth=3, width=32)`` (32 -> 4; 1.9M parameters) or the default;
    * 224x224 ImageNet: the default ``UNet(in_channels=3, depth=4, width=64)`` (224 -> 14; 31M parameters).

Deviations from Ronneberger et al.: padded convolutions (output side = input side, no cropping of the skips) and
optional BatchNorm, as common denoising UNets do.
"""

from __future__ import annotations

import torch
from torch import nn

from art_ext.models.denoisers import _check_int


def _double_conv(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """UNet with skip connections and a linear 1x1 output convolution (no output activation).

    Args:
        in_channels: Input channels (1 for digits, 3 for CIFAR-10 / ImageNet).
        out_channels: Output channels (default ``in_channels``: an image reconstructor).
        depth: Number of 2x down-samplings (>= 1); the input side must be divisible by ``2**depth``.
        width: Channels of the first stage (>= 1); stage i has ``width * 2**i``.
        batchnorm: BatchNorm after every 3x3 convolution (default True).
    Shapes:
        [B, in_channels, H, W] -> [B, out_channels, H, W], H and W divisible by ``2**depth``.

    Examples:
        >>> net = UNet(in_channels=1, depth=2, width=4).eval()
        >>> net(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
        >>> net(torch.zeros(1, 1, 18, 18))
        Traceback (most recent call last):
        ...
        ValueError: UNet of depth 2 needs H and W divisible by 4, got input shape (1, 1, 18, 18)
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int | None = None, depth: int = 4, width: int = 64,
                 batchnorm: bool = True) -> None:
        super().__init__()
        _check_int(in_channels, "in_channels", 1)
        out_channels = in_channels if out_channels is None else out_channels
        _check_int(out_channels, "out_channels", 1)
        _check_int(depth, "depth", 1)
        _check_int(width, "width", 1)
        if not isinstance(batchnorm, bool):
            raise ValueError(f"batchnorm must be a bool, got {batchnorm!r}")
        self.in_channels, self.out_channels, self.depth, self.width = in_channels, out_channels, depth, width
        widths = [width * 2**i for i in range(depth + 1)]  # stage widths, bottleneck last
        self.down = nn.ModuleList(
            _double_conv(c_in, c_out, batchnorm)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(widths[-2], widths[-1], batchnorm)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(_double_conv(2 * widths[i], widths[i], batchnorm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects [B, {self.in_channels}, H, W], got input shape {tuple(x.shape)}")
        step = 2**self.depth
        if x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"UNet of depth {self.depth} needs H and W divisible by {step}, got input shape "
                             f"{tuple(x.shape)}")
        skips = []
        h = x
        for block in self.down:
            h = block(h)  # [B, w_i, H / 2**i, W / 2**i]
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)  # [B, w_depth, H / 2**depth, W / 2**depth]
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            h = merge(torch.cat([up(h), skip], dim=1))  # [B, w_i, H / 2**i, W / 2**i]
        return self.head(h)  # [B, out_channels, H, W], no activation
