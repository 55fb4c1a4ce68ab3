"""Choose the hyper-parameters of the certified-training zoo entries on the digits validation split.

``python -m benchmarks.sweep_certified_training [--sigma 0.25] [--cache DIR] [--out FILE] [--baselines]`` trains
every candidate of ``art_ext.zoo.catalogue.certified.CANDIDATES`` (at that sigma) with the zoo's own recipe and thread
count, certifies the 200 validation images (CERTIFY n0 = 100, n = 1,000, alpha = 0.001, fixed per-image keys) and
prints per candidate the validation ACR, certified accuracy at radius 0 and the training time. ``--baselines`` also
scores the shipped Gaussian-augmentation models the candidates are compared with (``digits_cnn_noise025`` /
``050``). Trained weights go into the cache folder in the zoo's format, so ``python -m art_ext.zoo.ship NAMES --cache
DIR`` ships the chosen ones without training again. The test split is never read.

The records of the shipped selection are committed as ``docs/results/certified_training/selection.jsonl``; the
results page renders them (``benchmarks.report.certified_training.selection_table``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from art_ext import zoo
from art_ext.data import load_digits
from art_ext.smoothing import certify
from art_ext.smoothing.keys import NoiseKeys
from art_ext.smoothing.metrics import average_certified_radius, certified_accuracy
from art_ext.training.certified import CertifiedMethod
from art_ext.zoo import _cache
from art_ext.zoo.catalogue.certified import CANDIDATES, SIGMAS, certified_entry, sigma_tag
from art_ext.zoo.loader import train_entry


def validation_scores(module: torch.nn.Module, sigma: float) -> dict[str, float]:
    val = load_digits("val")
    with torch.no_grad():
        certs = certify(module, val.x, n0=100, n=1000, sigma=sigma, alpha=0.001, num_classes=10, batch_size=1000,
                        keys=NoiseKeys.from_seed(0, range(len(val))))
    return {"val_acr": average_certified_radius(certs, val.y),
            "val_certified_accuracy_r0": certified_accuracy(certs, val.y, [0.0])[0.0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, help="only the candidates at this sigma")
    parser.add_argument("--method", help="only these methods (comma-separated)")
    parser.add_argument("--cache", type=Path, default=Path("sweep_cache"), help="where the trained weights go")
    parser.add_argument("--out", type=Path, help="JSON lines file to append the results to")
    parser.add_argument("--baselines", action="store_true",
                        help="also score the shipped Gaussian-augmentation models (digits_cnn_noise025 / 050)")
    args = parser.parse_args(argv)
    methods = args.method.split(",") if args.method else None
    scored = set()
    if args.out is not None and args.out.is_file():
        scored = {json.loads(line)["fingerprint"] for line in args.out.read_text().splitlines() if line.strip()}
    todo: list[tuple[str, float, CertifiedMethod | None]] = []
    if args.baselines:
        todo += [("gaussian", sigma, None) for sigma in SIGMAS]
    todo += list(CANDIDATES)
    for method, sigma, config in todo:
        if (args.sigma is not None and sigma != args.sigma) or (methods and method not in methods):
            continue
        if config is None:  # a shipped Gaussian-augmentation model
            name = f"digits_cnn_noise{sigma_tag(sigma)}"
            entry = zoo.get_entry(name)
            if entry.fingerprint() in scored:
                continue
            model = zoo.load(name)
            described = f"GaussianAugmentation(sigma={sigma})"  # the zoo's noise-augmentation recipe
        else:
            entry = certified_entry(config, f"digits_cnn_{method}{sigma_tag(sigma)}")
            if entry.fingerprint() in scored:
                continue
            path = _cache.cache_file(entry, args.cache)
            if path.exists():
                model = _cache.read(entry, path, "cpu", source="cache")
            else:
                model = train_entry(entry)
                _cache.write(model, path)
            described = repr(config)
        with torch.no_grad():
            torch.set_num_threads(1)
            started = time.perf_counter()
            scores = validation_scores(model.module, sigma)
        record = {"name": entry.name, "method": method, "sigma": sigma, "fingerprint": entry.fingerprint(),
                  "config": described, **scores, "val_accuracy": model.info["val_accuracy"],
                  "train_seconds": model.info["train_seconds"],
                  "certify_seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(record), flush=True)
        if args.out is not None:
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
