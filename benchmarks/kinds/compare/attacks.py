"""The ``compare`` kind's deployments (one ``art_ext.deployment.Deployment`` per (model, defence)) and its attacks,
each output passed through the deployment's one final projection onto the eps-ball and the bounds."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from art_ext.attacks import NAttackConfig, PGDConfig, nattack, pgd
from art_ext.deployment import Deployment, declared_noise
from art_ext.smoothing import SmoothedInference
from art_ext.smoothing.keys import NoiseKeys
from art_ext.types import Norm
from benchmarks.kinds.compare.schema import ATTACKS, is_randomized
from benchmarks.kinds.compare.spec import CompareSpec


def deploy(module: nn.Module, defence: str, spec: CompareSpec, num_classes: int, device: torch.device,
           defence_gen: torch.Generator, query_gen: torch.Generator, adaptation: torch.Tensor | None) -> Deployment:
    """The deployed (model, defence): ``bn_adapt`` adapts the BatchNorm statistics (a seed drawn from
    ``defence_gen``) and deploys the result as it is; a randomized defence is smoothed inference (``decide`` draws
    from ``query_gen``) in its declared noise space (a zoo denoiser's, else pixels), and gradient attacks
    differentiate its frozen-noise surrogate (seeded by the first draw of ``defence_gen``)."""
    if defence == "bn_adapt":
        from art_ext.defences.bn_adaptation import adapt_batchnorm

        if adaptation is None:
            raise ValueError("bn_adapt needs the adaptation images")
        sigma = spec.bn_sigma
        seed_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=defence_gen,
                                                                                device=device)))
        return Deployment.plain(adapt_batchnorm(module, adaptation.to(device), sigma=sigma, generator=seed_gen))
    if not is_randomized(defence):
        return Deployment.plain(module)
    samples = spec.smoothing_samples
    frozen_seed = int(torch.randint(2 ** 62, (1,), generator=defence_gen, device=device))
    scheme, _, rest = defence.partition(":")
    if scheme == "denoiser":
        from art_ext import zoo

        denoiser = zoo.load(rest, kind="denoiser", device=device)
        sigma, space = declared_noise(denoiser.entry)
        return Deployment.denoised(denoiser.module, module, sigma, num_classes=num_classes, num_samples=samples,
                                   noise_space=space, generator=query_gen, gradient="frozen", frozen_seed=frozen_seed)
    return Deployment.smoothed(module, spec.sigma, num_classes=num_classes, num_samples=samples,
                               mode=rest, generator=query_gen, gradient="frozen", frozen_seed=frozen_seed)


class KeyedPasses(nn.Module):
    """A randomized defence's forward whose call p draws under ``keys.derive(p)`` (one key per image of the input):
    the passes of ``rigor.output_randomness`` keyed per image, without changing that check."""

    def __init__(self, decide: SmoothedInference, keys: NoiseKeys) -> None:
        super().__init__()
        self.decide, self.keys, self.calls = decide, keys, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys, self.calls = self.keys.derive(self.calls), self.calls + 1
        return self.decide.scores(x, keys=keys)


def _fork_rng(device: torch.device) -> Any:
    """Save and restore torch's global RNG state (CPU and, on CUDA, the device's) around an attack that reseeds it."""
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def run_attack(name: str, spec: CompareSpec, norm: Norm, eps: float, target: Deployment, x: torch.Tensor,
               y: torch.Tensor, seed: int, *, keys: NoiseKeys | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adversarial examples [B, ...] of one attack at one eps (and NAttack's per-example queries), after the one
    final projection onto the eps-ball and the bounds (``Deployment.finish``), external attacks included.

    The art_ext attacks (PGD, NAttack) key their randomness per image by ``keys.derive(name)`` (``keys``: one per
    image of ``x``; ``None``: keys drawn from a generator seeded with ``seed``). The external attacks (APGD,
    AutoAttack) draw from torch's global RNG, seeded with ``seed`` inside a fork of it: they cannot be keyed per
    image, so their results depend on the images attacked together."""
    if name == "none" or eps == 0:
        return x, None
    mine = NoiseKeys.draw(torch.Generator(device=x.device).manual_seed(seed), x.shape[0], x.device) if keys is None \
        else keys.derive(name)
    x_adv, queries = _attack(name, spec, norm, eps, target, x, y, seed, mine)
    return target.finish(x, x_adv, eps, norm), queries


def _attack(name: str, spec: CompareSpec, norm: Norm, eps: float, target: Deployment, x: torch.Tensor,
            y: torch.Tensor, seed: int, mine: NoiseKeys) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``run_attack`` before the final projection."""
    device = x.device
    steps = spec.steps
    surrogate = target.differentiate
    if name == "pgd":
        config = PGDConfig(eps=eps, eps_step=2.5 * eps / steps, max_iter=steps, norm=norm, num_random_init=1)
        return pgd(surrogate, x, y, config, keys=mine), None
    # external attacks: torch's global RNG, seeded per unit (``seed``), so their rows depend on the unit's images
    if name in ("apgd-ce", "apgd-dlr"):
        import torchattacks

        with _fork_rng(device):
            attack = torchattacks.APGD(surrogate, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=steps,
                                       n_restarts=spec.apgd_restarts, seed=seed % 2 ** 31,
                                       loss=name.partition("-")[2])
            return attack(x, y).detach(), None
    if name == "autoattack":
        try:
            from pyautoattack import AutoAttack
        except ImportError:
            from autoattack import AutoAttack
        with _fork_rng(device):
            chosen = spec.autoattack_attacks  # a cheaper custom subset (the report says so)
            extra = {"attacks": list(chosen), "version": "custom"} if chosen else \
                {"version": spec.autoattack_version}
            aa = AutoAttack(surrogate, norm="Linf" if norm == "linf" else "L2", eps=eps, device=device,
                            seed=seed % 2 ** 31, **extra)
            out = aa.run_standard_evaluation(x, y, batch_size=x.shape[0])
            x_adv = out[0] if isinstance(out, tuple) else out  # pyautoattack returns (x_adv, y_adv)
            return x_adv.detach(), None
    if name == "nattack":
        nattack_cfg = NAttackConfig(eps=eps, norm=norm, max_iter=spec.nattack_iter,
                                    pop_size=spec.nattack_pop, max_queries=spec.nattack_queries, check_every=5)
        query = target.query(target.smoothed_classifier.generator if target.randomized else None)
        result = nattack(query, x, y, nattack_cfg, predict=lambda z: target.decide(z).argmax(1), keys=mine)
        return result.x_adv, result.queries
    raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")
