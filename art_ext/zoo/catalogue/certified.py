"""Certified-training classifiers of the embedded digits dataset: SmoothAdv, MACER, SmoothMix and consistency
regularization at sigma 0.25 and 0.5 (``training.certified``).

Same architecture (SmallCNN-w16 with the digits normalization inside), epochs (60), batch size (64), Adam one-cycle
schedule (lr 1e-3), random shifts (2 pixels) and seed (0) as the Gaussian-augmentation entries
``digits_cnn_noise025`` / ``digits_cnn_noise050``; only the loss differs. The hyper-parameters of each entry were
chosen on the validation split only (``benchmarks/sweep_certified_training.py``: every candidate of ``CANDIDATES``
trained with the full recipe, CERTIFY with n0 = 100, n = 1,000, alpha = 0.001 on the 200 validation images, highest
average certified radius kept); the grid follows the CIFAR-10 recipes' ratios (research/certified_training.md §6),
cut down to what one CPU core trains in minutes. Data only: building ``ENTRIES`` registers nothing.
"""

from __future__ import annotations

from art_ext.training.certified import (
    CertifiedMethod,
    ConsistencyTraining,
    MACERTraining,
    SmoothAdvTraining,
    SmoothMixTraining,
)
from art_ext.training.certified.recipe import CertifiedTrainConfig
from art_ext.zoo.catalogue.classifiers import DIGITS_MEAN, DIGITS_STD
from art_ext.zoo.entries import ClassifierEntry

#: the zoo's Gaussian-augmentation recipe, which every certified entry shares (``digits_cnn_noise025`` / ``050``)
EPOCHS = 60
SIGMAS = (0.25, 0.5)
METHODS = ("smoothadv", "macer", "smoothmix", "consistency")


def sigma_tag(sigma: float) -> str:
    """0.25 -> "025", 0.5 -> "050"."""
    return f"{round(sigma * 100):03d}"


def certified_entry(method: CertifiedMethod, name: str, note: str = "") -> ClassifierEntry:
    """The SmallCNN-w16 digits entry ``name`` trained with ``method`` under the Gaussian entries' recipe."""
    return ClassifierEntry(
        name, "small_cnn", {"mean": DIGITS_MEAN, "std": DIGITS_STD},
        CertifiedTrainConfig(epochs=EPOCHS, method=method),
        f"SmallCNN-w16, {type(method).__name__} sigma={method.sigma:.2f}{note}",
    )


def candidates(method: str, sigma: float) -> list[CertifiedMethod]:
    """The validation grid of ``method`` at ``sigma``: research/certified_training.md §6's digits proposal, cut to
    what the CPU budget allowed. SmoothAdv eps in {2, 4} sigma with T = 2, m = 2 and a 6-epoch warm-up (10% of the
    epochs); consistency m = 2, eta = 0.5, lambda in {10, 20}. MACER (k = 16, beta = 16, gamma = 8, lambda = 12) and
    SmoothMix (m = 2, T = 4, alpha = 2 sigma, eta = 5, 6-epoch warm-up) have one candidate each, the published
    CIFAR-10 settings: on one shared CPU core each costs 10-15 minutes to train, and there was no budget for a second.
    """
    if method == "smoothadv":
        return [SmoothAdvTraining(sigma, eps=f * sigma, num_steps=2, num_noise_vec=2, warmup=6) for f in (2.0, 4.0)]
    if method == "macer":
        return [MACERTraining(sigma, lbd=12.0, num_noise_vec=16)]
    if method == "smoothmix":
        return [SmoothMixTraining(sigma, eta=5.0, num_steps=4, num_noise_vec=2, warmup=6)]
    if method == "consistency":
        return [ConsistencyTraining(sigma, num_noise_vec=2, lbd=lbd, eta=0.5) for lbd in (10.0, 20.0)]
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


#: every candidate as (method, sigma, config), in the order the sweep trains them
CANDIDATES: tuple[tuple[str, float, CertifiedMethod], ...] = tuple(
    (method, sigma, config) for sigma in SIGMAS for method in METHODS for config in candidates(method, sigma)
)

