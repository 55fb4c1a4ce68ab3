"""Training recipes (deterministic, CPU-friendly). Every recipe config has ``fit(model, data, ...)`` (``Recipe``)."""

from art_ext.training.adversarial import AdversarialTrainConfig, robust_accuracy, train_adversarial
from art_ext.training.certified import (
    CertifiedMethod,
    ConsistencyTraining,
    GaussianAugmentation,
    MACERTraining,
    SmoothAdvTraining,
    SmoothMixTraining,
    certified_loss,
    train_certified_epochs,
)
from art_ext.training.classifier import (
    FineTune,
    Recipe,
    SplitLoader,
    TrainConfig,
    TrainingRun,
    accuracy,
    train_classifier,
)
from art_ext.training.denoiser import DenoiserTrainConfig, train_denoiser
from art_ext.training.diffusion import DiffusionTrainConfig
from art_ext.training.rescaled_loss import RescaledLossTrainConfig, train_rescaled_loss

__all__ = [
    "AdversarialTrainConfig", "CertifiedMethod", "ConsistencyTraining", "GaussianAugmentation", "MACERTraining",
    "SmoothAdvTraining", "SmoothMixTraining", "certified_loss", "train_certified_epochs",
    "DenoiserTrainConfig", "DiffusionTrainConfig", "FineTune", "Recipe",
    "RescaledLossTrainConfig", "SplitLoader",
    "TrainConfig",
    "TrainingRun", "accuracy", "robust_accuracy", "train_adversarial", "train_classifier", "train_denoiser",
    "train_rescaled_loss",
]
