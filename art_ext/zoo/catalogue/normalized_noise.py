"""Normalized-noise UNets of the embedded digits (Kumar & Narayan, Algorithm 1): one surrogate (``digits_lenet``),
black-box for ``digits_cnn``.

Normalization: the digits statistics (``DIGITS_MEAN`` / ``DIGITS_STD`` = 0.305 / 0.319, the zoo classifiers' own
first layer) stand in for the paper's ImageNet statistics, which have three channels. A normalized sigma_n is then a
pixel sigma of 0.319 sigma_n and a normalized radius R_n a pixel radius of 0.319 R_n.

Entries (UNet depth 2, width 8: 29k parameters; 20 epochs of SGD lr 0.1 as Sec. V-C):
    * ``digits_unet_nn_{025,050,100}``: the paper's nominal sigma_n 0.25 / 0.5 / 1.0 (pixel 0.080 / 0.160 / 0.319),
      lambda = 0.1 (rescaled loss);
    * ``digits_unet_nn_norescale_{050,100}``: lambda = 1 (Table V's "without rescaled loss") at sigma_n 0.5 / 1.0;
    * ``digits_unet_px_{025,050}``: the same network and loss with pixel noise at sigma 0.25 / 0.5, the pixel sigmas
      of the Cohen / Salman baselines (on one channel: identical in law to sigma_n = 0.784 / 1.567).

Data only: building ``ENTRIES`` registers nothing (``art_ext.zoo`` does).
"""

from __future__ import annotations

from art_ext.training.rescaled_loss import RescaledLossTrainConfig
from art_ext.zoo.catalogue.classifiers import DIGITS_MEAN, DIGITS_STD
from art_ext.zoo.entries import RescaledLossDenoiserEntry

#: the UNet size for 16x16 digits (16 -> 8 -> 4)
DIGITS_UNET_RECONSTRUCTOR = {"in_channels": 1, "depth": 2, "width": 8}
#: the one surrogate of Algorithm 1 (the paper's ResNet18); the target digits_cnn never appears in training
DIGITS_UNET_SURROGATE = "digits_lenet"


def _unet(name: str, sigma: float, *, noise: str = "normalized", lam: float = 0.1) -> RescaledLossDenoiserEntry:
    space = (f"sigma_n={sigma:g} (pixel {sigma * DIGITS_STD[0]:.3f})" if noise == "normalized"
             else f"pixel sigma={sigma:g}")
    return RescaledLossDenoiserEntry(
        name, dict(DIGITS_UNET_RECONSTRUCTOR), RescaledLossTrainConfig(sigma=sigma, noise=noise, lam=lam),
        f"UNet-2-8, rescaled loss lambda={lam:g} on {DIGITS_UNET_SURROGATE}, {noise} noise {space}",
        (DIGITS_UNET_SURROGATE,), DIGITS_MEAN, DIGITS_STD, target="digits_cnn", access="black-box",
    )


ENTRIES: tuple[RescaledLossDenoiserEntry, ...] = (
    _unet("digits_unet_nn_025", 0.25),
    _unet("digits_unet_nn_050", 0.5),
    _unet("digits_unet_nn_100", 1.0),
    _unet("digits_unet_nn_norescale_050", 0.5, lam=1.0),
    _unet("digits_unet_nn_norescale_100", 1.0, lam=1.0),
    _unet("digits_unet_px_025", 0.25, noise="pixel"),
    _unet("digits_unet_px_050", 0.5, noise="pixel"),
)
