#!/usr/bin/env python3
"""Training time of art_ext's certified training beside ART 1.20.1's trainers, side by side in one run.

For SmoothAdv, MACER and SmoothMix at one sigma it trains, alternately and ``--repeats`` times each, from the same
initialization on the same digits training images with the same batch size, optimizer and thread count:

  art_ext  ``train_certified_epochs`` with the zoo model's method (``digits_cnn_<method><sigma>``), and for SmoothAdv
           also with one noise draw (``m = 1``), the setting ART's ``PyTorchSmoothAdv`` runs with (it fails at two);
  ART      the ``certified_training`` suite's ART trainer for that method and sigma (its ``art_args``), by ART's own
           ``fit``,

and prints the median seconds per epoch of each and the ratio ART / art_ext. A ratio above 1 means ART is slower. The
two sides do the same number of forward and backward passes where the settings agree (MACER: k noise draws;
SmoothMix: T steps, m draws), so the ratio is the implementations' cost. ART's ``fit`` also converts the data to
NumPy and back for every batch; art_ext's loop keeps it in torch.

    python benchmarks/perf_certified_training.py [--sigma 0.25] [--epochs 2] [--repeats 3] [--threads 1]
                                                 [--images N] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from art_ext import zoo
from art_ext.data import digits
from art_ext.ops.modes import torch_threads
from art_ext.training.certified import CertifiedMethod, SmoothAdvTraining, train_certified_epochs
from art_ext.zoo.catalogue.certified import sigma_tag
from benchmarks import common
from benchmarks.kinds import certified_training as kind

METHODS = ("smoothadv", "macer", "smoothmix")


def time_art_ext(entry_name: str, method: CertifiedMethod, x: torch.Tensor, y: torch.Tensor, epochs: int,
                 seed: int) -> float:
    """Seconds per epoch of ``train_certified_epochs`` from the zoo entry's initialization and optimizer."""
    entry = zoo.get_entry(entry_name, kind="classifier")
    budget = entry.train  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    module = entry.build()
    optimizer = torch.optim.Adam(module.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    started = time.perf_counter()
    train_certified_epochs(module, x, y, method, optimizer=optimizer, batch_size=budget.batch_size, nb_epochs=epochs,
                           generator=torch.Generator().manual_seed(seed))
    return (time.perf_counter() - started) / epochs


def time_art(spec: kind.CertifiedTrainingSpec, config: kind.TrainingConfigSpec, epochs: int, seed: int) -> float:
    """Seconds per epoch of the suite's ART trainer (``kind.train_art``: ART's ``fit``, timed inside)."""
    _, seconds = kind.train_art(spec, dataclasses.replace(config, epochs=epochs), seed)
    return seconds / epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma", type=float, default=0.25, choices=(0.25, 0.5))
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed training (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed trainings per side and method (>= 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (>= 1)")
    parser.add_argument("--images", type=int, default=None, help="training images (default: the whole split)")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    for name in ("epochs", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.images is not None and args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")

    suite = common.load_suite("certified_training")
    spec = kind.spec_of(suite)
    if args.images is not None:
        spec = dataclasses.replace(spec, train_images=args.images)
    data = digits.load_digits("train", resolution=spec.resolution).head(spec.train_images)
    x, y = data.x, data.y
    results = []
    with torch_threads(args.threads):
        for method_name in METHODS:
            art_config = next(c for c in spec.configs if c.art is not None and c.method == method_name
                              and c.sigma == args.sigma)
            entry_name = f"digits_cnn_{method_name}{sigma_tag(args.sigma)}"
            shipped = zoo.get_entry(entry_name, kind="classifier").train.method  # type: ignore[attr-defined]
            sides: dict[str, CertifiedMethod | None] = {"art_ext": shipped}
            if isinstance(shipped, SmoothAdvTraining) and shipped.num_noise_vec != 1:
                sides["art_ext m=1"] = dataclasses.replace(shipped, num_noise_vec=1)
            sides["ART"] = None
            times: dict[str, list[float]] = {side: [] for side in sides}
            for repeat in range(args.repeats):  # alternate the sides so a change of machine load hits all of them
                for side, method in sides.items():
                    seconds = (time_art(spec, art_config, args.epochs, repeat) if method is None
                               else time_art_ext(entry_name, method, x, y, args.epochs, repeat))
                    times[side].append(seconds)
            medians = {side: statistics.median(values) for side, values in times.items()}
            results.append({"method": method_name, "sigma": args.sigma, "art_args": dict(art_config.art_args),
                            "seconds_per_epoch": times, "median": medians})
            line = ", ".join(f"{side} {seconds:.2f} s/epoch" for side, seconds in medians.items())
            ratios = ", ".join(f"ART / {side} {medians['ART'] / medians[side]:.2f}" for side in medians
                               if side != "ART")
            print(f"{method_name} σ={args.sigma:g}: {line}; {ratios}", flush=True)
    batch_size = zoo.get_entry("digits_cnn_noise025", kind="classifier").train.batch_size  # type: ignore[attr-defined]
    print(f"({len(x)} training images, batch size {batch_size}, {args.epochs} epoch(s) x {args.repeats} repeats per "
          f"side, {args.threads} thread(s), median seconds per epoch)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
