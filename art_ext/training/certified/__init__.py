"""Certified training: training losses that make the *smoothed* classifier robust, pure torch, deterministic on CPU.

Five method configs (frozen, validated dataclasses), each in its own module with its paper's objective:

* ``GaussianAugmentation(sigma)``: noise augmentation (Cohen et al., 2019), the baseline.
* ``SmoothAdvTraining(sigma, eps, num_steps, num_noise_vec, warmup)``: adversarial training of the soft smoothed
  classifier (Salman et al., 2019).
* ``MACERTraining(sigma, beta, gamma, lbd, num_noise_vec)``: certified-radius maximization (Zhai et al., 2020).
* ``SmoothMixTraining(sigma, eta, mix_step, num_steps, num_noise_vec, ...)``: mixup along the adversarial path
  (Jeong et al., 2021).
* ``ConsistencyTraining(sigma, num_noise_vec, lbd, eta)``: consistency regularization (Jeong & Shin, 2020).

``certified_loss(model, x, y, method, generator=...)`` is one batch's loss; ``train_certified_epochs`` is the
epoch loop (shuffling, the per-chunk optimizer steps of the multi-noise methods, warm-ups by epoch); the zoo recipe
``CertifiedTrainConfig`` trains zoo entries with it. Noise is pixel-space N(0, sigma^2 I) from the caller's
``torch.Generator``, never clipped; normalization belongs inside the model.
"""

from art_ext.training.certified._common import CertifiedMethod
from art_ext.training.certified.consistency import ConsistencyTraining, consistency_terms
from art_ext.training.certified.gaussian import GaussianAugmentation
from art_ext.training.certified.loop import METHOD_NAMES, certified_loss, train_certified_epochs
from art_ext.training.certified.macer import MACERTraining, macer_terms
from art_ext.training.certified.recipe import CertifiedTrainConfig, train_certified
from art_ext.training.certified.smoothadv import SmoothAdvTraining, smoothadv_attack, soft_smoothed_nll
from art_ext.training.certified.smoothmix import SmoothMixTraining, mixup_target, smoothmix_path

__all__ = [
    "METHOD_NAMES", "CertifiedMethod", "CertifiedTrainConfig", "ConsistencyTraining", "GaussianAugmentation",
    "MACERTraining",
    "SmoothAdvTraining", "SmoothMixTraining", "certified_loss", "consistency_terms", "macer_terms", "mixup_target",
    "smoothadv_attack", "smoothmix_path", "soft_smoothed_nll", "train_certified", "train_certified_epochs",
]
