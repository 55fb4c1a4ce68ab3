"""Classifiers of the embedded 16x16 digits dataset: standard, noise-trained, surrogate, PGD-trained, fine-tuned.

Data only: building ``ENTRIES`` registers nothing (``art_ext.zoo`` does).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from art_ext.data import digits
from art_ext.training.adversarial import AdversarialTrainConfig
from art_ext.training.classifier import TrainConfig
from art_ext.training.noise_injection import NoiseInjectionConfig
from art_ext.zoo.entries import ClassifierEntry

#: per-channel statistics of the 16x16 digits training split (checked by tests/models/test_zoo.py)
DIGITS_MEAN = (0.305,)
DIGITS_STD = (0.319,)


def _digits(
    name: str, architecture: str, description: str, *, recipe: type[TrainConfig] = TrainConfig, **train: Any
) -> ClassifierEntry:
    kwargs: dict[str, Any] = {"mean": DIGITS_MEAN, "std": DIGITS_STD}
    if architecture == "mlp":
        kwargs["in_features"] = digits.DEFAULT_RESOLUTION**2
    return ClassifierEntry(name, architecture, kwargs, recipe(**train), description)


_noise025 = _digits(
    "digits_cnn_noise025", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=0.25", epochs=60, noise_sigma=0.25
)

ENTRIES: tuple[ClassifierEntry, ...] = (
    _digits("digits_cnn", "small_cnn", "SmallCNN-w16 with BatchNorm, standard training", epochs=30),
    _noise025,
    _digits(
        "digits_cnn_noise050", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=0.50", epochs=60,
        noise_sigma=0.5,
    ),
    _digits(
        "digits_cnn_noise100", "small_cnn", "SmallCNN-w16, Gaussian augmentation sigma=1.00", epochs=60,
        noise_sigma=1.0,
    ),
    _digits("digits_lenet", "lenet", "LeNet-style CNN without BatchNorm, standard training (surrogate)", epochs=30),
    _digits("digits_mlp", "mlp", "2x256 MLP, standard training (surrogate)", epochs=30),
    # PGD adversarial training (Madry et al., 2018) with early stopping on "val" (Rice et al., 2020): the AT models
    # that certification through BN adaptation (Nandy et al.) starts from. Recipe of research/embedded_default.md:
    # 7 steps of 2.5 eps / 7, eps ramped over the first 30% of 30 epochs.
    _digits(
        "digits_cnn_pgd_l2", "small_cnn", "SmallCNN-w16, PGD-L2 adversarial training eps=0.5, early-stopped on val",
        recipe=AdversarialTrainConfig, epochs=30, eps=0.5, norm="l2",
    ),
    _digits(
        "digits_cnn_pgd_linf", "small_cnn",
        "SmallCNN-w16, PGD-Linf adversarial training eps=0.1, early-stopped on val",
        recipe=AdversarialTrainConfig, epochs=30, eps=0.1, norm="linf",
    ),
    # Nemcovsky et al.'s CNI-I+W idea: the sigma=0.25 model fine-tuned under noise mixed 1:1 with EPGD examples
    dataclasses.replace(
        _noise025, name="digits_cnn_cni",
        description="digits_cnn_noise025 fine-tuned under noise sigma=0.25 mixed 1:1 with EPGD-linf(0.1) examples "
                    "(Nemcovsky et al. CNI-I+W idea, Eq. 23)",
        parent=_noise025.name,
        finetune=NoiseInjectionConfig(sigma=0.25, epochs=8, adversarial_weight=0.5, eps=0.1, eps_step=0.03,
                                      max_iter=5, norm="linf", eot_samples=4, seed=0),
    ),
)
