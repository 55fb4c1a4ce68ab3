"""Attacks: pure-torch cores (one PGD loop, one projection) and their ART ``EvasionAttack`` adapters.

The cores (``pgd``, ``bpda_pgd``, ``epgd``, ``smoothadv_pgd``, ``nattack``, the rigor checks, ``score_randomized``)
import torch only. The ART adapters (``PGD``, ``BPDAPGD``, ``EPGD``, ``SmoothAdvPGD``, ``NAttack``) live in
``art_ext.attacks.adapters`` and are loaded, with ART, on first use (PEP 562), so ``import art_ext.attacks`` does not
import ART.
"""

from typing import TYPE_CHECKING, Any

from art_ext.attacks.bpda_pgd import BPDA, bpda, bpda_pgd, sane_config, table_v_config
from art_ext.attacks.epgd import EPGDConfig, epgd
from art_ext.attacks.nattack import NAttackConfig, NAttackResult, nattack
from art_ext.attacks.pgd import PGDConfig, pgd
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
from art_ext.attacks.smoothadv import SmoothAdvConfig, smoothadv_pgd

if TYPE_CHECKING:
    from art_ext.attacks.adapters import BPDAPGD, EPGD, PGD, NAttack, SmoothAdvPGD

#: the ART adapters, imported from ``art_ext.attacks.adapters`` on first access
_ADAPTERS = ("BPDAPGD", "EPGD", "NAttack", "PGD", "SmoothAdvPGD")

__all__ = [
    "BPDA", "BPDAPGD", "EPGD", "EPGDConfig", "GradientCheck", "GradientFreeGap", "MonotonicityCheck", "NAttack",
    "NAttackConfig", "NAttackResult", "PGD", "PGDConfig", "RandomizedScore", "RandomnessCheck", "SmoothAdvConfig",
    "SmoothAdvPGD", "bpda", "bpda_pgd", "epgd", "eps_monotonicity", "gradient_free_gap", "gradient_health", "nattack",
    "output_randomness", "pgd", "sane_config", "score_randomized", "smoothadv_pgd", "table_v_config",
]


def __getattr__(name: str) -> Any:
    if name in _ADAPTERS:
        from art_ext.attacks import adapters

        return getattr(adapters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ADAPTERS))
