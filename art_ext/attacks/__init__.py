"""Attacks: pure-torch cores (one PGD loop, one projection) and their ART ``EvasionAttack`` adapters."""

from art_ext.attacks.bpda_pgd import BPDA, BPDAPGD, bpda, bpda_pgd, sane_config, table_v_config
from art_ext.attacks.epgd import EPGD, EPGDConfig, epgd
from art_ext.attacks.nattack import NAttack, NAttackConfig, NAttackResult, nattack
from art_ext.attacks.pgd import PGD, PGDConfig, pgd
from art_ext.attacks.protocol import RandomizedScore, score_randomized
from art_ext.attacks.rigor import (
    GradientCheck,
    GradientFreeGap,
    MonotonicityCheck,
    RandomnessCheck,
    eps_monotonicity,
    gradient_free_gap,
    gradient_health,
    output_randomness,
)
from art_ext.attacks.smoothadv import SmoothAdvConfig, SmoothAdvPGD, smoothadv_pgd

__all__ = [
    "BPDA", "BPDAPGD", "EPGD", "EPGDConfig", "GradientCheck", "GradientFreeGap", "MonotonicityCheck", "NAttack",
    "NAttackConfig", "NAttackResult", "PGD", "PGDConfig", "RandomizedScore", "RandomnessCheck", "SmoothAdvConfig",
    "SmoothAdvPGD", "bpda", "bpda_pgd", "epgd", "eps_monotonicity", "gradient_free_gap", "gradient_health", "nattack",
    "output_randomness", "pgd", "sane_config", "score_randomized", "smoothadv_pgd", "table_v_config",
]