#: the validation winner of each (method, sigma): an index into ``candidates(method, sigma)``. Validation ACR of every
#: candidate (CERTIFY n0 = 100, n = 1,000, alpha = 0.001 on the 200 validation images; ``sweep_certified_training``;
#: ACR, certified accuracy at radius 0, training wall time on a shared CPU):
#:   sigma=0.25 gaussian (digits_cnn_noise025): ACR 0.482, r=0 0.980
#:   sigma=0.25 smoothadv [0] eps=0.5, T=2, m=2, warm-up 6: ACR 0.535, r=0 0.980, 319 s
#:   sigma=0.25 smoothadv [1] eps=1, T=2, m=2, warm-up 6: ACR 0.513, r=0 0.955, 818 s
#:   sigma=0.25 macer [0] k=16, beta=16, gamma=8, lambda=12: ACR 0.495, r=0 0.945, 1321 s
#:   sigma=0.25 smoothmix [0] eta=5, T=4, m=2, alpha=0.5, warm-up 6: ACR 0.526, r=0 0.980, 1387 s
#:   sigma=0.25 consistency [0] m=2, lambda=10, eta=0.5: ACR 0.522, r=0 0.970, 378 s
#:   sigma=0.25 consistency [1] m=2, lambda=20, eta=0.5: ACR 0.520, r=0 0.975, 294 s
#:   sigma=0.5 gaussian (digits_cnn_noise050): ACR 0.567, r=0 0.920
#:   sigma=0.5 smoothadv [0] eps=1, T=2, m=2, warm-up 6: ACR 0.671, r=0 0.830, 317 s
#:   sigma=0.5 smoothadv [1] eps=2, T=2, m=2, warm-up 6: ACR 0.123, r=0 0.100, 686 s
#:   sigma=0.5 macer [0] k=16, beta=16, gamma=8, lambda=12: ACR 0.617, r=0 0.740, 1472 s
#:   sigma=0.5 smoothmix [0] eta=5, T=4, m=2, alpha=1, warm-up 6: ACR 0.671, r=0 0.895, 1389 s
#:   sigma=0.5 consistency [0] m=2, lambda=10, eta=0.5: ACR 0.647, r=0 0.880, 383 s
#:   sigma=0.5 consistency [1] m=2, lambda=20, eta=0.5: ACR 0.279, r=0 0.495, 292 s
SELECTED: dict[tuple[str, float], int] = {
    ("smoothadv", 0.25): 0,
    ("macer", 0.25): 0,
    ("smoothmix", 0.25): 0,
    ("consistency", 0.25): 0,
    ("smoothadv", 0.5): 0,
    ("macer", 0.5): 0,
    ("smoothmix", 0.5): 0,
    ("consistency", 0.5): 0,
}


def describe(method: CertifiedMethod) -> str:
    """The hyper-parameters of ``method`` beyond sigma, short (``", eps=0.5, T=2, m=2, warm-up 6"``)."""
    if isinstance(method, SmoothAdvTraining):
        return f", eps={method.eps:g}, T={method.num_steps}, m={method.num_noise_vec}, warm-up {method.warmup}"
    if isinstance(method, MACERTraining):
        return f", k={method.num_noise_vec}, beta={method.beta:g}, gamma={method.gamma:g}, lambda={method.lbd:g}"
    if isinstance(method, SmoothMixTraining):
        return (f", eta={method.eta:g}, T={method.num_steps}, m={method.num_noise_vec}, alpha={method.step_size:g}, "
                f"warm-up {method.warmup}")
    if isinstance(method, ConsistencyTraining):
        return f", m={method.num_noise_vec}, lambda={method.lbd:g}, eta={method.eta:g}"
    return ""


ENTRIES: tuple[ClassifierEntry, ...] = tuple(
    certified_entry(config, f"digits_cnn_{method}{sigma_tag(sigma)}", describe(config) + " (chosen on val)")
    for sigma in SIGMAS for method in METHODS
    for config in [candidates(method, sigma)[SELECTED[method, sigma]]]
)
