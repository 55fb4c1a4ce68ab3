"""Diffusion models of the embedded digits for diffusion denoised smoothing (Carlini et al., ICLR 2023).

Data only: building ``ENTRIES`` registers nothing (``art_ext.zoo`` does) and imports no diffusers.
"""

from __future__ import annotations

from art_ext.training.diffusion import DiffusionTrainConfig
from art_ext.zoo.entries import DiffusionEntry

#: the tiny ``UNet2DModel`` measured for 16x16 digits (164k parameters; no attention blocks)
DIGITS_UNET = {
    "sample_size": 16, "in_channels": 1, "out_channels": 1, "block_out_channels": [16, 32], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}

ENTRIES: tuple[DiffusionEntry, ...] = (
    DiffusionEntry(
        "digits_ddpm", dict(DIGITS_UNET),
        DiffusionTrainConfig(epochs=20, lr=2e-3, num_train_timesteps=1000, beta_schedule="linear"),
        "UNet2DModel (16, 32), DDPM epsilon prediction, linear schedule T=1000, 20 epochs; serves every sigma",
    ),
)
