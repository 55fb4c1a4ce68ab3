"""The zoo: named models for the embedded digits dataset (architecture + deterministic recipe + seed), trained on CPU
the first time they are asked for and cached under ``$ART_EXT_CACHE`` (default ``~/.cache/art_ext``).

One registry holds three kinds, ``ClassifierEntry``, ``DenoiserEntry`` and ``DiffusionEntry`` (a diffusers UNet that
serves every sigma; ``diffusion_denoiser(name, sigma)`` wraps it as a ``DiffusionDenoiser``, and needs
``art_ext[diffusion]``, which registering does not); ``load(name)`` reads or trains any of them.
The cache file name carries the entry's fingerprint, so a changed recipe retrains instead of loading stale
weights. Layout (after ``timm/models/_registry.py``): ``_registry`` (register / look up / list, nothing else),
``entries`` (the three entry types and their fingerprints), ``_cache`` (one fingerprinted file per entry),
``loader`` (``load`` / ``train_entry``; the recipes themselves are ``art_ext.training``'s), ``catalogue`` (the
entries, as data). The zoo sits above ``art_ext.training`` (which uses ``art_ext.attacks``), so that
``art_ext.models`` (architectures, RobustBench loader) imports no training or attack code.

Examples:
    >>> from art_ext import zoo
    >>> zoo.names("digits_cnn_pgd_*")
    ['digits_cnn_pgd_l2', 'digits_cnn_pgd_linf']
    >>> zoo.names("digits_dncnn_mse_*", kind="denoiser")
    ['digits_dncnn_mse_025', 'digits_dncnn_mse_050', 'digits_dncnn_mse_100']
    >>> model = zoo.load("digits_cnn_noise050").module  # doctest: +SKIP
"""

from art_ext.zoo._cache import cache_dir, cache_file
from art_ext.zoo.catalogue import classifiers as _classifiers
from art_ext.zoo.catalogue import denoisers as _denoisers
from art_ext.zoo.catalogue import diffusion as _diffusion
from art_ext.zoo.catalogue import normalized_noise as _normalized_noise
from art_ext.zoo.catalogue.classifiers import DIGITS_MEAN, DIGITS_STD
from art_ext.zoo.catalogue.denoisers import DIGITS_DNCNN, DIGITS_SURROGATES
from art_ext.zoo.catalogue.diffusion import DIGITS_UNET
from art_ext.zoo.entries import (
    KINDS,
    REGISTRY,
    ZOO_FORMAT_VERSION,
    ClassifierEntry,
    DenoiserEntry,
    DiffusionEntry,
    RescaledLossDenoiserEntry,
    ZooModel,
)
from art_ext.zoo.loader import TRAINING_THREADS, diffusion_denoiser, load, train_entry

register = REGISTRY.register
unregister = REGISTRY.unregister
get_entry = REGISTRY.get
names = REGISTRY.names

for _classifier in _classifiers.ENTRIES:  # classifiers first: denoisers are guided by them
    register(_classifier)
for _denoiser in _denoisers.ENTRIES:
    register(_denoiser)
for _model in _diffusion.ENTRIES:
    register(_model)
for _unet in _normalized_noise.ENTRIES:
    register(_unet)
del _classifier, _denoiser, _model, _unet

__all__ = [
    "DIGITS_DNCNN", "DIGITS_MEAN", "DIGITS_STD", "DIGITS_SURROGATES", "DIGITS_UNET", "KINDS", "REGISTRY",
    "TRAINING_THREADS", "ZOO_FORMAT_VERSION", "ClassifierEntry", "DenoiserEntry", "DiffusionEntry",
    "RescaledLossDenoiserEntry", "ZooModel",
    "cache_dir", "cache_file", "diffusion_denoiser", "get_entry", "load", "names", "register", "train_entry",
    "unregister",
]
