#!/usr/bin/env python3
"""Side by side, in one process: art_ext attacks vs torchattacks (PGDL2, EOTPGD, PGDRSL2) and ART
ProjectedGradientDescent on the same model, inputs and seed. Prints time per step ratios (interleaved rounds,
median) and robust accuracies.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/compare_attacks.py [--images 100] [--rounds 3]

Per-step time = (T(steps) - T(1 step)) / (steps - 1), which removes fixed per-call overhead. Randomized models are
scored over k draws of soft smoothing (mean softmax over 32 noisy passes).

``--section smoothadv --seeds 6`` compares SmoothAdv with fixed noise (Salman et al.'s code, the default), SmoothAdv
with fresh noise per step and torchattacks' PGDRSL2 (fresh noise per step) on the same images and model over several
seeds: per seed, all three attacks use that seed and are scored on the same k draws of the deployed soft smoothed
classifier; the table gives mean robust accuracy and paired differences (mean +- standard error over seeds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from torch import nn

from art_ext import zoo
from art_ext.attacks import EPGDConfig, PGDConfig, SmoothAdvConfig, epgd, pgd, score_randomized, smoothadv_pgd
from art_ext.data import digits
from art_ext.deployment import Deployment
from art_ext.smoothing.noise import GaussianNoise
from benchmarks import report as rep


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def per_step(runs: dict[str, Callable[[int], Callable[[], torch.Tensor]]], steps: int, rounds: int
             ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median per-step seconds of each run (round-robin interleaved) and each run's output at ``steps``."""
    samples: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for name, make in runs.items():
            t_one, _ = timed(make(1))
            t_full, outputs[name] = timed(make(steps))
            samples[name].append((t_full - t_one) / (steps - 1))
    return {k: statistics.median(v) for k, v in samples.items()}, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--section", choices=("all", "timing", "smoothadv"), default="all")
    parser.add_argument("--seeds", type=int, default=6, help="seeds of the SmoothAdv fixed/fresh comparison")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.section == "smoothadv":
        print(smoothadv_noise_comparison(args.images, args.steps, args.seeds))
        return 0

    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    data = digits.load_digits("test").head(args.images)
    x, y = data.x, data.y
    steps, eps, sigma, m = args.steps, 0.5, 0.5, 8
    step = 2.5 * eps / steps
    gen = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731

    def reseed() -> None:  # torchattacks and ART draw from the global RNGs
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)

    lines = [f"{args.images} digits test images, {args.threads} thread(s), {args.rounds} interleaved rounds, "
             f"median per-step time = (T({steps}) - T(1)) / {steps - 1}; l2 eps={eps}, step={step}", ""]

    # 1. PGD-L2 on the standard model
    model = zoo.load("digits_cnn").module
    clf = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=(1, 16, 16), nb_classes=10,
                            clip_values=(0.0, 1.0))

    def ours_pgd(n):
        return lambda: pgd(model, x, y, PGDConfig(eps, step, n, "l2"), generator=gen())

    def ta_pgd(n):
        def run():
            reseed()
            return torchattacks.PGDL2(model, eps=eps, alpha=step, steps=n, random_start=False)(x, y)
        return run

    def art_pgd(n):
        def run():
            reseed()
            attack = ProjectedGradientDescent(clf, norm=2, eps=eps, eps_step=step, max_iter=n, batch_size=len(x),
                                              verbose=False)
            return torch.as_tensor(attack.generate(x.numpy(), y.numpy()))
        return run

    times, outs = per_step({"art_ext pgd": ours_pgd, "torchattacks PGDL2": ta_pgd,
                            "ART ProjectedGradientDescent": art_pgd}, steps, args.rounds)
    lines += ["## PGD-L2, digits_cnn (deterministic)", "",
              "| attack | per-step ms | ratio to art_ext | robust acc |", "|---|---|---|---|"]
    for name, t in times.items():
        with torch.no_grad():
            acc = (model(outs[name]).argmax(1) == y).float().mean().item()
        lines.append(f"| {name} | {1000 * t:.2f} | {t / times['art_ext pgd']:.2f} | {acc:.3f} |")

    # 2./3. EOT and SmoothAdv on the noise-trained model under soft smoothing
    base = zoo.load("digits_cnn_noise050").module
    noisy = nn.Sequential(GaussianNoise(sigma), base).eval()  # fresh global-RNG noise per call (torchattacks)

    def deployed():
        return Deployment.smoothed(base, sigma, num_classes=10, num_samples=32,
                                   generator=torch.Generator().manual_seed(args.seed + 1)).decide

    def ours_epgd(n):
        return lambda: epgd(base, x, y, EPGDConfig(eps, step, sigma=sigma, max_iter=n, norm="l2", eot_samples=m),
                            generator=gen())

    def ours_epgd_linf(n):
        return lambda: epgd(base, x, y, EPGDConfig(0.1, 0.025, sigma=sigma, max_iter=n, norm="linf",
                                                   eot_samples=m), generator=gen())

    def ta_eotpgd(n):
        def run():
            reseed()
            return torchattacks.EOTPGD(noisy, eps=0.1, alpha=0.025, steps=n, eot_iter=m, random_start=False)(x, y)
        return run

    def ours_smoothadv(n):
        return lambda: smoothadv_pgd(base, x, y, SmoothAdvConfig(eps, sigma=sigma, max_iter=n, eps_step=step,
                                                                 num_noise=m), generator=gen())

    def ta_pgdrsl2(n):
        def run():
            reseed()
            return torchattacks.PGDRSL2(base, eps=eps, alpha=step, steps=n, noise_type="guassian", noise_sd=sigma,
                                        noise_batch_size=m)(x, y)
        return run

    times, outs = per_step({"art_ext epgd linf (M=8)": ours_epgd_linf, "torchattacks EOTPGD linf (eot_iter=8)":
                            ta_eotpgd, "art_ext epgd l2 (M=8)": ours_epgd, "art_ext smoothadv l2 (m=8)":
                            ours_smoothadv, "torchattacks PGDRSL2 (m=8)": ta_pgdrsl2}, steps, args.rounds)
    reference = {"art_ext epgd linf (M=8)": "art_ext epgd linf (M=8)",
                 "torchattacks EOTPGD linf (eot_iter=8)": "art_ext epgd linf (M=8)",
                 "art_ext epgd l2 (M=8)": "art_ext smoothadv l2 (m=8)",
                 "art_ext smoothadv l2 (m=8)": "art_ext smoothadv l2 (m=8)",
                 "torchattacks PGDRSL2 (m=8)": "art_ext smoothadv l2 (m=8)"}
    lines += ["", f"## EOT / SmoothAdv, digits_cnn_noise050 at sigma={sigma}, scored over k=10 draws of soft "
              "smoothing (M=32); linf rows use eps=0.1, step 0.025", "",
              "| attack | per-step ms | ratio to art_ext counterpart | robust acc mean | robust acc worst of 10 |",
              "|---|---|---|---|---|"]
    for name, t in times.items():
        score = score_randomized(deployed(), outs[name], y, draws=10)
        lines.append(f"| {name} | {1000 * t:.2f} | {t / times[reference[name]]:.2f} | {score.mean_accuracy:.3f} | "
                     f"{score.worst_case_accuracy:.3f} |")
    if args.section == "all":
        lines += ["", smoothadv_noise_comparison(args.images, args.steps, args.seeds)]
    print("\n".join(lines))
    return 0


