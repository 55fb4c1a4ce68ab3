"""Defences: modules that build a (smoothing) base classifier (denoised smoothing, BN adaptation), wrap a classifier
(smoothed inference) or certify a prediction rule, with their ART adapters."""

from art_ext.defences.bn_adaptation import (
    DEFAULT_SIGMAS,
    BNAdaptationConfig,
    CertificationThroughAdaptation,
    SigmaCertificates,
    adapt_batchnorm,
    auto_noise_certify,
)
from art_ext.defences.denoised_smoothing import DenoisedClassifier, DenoiserPreprocessor

__all__ = [
    "DEFAULT_SIGMAS",
    "BNAdaptationConfig",
    "CertificationThroughAdaptation",
    "DenoisedClassifier",
    "DenoiserPreprocessor",
    "SigmaCertificates",
    "adapt_batchnorm",
    "auto_noise_certify",
]
