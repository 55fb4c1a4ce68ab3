"""ART classifiers over art_ext's smoothed models: real ``PyTorchClassifier`` subclasses that ART's attacks accept.

* ``SmoothedInferenceClassifier``: smoothed inference (prediction / weighted / soft voting, Nemcovsky et al.).
* ``RandomizedSmoothingClassifier``: Cohen et al. CERTIFY / PREDICT, with the soft smoothed forward for attacks.
* ``CertificationThroughAdaptationClassifier``: predicts with the original model, certifies through BN adaptation
  and Auto-Noise (Nandy et al.).
"""

from art_ext.estimators.bn_adaptation import CertificationThroughAdaptationClassifier
from art_ext.estimators.randomized_smoothing import RandomizedSmoothingClassifier
from art_ext.estimators.smoothed_inference import SmoothedInferenceClassifier

__all__ = [
    "CertificationThroughAdaptationClassifier",
    "RandomizedSmoothingClassifier",
    "SmoothedInferenceClassifier",
]
