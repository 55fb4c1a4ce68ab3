#!/usr/bin/env python3
"""Fixed-n CERTIFY vs sequential CERTIFY, side by side in one run on the same images and models.

For each digits zoo model (noise-trained CNNs at their training sigma) it certifies the same test images three times:
  fixed-n     ``certify(n0, n = n_max)`` (Cohen et al. 2019),
  seq. grid   ``certify_sequential`` settled for the grid 0.25 / 0.5 / 0.75 / 1.0,
  seq. r=0.5  ``certify_sequential`` settled for the single radius 0.5,
and prints certified accuracy at each grid radius, mean and median forward passes per image (selection included),
wall time, and the fixed-n / sequential ratios of passes and of wall time.

    python benchmarks/perf_sequential.py [--images 100] [--skip 0] [--n-max 10000] [--method staged_cp] [--threads 1]
                                         [--final-alpha-share S] [--top-alpha-share S] [--futility F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from art_ext import certify, certify_sequential, zoo
from art_ext.data import LabeledImages, digits
from art_ext.smoothing.metrics import certified_accuracy

GRID = (0.25, 0.5, 0.75, 1.0)
MODELS = {"digits_cnn_noise025": 0.25, "digits_cnn_noise050": 0.5}


def run_one(label: str, fn, y: torch.Tensor) -> dict:
    start = time.perf_counter()
    certs = fn()
    seconds = time.perf_counter() - start
    passes = certs.num_samples if certs.num_samples is not None else torch.full_like(certs.label, certs.n0 + certs.n)
    return {
        "run": label, "seconds": seconds, "mean_passes": float(passes.double().mean()),
        "median_passes": float(passes.double().median()),
        "certified_accuracy": certified_accuracy(certs, y, GRID),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="test images of the digits split (of 500)")
    parser.add_argument("--skip", type=int, default=0,
                        help="start after this many test images (e.g. --skip 200 --images 300: held-out images)")
    parser.add_argument("--n-max", type=int, default=10_000)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--method", default="staged_cp", choices=["staged_cp", "mixture_cs"])
    parser.add_argument("--final-alpha-share", type=float, default=None,
                        help="staged_cp: share of alpha at n_max (default: certify_sequential's)")
    parser.add_argument("--top-alpha-share", type=float, default=None,
                        help="staged_cp: share of alpha at the top look (default: certify_sequential's)")
    parser.add_argument("--futility", type=float, default=None,
                        help="threshold of the stopping heuristic's predictive probability (default: "
                             "certify_sequential's)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = digits.load_digits("test", resolution=16)
    if args.skip < 0 or args.images < 1 or args.skip + args.images > len(data):
        parser.error(f"--skip {args.skip} --images {args.images} must select images inside the {len(data)} test "
                     "images (skip >= 0, images >= 1)")
    data = LabeledImages(data.x[args.skip : args.skip + args.images], data.y[args.skip : args.skip + args.images],
                         data.classes, f"{data.name}[{args.skip}:{args.skip + args.images}]")
    common = dict(n0=args.n0, alpha=args.alpha, num_classes=data.num_classes, batch_size=args.batch_size)
    tuning: dict = {}
    if args.final_alpha_share is not None:
        tuning["final_alpha_share"] = args.final_alpha_share
    if args.top_alpha_share is not None:
        tuning["top_alpha_share"] = args.top_alpha_share
    if args.futility is not None:
        tuning["futility"] = args.futility
    results = []
    for name in args.models:
        sigma = MODELS[name]
        model = zoo.load(name, device="cpu", verbose=False).module

        def gen() -> torch.Generator:
            return torch.Generator().manual_seed(args.seed)

        def sequential(radii: tuple[float, ...], model=model, sigma=sigma):
            with warnings.catch_warnings():  # radii above the n_max cap are named once below, not per call
                warnings.simplefilter("ignore", RuntimeWarning)
                return certify_sequential(model, data.x, sigma=sigma, radii=radii, n_max=args.n_max,
                                          method=args.method, generator=gen(), **tuning, **common)

        runs = [
            run_one("fixed-n", lambda model=model, sigma=sigma: certify(
                model, data.x, n=args.n_max, sigma=sigma, generator=gen(), **common), data.y),
            run_one("seq. grid", lambda: sequential(GRID), data.y),
            run_one("seq. r=0.5", lambda: sequential((0.5,)), data.y),
        ]
        for r in runs:
            r.update(model=name, sigma=sigma, passes_ratio=runs[0]["mean_passes"] / r["mean_passes"],
                     wall_ratio=runs[0]["seconds"] / r["seconds"])
        results += runs

    print(f"\n{args.images} digits test images (16x16; {data.name}), n0={args.n0}, n = n_max = {args.n_max:,}, "
          f"alpha={args.alpha}, method={args.method}, {tuning or 'default tuning'}, batch_size={args.batch_size}, "
          f"threads={args.threads}, seed={args.seed}, torch {torch.__version__}, CPU\n")
    head = " | ".join(f"r={r:g}" for r in GRID)
    print(f"| model, σ | run | {head} | mean passes | median passes | wall s | passes ratio | wall ratio |")
    print("|---|---|" + "---|" * (len(GRID) + 5))
    for r in results:
        accs = " | ".join(f"{r['certified_accuracy'][g]:.3f}" for g in GRID)
        print(f"| {r['model']}, {r['sigma']:g} | {r['run']} | {accs} | {r['mean_passes']:,.0f} | "
              f"{r['median_passes']:,.0f} | {r['seconds']:.1f} | {r['passes_ratio']:.2f}x | {r['wall_ratio']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
