#!/usr/bin/env python3
"""Certification throughput, side by side in one run: art_ext vs the raw forward ceiling vs ART.

For the same model, images, n0, n, sigma and batch size it times, in interleaved rounds (medians reported):
  raw     the model's batched forward on pre-generated inputs (the ceiling: no noise, no counting),
  art_ext ``art_ext.certify`` (streaming noise in place, several images per device batch, counting in torch; each
          image's noise drawn from its own key in fixed blocks, so counts do not depend on the batch size),
  one stream  the same streaming loop with one ``normal_`` call per device batch (how art_ext drew noise before the
          per-image keys: faster to draw, but an image's noise then depended on the batch size), kept here as the
          "before" of that change,
  ART     ``PyTorchRandomizedSmoothing.certify`` (sample_size = n0, the same n and batch_size).
Throughput is noise samples per second, B * (n0 + n) samples per certify call. It then measures peak memory of
``art_ext.certify`` at n = 2,000 and n = 200,000 on a 3x32x32 input in fresh subprocesses.

    python benchmarks/perf_certify.py [--threads 1] [--batch-size 256] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from art_ext import certify
from art_ext.models import SmallCNN

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def build_model(width: int = 16) -> torch.nn.Module:
    """An untrained SmallCNN on 3x32x32 (width 16: 32k parameters, 2 MMAC per image), fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SmallCNN(in_channels=3, width=width, mean=CIFAR_MEAN, std=CIFAR_STD).eval()


def time_raw(model, batch_size: int, samples: int) -> float:
    """Seconds per sample of the plain batched forward over `samples` inputs."""
    inputs = torch.rand(batch_size, 3, 32, 32)
    calls = max(1, round(samples / batch_size))
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(calls):
            model(inputs)
        return (time.perf_counter() - start) / (calls * batch_size)


def time_ours(model, x: torch.Tensor, n0: int, n: int, sigma: float, batch_size: int) -> float:
    start = time.perf_counter()
    certify(model, x, n0=n0, n=n, sigma=sigma, alpha=0.001, num_classes=10, batch_size=batch_size,
            generator=torch.Generator().manual_seed(0))
    return (time.perf_counter() - start) / (x.shape[0] * (n0 + n))


@torch.inference_mode()
def batch_stream_counts(model, x: torch.Tensor, n: int, sigma: float, batch_size: int,
                        generator: torch.Generator) -> torch.Tensor:
    """Class counts [B, 10] with one noise stream per device batch: the sampling loop before per-image keys."""
    counts = torch.zeros(x.shape[0], 10, dtype=torch.long)
    total, start = x.shape[0] * n, 0
    buffer = torch.empty((min(batch_size, total), *x.shape[1:]))
    while start < total:
        stop = min(start + batch_size, total)
        noisy = buffer[: stop - start].normal_(0.0, sigma, generator=generator)
        first, last = start // n, (stop - 1) // n
        for image in range(first, last + 1):
            lo, hi = max(start, image * n) - start, min(stop, (image + 1) * n) - start
            noisy[lo:hi].add_(x[image])
        owner = torch.arange(start, stop) // n - first
        votes = model(noisy).argmax(dim=1)
        counts[first : last + 1] += torch.bincount(owner * 10 + votes, minlength=(last - first + 1) * 10).view(-1, 10)
        start = stop
    return counts


def time_batch_stream(model, x: torch.Tensor, n0: int, n: int, sigma: float, batch_size: int) -> float:
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    batch_stream_counts(model, x, n0, sigma, batch_size, generator)
    batch_stream_counts(model, x, n, sigma, batch_size, generator)
    return (time.perf_counter() - start) / (x.shape[0] * (n0 + n))


def time_art(art_model, x: np.ndarray, n0: int, n: int, batch_size: int) -> float:
    start = time.perf_counter()
    art_model.certify(x, n=n, batch_size=batch_size)
    return (time.perf_counter() - start) / (x.shape[0] * (n0 + n))


