"""Defences: modules that build a randomized-smoothing base classifier (denoised smoothing, BN adaptation) or
certify a prediction rule (certification through adaptation), with their ART adapters. They import
``art_ext.smoothing``; it never imports them.

The ART preprocessing defences (``DenoiserPreprocessor``, ``NormalizedNoisePreprocessor``) live in
``art_ext.defences.preprocessors`` and are loaded, with ART, on first access (PEP 562): ``import art_ext.defences``
does not import ART.
"""

from typing import TYPE_CHECKING, Any

from art_ext.defences.bn_adaptation import BNAdaptationConfig, CertificationThroughAdaptation, adapt_batchnorm
from art_ext.defences.denoised_smoothing import DenoisedClassifier
from art_ext.defences.diffusion import DiffusionDenoiser, DiffusionDenoiserConfig, timestep_for_sigma
from art_ext.defences.normalized_noise import NormalizedNoiseDenoiser, NormalizedReconstructor

if TYPE_CHECKING:
    from art_ext.defences.preprocessors import DenoiserPreprocessor, NormalizedNoisePreprocessor

#: the ART preprocessing defences, imported from ``art_ext.defences.preprocessors`` on first access
_PREPROCESSORS = ("DenoiserPreprocessor", "NormalizedNoisePreprocessor")

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


def __getattr__(name: str) -> Any:
    if name in _PREPROCESSORS:
        from art_ext.defences import preprocessors

        return getattr(preprocessors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PREPROCESSORS))
