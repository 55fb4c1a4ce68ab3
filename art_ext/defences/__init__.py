"""Defences: modules that build a (smoothing) base classifier, wrap a classifier (smoothed inference) or certify a
prediction rule."""

from art_ext.defences.bn_adaptation import (
    DEFAULT_SIGMAS,
    BNAdaptationConfig,
    CertificationThroughAdaptation,
    SigmaCertificates,
    adapt_batchnorm,
    auto_noise_certify,
)

__all__ = [
    "DEFAULT_SIGMAS",
    "BNAdaptationConfig",
    "CertificationThroughAdaptation",
    "SigmaCertificates",
    "adapt_batchnorm",
    "auto_noise_certify",
]