def mean_se(values: list[float]) -> str:
    """'mean ± standard error' of per-seed differences (``benchmarks.report``'s one ± formatter)."""
    return rep.cell(float(np.mean(values)), rep.se_of_mean(values), digits=4, signed=True)


def smoothadv_noise_comparison(images: int, steps: int, seeds: int, *, eps: float = 0.5, sigma: float = 0.5,
                               m: int = 8, draws: int = 10) -> str:
    """SmoothAdv fixed vs fresh noise vs torchattacks PGDRSL2, paired over ``seeds`` on the same images and model."""
    import torchattacks

    data = digits.load_digits("test").head(images)
    x, y = data.x, data.y
    base = zoo.load("digits_cnn_noise050").module.eval()
    step = 2.5 * eps / steps
    names = ("SmoothAdv fixed (default)", "SmoothAdv fresh", "torchattacks PGDRSL2")
    acc: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.perf_counter()
    for seed in range(seeds):
        outs = {}
        for noise in ("fixed", "fresh"):
            config = SmoothAdvConfig(eps, sigma=sigma, max_iter=steps, eps_step=step, num_noise=m, noise=noise)
            outs[f"SmoothAdv {noise}" + (" (default)" if noise == "fixed" else "")] = smoothadv_pgd(
                base, x, y, config, generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)  # torchattacks draws from the global RNG
        outs["torchattacks PGDRSL2"] = torchattacks.PGDRSL2(base, eps=eps, alpha=step, steps=steps,
                                                            noise_type="guassian", noise_sd=sigma,
                                                            noise_batch_size=m)(x, y)
        for name in names:  # the same deployed draws for the three attacks of this seed (paired)
            deployed = Deployment.smoothed(base, sigma, num_classes=10, num_samples=32,
                                          generator=torch.Generator().manual_seed(10_000 + seed)).decide
            acc[name].append(score_randomized(deployed, outs[name], y, draws=draws).mean_accuracy)
    seconds = time.perf_counter() - t0
    fixed, fresh, ta = (acc[n] for n in names)
    diff = lambda a, b: [u - v for u, v in zip(a, b, strict=True)]  # noqa: E731
    lines = [f"## SmoothAdv noise schedule vs torchattacks PGDRSL2: digits_cnn_noise050, {images} digits test images, "
             f"l2 eps={eps}, step={step:g}, {steps} steps, m={m}, sigma={sigma}; robust accuracy = mean over k={draws} "
             f"draws of soft smoothing (M=32); {seeds} seeds, paired per seed ({seconds:.0f} s)", "",
             "| attack | robust acc (mean over seeds) | per seed |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {np.mean(acc[name]):.4f} | {', '.join(f'{a:.3f}' for a in acc[name])} |")
    lines += ["", "| paired difference (lower robust acc = stronger attack) | mean ± s.e. over seeds |", "|---|---|",
              f"| fixed - PGDRSL2 | {mean_se(diff(fixed, ta))} |",
              f"| fresh - PGDRSL2 | {mean_se(diff(fresh, ta))} |",
              f"| fixed - fresh | {mean_se(diff(fixed, fresh))} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
