"""Defences: modules that build a randomized-smoothing base classifier (denoised smoothing, BN adaptation) or
certify a prediction rule (certification through adaptation), with their ART adapters. They import
``art_ext.smoothing``; it never imports them."""

from art_ext.defences.bn_adaptation import BNAdaptationConfig, CertificationThroughAdaptation, adapt_batchnorm
from art_ext.defences.denoised_smoothing import DenoisedClassifier, DenoiserPreprocessor
from art_ext.defences.diffusion import DiffusionDenoiser, DiffusionDenoiserConfig, timestep_for_sigma
from art_ext.defences.normalized_noise import (
    NormalizedNoiseDenoiser,
    NormalizedNoisePreprocessor,
    NormalizedReconstructor,
)

__all__ = [
    "BNAdaptationConfig",
    "CertificationThroughAdaptation",
    "DenoisedClassifier",
    "DenoiserPreprocessor",
    "DiffusionDenoiser",
    "DiffusionDenoiserConfig",
    "NormalizedNoiseDenoiser",
    "NormalizedNoisePreprocessor",
    "NormalizedReconstructor",
    "adapt_batchnorm",
    "timestep_for_sigma",
]
