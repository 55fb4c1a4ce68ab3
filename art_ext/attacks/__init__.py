"""Attacks: pure-torch cores (one PGD loop) and their ART ``EvasionAttack`` adapters."""

from art_ext.attacks.pgd import PGDConfig, pgd

__all__ = ["PGDConfig", "pgd"]