def peak_memory_mb(n: int, batch_size: int) -> float:
    """Growth of peak RSS (MB) during one art_ext.certify call with n samples, in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import resource, sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from art_ext import certify
        from benchmarks.perf_certify import build_model
        torch.set_num_threads(1)
        model, x = build_model(), torch.rand(1, 3, 32, 32)
        certify(model, x, n0=10, n={batch_size}, sigma=0.25, alpha=0.001, num_classes=10, batch_size={batch_size})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        certify(model, x, n0=100, n={n}, sigma=0.25, alpha=0.001, num_classes=10, batch_size={batch_size})
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--width", type=int, default=16, help="SmallCNN width (16: 32k params; 32: 91k params)")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    model = build_model(args.width)
    settings = {"one image (B=1, n0=100, n=10,000)": (1, 100, 10_000),
                "many images (B=32, n0=100, n=1,000)": (32, 100, 1_000)}
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}  # the --json document: a summary per setting, then the memory numbers
    for label, (images, n0, n) in settings.items():
        x_np = rng.random((images, 3, 32, 32), dtype=np.float32)
        x = torch.from_numpy(x_np)
        art_model = PyTorchRandomizedSmoothing(
            model, torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10, clip_values=(0.0, 1.0),
            sample_size=n0, scale=args.sigma, alpha=0.001, device_type="cpu",
        )
        samples = images * (n0 + n)
        times: dict[str, list[float]] = {"raw": [], "art_ext": [], "one stream": [], "ART": []}
        time_ours(model, x[:1], 10, args.batch_size, args.sigma, args.batch_size)  # warm-up
        runners = {  # partial binds this setting's x, n0, n now, not whatever the loop variables hold when called
            "raw": partial(time_raw, model, args.batch_size, samples),
            "art_ext": partial(time_ours, model, x, n0, n, args.sigma, args.batch_size),
            "one stream": partial(time_batch_stream, model, x, n0, n, args.sigma, args.batch_size),
            "ART": partial(time_art, art_model, x_np, n0, n, args.batch_size),
        }
        order = list(runners)
        for round_index in range(args.rounds):  # interleaved, rotating the order so machine load hits all alike
            for name in order[round_index % len(order):] + order[: round_index % len(order)]:
                times[name].append(runners[name]())
        med = {k: statistics.median(v) for k, v in times.items()}
        results[label] = {
            "samples_per_s": {k: 1.0 / v for k, v in med.items()},
            "art_ext_over_ceiling": med["raw"] / med["art_ext"],
            "one_stream_over_ceiling": med["raw"] / med["one stream"],
            "ART_over_ceiling": med["raw"] / med["ART"],
            "art_ext_speedup_over_ART": med["ART"] / med["art_ext"],
        }

    print(f"\nthreads={args.threads} batch_size={args.batch_size} rounds={args.rounds} sigma={args.sigma} "
          f"model=SmallCNN-w{args.width} 3x32x32 ({sum(p.numel() for p in model.parameters()) / 1e3:.0f}k params), "
          f"torch {torch.__version__}\n")
    print("| setting | raw forward (samples/s) | art_ext | one stream | ART | art_ext / ceiling | one stream / ceiling "
          "| ART / ceiling | art_ext vs ART |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, r in results.items():
        s = r["samples_per_s"]
        print(f"| {label} | {s['raw']:,.0f} | {s['art_ext']:,.0f} | {s['one stream']:,.0f} | {s['ART']:,.0f} | "
              f"{r['art_ext_over_ceiling']:.2f} | {r['one_stream_over_ceiling']:.2f} | {r['ART_over_ceiling']:.2f} | "
              f"{r['art_ext_speedup_over_ART']:.2f}x |")
    if not args.skip_memory:
        memory = {n: peak_memory_mb(n, args.batch_size) for n in (2_000, 200_000)}
        results["peak_rss_growth_mb"] = memory
        print(f"\npeak RSS growth of art_ext.certify on 3x32x32: n=2,000: {memory[2_000]:.1f} MB, "
              f"n=200,000: {memory[200_000]:.1f} MB (materializing 200,000 float32 copies would take 2,458 MB)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
