"""Defences: modules that build a (smoothing) base classifier or a certified prediction rule."""

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
