"""Gaussian denoisers for denoised smoothing: DnCNN, DnCNN-wide and MemNet (pixel space in, pixel space out).

Architectures as used by Salman et al. (2020, "Denoised Smoothing", arXiv:2003.01908v2, Sec. 3 and App. A), with
depth / width / in_channels configurable so small variants fit the embedded 16x16 digits (DnCNN depth 5 width 16:
7.3k parameters).

Deviations (all models):
    * No clamp or sigmoid on the output, as in the reference (microsoft/denoised-smoothing@9500d0e, archs/*.py):
      a denoiser returns an image in pixel units that may leave [0, 1] slightly; the classifier's normalization
      layer follows.
    * BatchNorm uses PyTorch's default momentum 0.1. The reference DnCNN passes momentum=0.95, which in PyTorch's
      convention makes the running statistics ~ the last batch (a Keras-convention value carried over).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class DnCNN(nn.Module):
    """DnCNN (Zhang et al., 2017, arXiv:1608.03981v1, Fig. 1) with residual learning: D(x) = x - body(x).

    body = conv(C->w, bias)+ReLU, then (depth - 2) x [conv(w->w, no bias) + BatchNorm + ReLU], then conv(w->C).
    Convolutions are 3x3 with padding 1, initialised orthogonally (biases 0, BatchNorm weight 1 / bias 0) and the
    last convolution is zeroed, so an untrained DnCNN is exactly the identity map (as the reference initialises).

    Args:
        in_channels: Image channels C (1 for digits, 3 for CIFAR-10 / ImageNet).
        depth: Number of convolutions (>= 2); 17 in the paper.
        width: Feature channels w; 64 in the paper, 128 for DnCNN-wide (see ``dncnn_wide``).
    Shapes:
        [B, C, H, W] -> [B, C, H, W], pixel units.
    """

    def __init__(self, *, in_channels: int = 3, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        _check_int(in_channels, "in_channels", 1)
        _check_int(depth, "depth", 2)
        _check_int(width, "width", 1)
        self.in_channels, self.depth, self.width = in_channels, depth, width
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=1e-4),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.orthogonal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)  # D starts as the identity map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)  # the body predicts the noise (residual learning)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, depth={self.depth}, width={self.width}"


def dncnn_wide(*, in_channels: int = 3, depth: int = 17, width: int = 128) -> DnCNN:
    """DnCNN-wide of Salman et al. (2020, App. A): DnCNN with 128 feature channels."""
    return DnCNN(in_channels=in_channels, depth=depth, width=width)


class _BNReLUConv(nn.Sequential):
    """Pre-activation unit of MemNet: BatchNorm -> ReLU -> conv (no bias)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        )


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.units = nn.Sequential(_BNReLUConv(channels, channels), _BNReLUConv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.units(x)


class _MemoryBlock(nn.Module):
    """R residual blocks (short-term memory) and a 1x1 gate unit over [their R outputs, the long-term memory]."""

    def __init__(self, channels: int, num_resblocks: int, num_long_term: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(_ResidualBlock(channels) for _ in range(num_resblocks))
        self.gate = _BNReLUConv((num_resblocks + num_long_term) * channels, channels, kernel=1)

    def forward(self, x: torch.Tensor, long_term: list[torch.Tensor]) -> torch.Tensor:
        short_term = []
        for block in self.resblocks:
            x = block(x)  # [B, c, H, W]
            short_term.append(x)
        return self.gate(torch.cat(short_term + long_term, dim=1))  # [B, (R + L) c, H, W] -> [B, c, H, W]


class MemNet(nn.Module):
    """MemNet (Tai et al., 2017, arXiv:1708.02209v1, Fig. 1) as Salman et al. (2020) use it, with a global residual.

    feature extractor BNReLUConv(C->c) -> M memory blocks (block m gates its R residual-block outputs together with
    the extractor output and the m - 1 earlier gate outputs) -> reconstructor BNReLUConv(c->C) -> + input.

    Args:
        in_channels: Image channels C.
        channels: Feature channels c (64 in the paper).
        num_memory_blocks: M (3 in the paper).
        num_resblocks: R residual blocks per memory block (6 in the paper).
    Shapes:
        [B, C, H, W] -> [B, C, H, W], pixel units.

    Deviations:
        The reconstructor's convolution is zeroed at initialisation so MemNet, like DnCNN, starts as the identity
        (the reference keeps PyTorch's default init). No multi-supervision (as the reference).
    """

    def __init__(
        self, *, in_channels: int = 3, channels: int = 64, num_memory_blocks: int = 3, num_resblocks: int = 6
    ) -> None:
        super().__init__()
        _check_int(in_channels, "in_channels", 1)
        _check_int(channels, "channels", 1)
        _check_int(num_memory_blocks, "num_memory_blocks", 1)
        _check_int(num_resblocks, "num_resblocks", 1)
        self.feature_extractor = _BNReLUConv(in_channels, channels)
        self.memory_blocks = nn.ModuleList(
            _MemoryBlock(channels, num_resblocks, m + 1) for m in range(num_memory_blocks)
        )
        self.reconstructor = _BNReLUConv(channels, in_channels)
        last = self.reconstructor[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.feature_extractor(x)  # [B, c, H, W]
        long_term = [out]
        for block in self.memory_blocks:
            out = block(out, long_term)
            long_term.append(out)
        return self.reconstructor(out) + x  # global residual


#: registry of denoiser constructors (keyword arguments only)
DENOISER_ARCHITECTURES: dict[str, Any] = {"dncnn": DnCNN, "dncnn_wide": dncnn_wide, "memnet": MemNet}


def build_denoiser(architecture: str, **kwargs: Any) -> nn.Module:
    """Instantiate ``DENOISER_ARCHITECTURES[architecture](**kwargs)``."""
    if architecture not in DENOISER_ARCHITECTURES:
        raise ValueError(
            f"unknown denoiser architecture {architecture!r}; expected one of {sorted(DENOISER_ARCHITECTURES)}"
        )
    return DENOISER_ARCHITECTURES[architecture](**kwargs)
