"""The zoo: named models for the embedded digits dataset (architecture + deterministic recipe + seed). The most used
ones ship with the package (``art_ext/zoo/weights``, made by their own recipes: ``python -m art_ext.zoo.ship``); the
others are trained on CPU the first time they are asked for and cached under ``$ART_EXT_CACHE`` (default
``~/.cache/art_ext``).

Weights are identified by content: every weight file (shipped or cached) stores the entry's name, its recipe
fingerprint and the sha256 of its tensors (``art_ext.ops.hashing.state_dict_sha256``: sorted keys; each key's name,
dtype, shape and raw bytes), and ``load`` checks all three before loading. A cache file that fails (truncated,
unreadable, another entry's weights, a tampered tensor) is named in a ``ZooWeightsWarning``, renamed
``<file>.corrupt-<time>`` and retrained, never loaded; a cache folder that cannot be written is a
``CacheNotWritableError`` before any training. ``load(name).sha256`` is the hash of the weights returned and
``info["source"]`` where they came from. ``train(name)`` (``load(name, retrain=True)``) retrains from the recipe.

One registry holds three kinds, ``ClassifierEntry``, ``DenoiserEntry`` and ``DiffusionEntry`` (a diffusers UNet that
serves every sigma; ``diffusion_denoiser(name, sigma)`` wraps it as a ``DiffusionDenoiser``, and needs
``art_ext[diffusion]``, which registering does not); ``load(name)`` reads or trains any of them.
The cache file name carries the entry's fingerprint, so a changed recipe retrains instead of loading stale
weights. Layout (after ``timm/models/_registry.py``): ``_registry`` (register / look up / list, nothing else),
``entries`` (the three entry types and their fingerprints), ``_cache`` (the verified weight file format, one
fingerprinted file per entry), ``_shipped`` (the shipped weights and their manifest), ``loader`` (``load`` / ``train``
/ ``train_entry``; the recipes themselves are ``art_ext.training``'s), ``catalogue`` (the entries, as data), ``ship``
(regenerates the shipped weights). The zoo sits above ``art_ext.training`` (which uses ``art_ext.attacks``), so that
``art_ext.models`` (architectures, RobustBench loader) imports no training or attack code.

Examples:
    >>> from art_ext import zoo
    >>> zoo.names("digits_cnn_pgd_*")
    ['digits_cnn_pgd_l2', 'digits_cnn_pgd_linf']
    >>> zoo.names("digits_dncnn_mse_*", kind="denoiser")
    ['digits_dncnn_mse_025', 'digits_dncnn_mse_050', 'digits_dncnn_mse_100']
    >>> model = zoo.load("digits_cnn_noise050").module  # doctest: +SKIP
"""

from art_ext.zoo._cache import CacheNotWritableError, CorruptWeights, cache_dir, cache_file
from art_ext.zoo._shipped import manifest as shipped_manifest
from art_ext.zoo.catalogue import certified as _certified
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
from art_ext.zoo.loader import TRAINING_THREADS, ZooWeightsWarning, diffusion_denoiser, load, train, train_entry

register = REGISTRY.register
unregister = REGISTRY.unregister
get_entry = REGISTRY.get
names = REGISTRY.names

for _classifier in (*_classifiers.ENTRIES, *_certified.ENTRIES):  # classifiers first: denoisers are guided by them
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
    "TRAINING_THREADS", "ZOO_FORMAT_VERSION", "CacheNotWritableError", "ClassifierEntry", "CorruptWeights",
    "DenoiserEntry", "DiffusionEntry", "RescaledLossDenoiserEntry", "ZooModel", "ZooWeightsWarning",
    "cache_dir", "cache_file", "diffusion_denoiser", "get_entry", "load", "names", "register", "shipped_manifest",
    "train", "train_entry", "unregister",
]
