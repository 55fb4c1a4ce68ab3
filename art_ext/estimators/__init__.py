"""ART classifiers over art_ext's smoothed models: real ``PyTorchClassifier`` subclasses that ART's attacks accept.

* ``PyTorchRandomizedSmoothing``, ``PyTorchMACER``, ``PyTorchSmoothAdv``, ``PyTorchSmoothMix``: drop-ins for ART's
  randomized-smoothing estimators of the same names (same constructor arguments, plus ``seed`` / ``generator``):
  Cohen et al. PREDICT / CERTIFY with noise keyed per image, and ``fit`` by each method's certified training.
  ``PyTorchRandomizedSmoothing.from_classifier`` wraps an existing ART classifier; ``RandomizedSmoothingClassifier``
  is that constructor with soft smoothed scores from ``predict``.
* ``SmoothedInferenceClassifier``: smoothed inference (prediction / weighted / soft voting, Nemcovsky et al.).
* ``CertificationThroughAdaptationClassifier``: predicts with the original model, certifies through BN adaptation
  and Auto-Noise (Nandy et al.).
"""

from art_ext.estimators.bn_adaptation import CertificationThroughAdaptationClassifier
from art_ext.estimators.macer import PyTorchMACER
from art_ext.estimators.randomized_smoothing import PyTorchRandomizedSmoothing, RandomizedSmoothingClassifier
from art_ext.estimators.smooth_adv import PyTorchSmoothAdv
from art_ext.estimators.smooth_mix import PyTorchSmoothMix
from art_ext.estimators.smoothed_inference import SmoothedInferenceClassifier

__all__ = [
    "CertificationThroughAdaptationClassifier",
    "PyTorchMACER",
    "PyTorchRandomizedSmoothing",
    "PyTorchSmoothAdv",
    "PyTorchSmoothMix",
    "RandomizedSmoothingClassifier",
    "SmoothedInferenceClassifier",
]
