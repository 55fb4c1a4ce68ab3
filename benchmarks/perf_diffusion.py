#!/usr/bin/env python3
"""Certification throughput of denoised pipelines, side by side in one run (issue 11).

On the same digits test images, classifier (``digits_cnn``), sigma, n0, n and batch size it times ``art_ext.certify``
of, in interleaved rounds (medians reported, so a change in machine load hits every pipeline alike):
  cnn          the classifier alone (the floor of every pipeline's cost),
  dncnn        the zoo's DnCNN (MSE, trained at sigma) + classifier (Salman et al. 2020),
  diffusion    ``digits_ddpm`` one-shot denoising + classifier (Carlini et al. 2023, Algorithm 1),
  diffusion-k  the same with a k-step DDIM chain from t* (``--steps``; Carlini et al. Sec. 3).
Throughput is noise samples per second (images * (n0 + n) per certify call), and each pipeline's ratio to DnCNN + CNN.

    python benchmarks/perf_diffusion.py [--sigma 0.5] [--images 4] [--n 1000] [--rounds 3] [--threads 1] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from art_ext import certify, zoo
from art_ext.data import digits
from art_ext.defences.denoised_smoothing import DenoisedClassifier


def pipelines(sigma: float, steps: int) -> dict[str, torch.nn.Module]:
    cnn = zoo.load("digits_cnn", verbose=False).module
    dncnn = zoo.load(f"digits_dncnn_mse_{int(round(sigma * 100)):03d}", kind="denoiser", verbose=False).module
    one_shot = zoo.diffusion_denoiser("digits_ddpm", sigma)
    chain = zoo.diffusion_denoiser("digits_ddpm", sigma, multistep=True, num_steps=steps)
    return {
        "cnn": cnn,
        "dncnn": DenoisedClassifier(dncnn, cnn).eval(),
        "diffusion": DenoisedClassifier(one_shot, cnn).eval(),
        f"diffusion-{steps}": DenoisedClassifier(chain, cnn).eval(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma", type=float, default=0.5, choices=[0.25, 0.5])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = digits.load_digits("test", resolution=16).x[: args.images]
    models = pipelines(args.sigma, args.steps)  # loading / training happens here, outside the timed calls
    samples = args.images * (args.n0 + args.n)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, base in models.items():
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            certify(base, x, n0=args.n0, n=args.n, sigma=args.sigma, alpha=0.001, num_classes=10,
                    batch_size=args.batch_size, generator=generator)
            times[name].append(time.perf_counter() - start)
    print(f"\ndigits 16x16, {args.images} images, sigma={args.sigma}, n0={args.n0}, n={args.n}, "
          f"batch {args.batch_size}, {args.rounds} interleaved rounds (median), {args.threads} thread(s), "
          f"torch {torch.__version__}, CPU\n")
    print("| pipeline | samples/s | x DnCNN + CNN |")
    print("|---|---|---|")
    reference = samples / statistics.median(times["dncnn"])
    for name, t in times.items():
        rate = samples / statistics.median(t)
        print(f"| {name} | {rate:,.0f} | {rate / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
