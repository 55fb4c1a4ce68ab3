"""Denoisers of the embedded digits for denoised smoothing (Salman et al., 2020): DnCNN-5-16 at three sigmas.

Data only: building ``ENTRIES`` registers nothing (``art_ext.zoo`` does). Their guiding classifiers are entries of
``catalogue.classifiers``.
"""

from __future__ import annotations

from typing import Any

from art_ext.training.denoiser import DenoiserTrainConfig
from art_ext.zoo.entries import DenoiserEntry

#: the small DnCNN recommended for 16x16 digits (7.3k parameters)
DIGITS_DNCNN = {"in_channels": 1, "depth": 5, "width": 16}
#: black-box surrogates: architectures the target digits_cnn does not share (no BatchNorm; no convolution)
DIGITS_SURROGATES = ("digits_lenet", "digits_mlp")
SIGMAS = ((0.25, "025"), (0.5, "050"), (1.0, "100"))


def _dncnn(
    name: str, description: str, *, classifiers: tuple[str, ...] = (), init: str | None = None,
    target: str | None = "digits_cnn", access: str = "white-box", **train: Any,
) -> DenoiserEntry:
    return DenoiserEntry(
        name, "dncnn", dict(DIGITS_DNCNN), DenoiserTrainConfig(**train), description, classifiers=classifiers,
        init=init, target=target, access=access,
    )


def _per_sigma(sigma: float, tag: str) -> tuple[DenoiserEntry, ...]:
    return (
        _dncnn(
            f"digits_dncnn_mse_{tag}", f"DnCNN-5-16, MSE, sigma={sigma:.2f}", target=None,
            sigma=sigma, objective="mse", epochs=30, lr=1e-3,
        ),
        _dncnn(
            f"digits_dncnn_stab_{tag}", f"DnCNN-5-16, STAB from scratch on digits_cnn (white-box), sigma={sigma:.2f}",
            classifiers=("digits_cnn",), sigma=sigma, objective="stab", epochs=30, lr=1e-3,
        ),
        _dncnn(
            f"digits_dncnn_stabmse_{tag}", f"DnCNN-5-16, STAB+MSE on digits_cnn (white-box), sigma={sigma:.2f}",
            classifiers=("digits_cnn",), init=f"digits_dncnn_mse_{tag}", sigma=sigma, objective="stab+mse",
            epochs=20, lr=1e-4,
        ),
        _dncnn(
            f"digits_dncnn_bb_stabmse_{tag}",
            f"DnCNN-5-16, STAB+MSE on surrogates LeNet/MLP (black-box for digits_cnn), sigma={sigma:.2f}",
            classifiers=DIGITS_SURROGATES, init=f"digits_dncnn_mse_{tag}", access="black-box", sigma=sigma,
            objective="stab+mse", epochs=20, lr=1e-4,
        ),
        _dncnn(
            f"digits_dncnn_bb_stab_{tag}",
            f"DnCNN-5-16, STAB from scratch on surrogates LeNet/MLP (black-box for digits_cnn), sigma={sigma:.2f}",
            classifiers=DIGITS_SURROGATES, access="black-box", sigma=sigma, objective="stab", epochs=30, lr=1e-3,
        ),
    )


ENTRIES: tuple[DenoiserEntry, ...] = tuple(entry for sigma, tag in SIGMAS for entry in _per_sigma(sigma, tag))
