"""Choose the hyper-parameters of the certified-training zoo entries on the digits validation split.

``python -m benchmarks.sweep_certified_training [--sigma 0.25] [--cache DIR] [--out FILE] [--baselines]`` trains
every candidate of ``art_ext.zoo.catalogue.certified.CANDIDATES`` (at that sigma) with the zoo's own recipe and thread
count, certifies the 200 validation images (CERTIFY n0 = 100, n = 1,000, alpha = 0.001, fixed per-image keys) and
prints per candidate the validation ACR, certified accuracy at radius 0 and the training time. ``--baselines`` also
scores the shipped Gaussian-augmentation models the candidates are compared with (``digits_cnn_noise025`` /
``050``). Trained weights go into the cache folder in the zoo's format, so ``python -m art_ext.zoo.ship NAMES --cache
DIR`` ships the chosen ones without training again. The test split is never read.

``--selected`` keeps only the shipped candidate of each method and sigma, and ``--max-shift K`` trains with random
shifts of up to K pixels instead of the zoo recipe's (an ablation of the recipe; the zoo's cache key changes with it).

``--art-run DIR`` instead scores the ART models a ``certified_training`` run trained (``DIR/art_models``, each
checked against the sha256 of its train row) on the same validation certification.

The records of the shipped selection, of the ``--baselines --selected --max-shift 0`` ablation and of
``--art-run`` on the committed run's folder are committed as ``docs/results/certified_training/selection.jsonl``;
the results page renders them (``benchmarks.report.certified_training.selection_table`` and
``shift_ablation_table``).
"""

from __future__ import annotations

import argparse
import dataclasses
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
from art_ext.zoo.catalogue.certified import CANDIDATES, SELECTED, SIGMAS, candidates, certified_entry, sigma_tag
from art_ext.zoo.entries import ClassifierEntry
from art_ext.zoo.loader import train_entry


def validation_scores(module: torch.nn.Module, sigma: float) -> dict[str, float]:
    val = load_digits("val")
    with torch.no_grad():
        certs = certify(module, val.x, n0=100, n=1000, sigma=sigma, alpha=0.001, num_classes=10, batch_size=1000,
                        keys=NoiseKeys.from_seed(0, range(len(val))))
    return {"val_acr": average_certified_radius(certs, val.y),
            "val_certified_accuracy_r0": certified_accuracy(certs, val.y, [0.0])[0.0]}


def shipped_method(method: str, sigma: float) -> CertifiedMethod:
    """The candidate the zoo ships for ``method`` at ``sigma``."""
    return candidates(method, sigma)[SELECTED[method, sigma]]


def sweep_entry(method: str, sigma: float, config: CertifiedMethod | None, max_shift: int | None) -> ClassifierEntry:
    """The zoo entry a sweep record scores: the shipped Gaussian-augmentation entry (``config`` None) or the candidate
    ``config`` under the zoo recipe, with random shifts of up to ``max_shift`` pixels (None: the recipe's own)."""
    if config is None:
        entry = zoo.get_entry(f"digits_cnn_noise{sigma_tag(sigma)}", kind="classifier")
        assert isinstance(entry, ClassifierEntry)
    else:
        entry = certified_entry(config, f"digits_cnn_{method}{sigma_tag(sigma)}")
    if max_shift is None or max_shift == entry.train.max_shift:
        return entry
    return dataclasses.replace(entry, train=dataclasses.replace(entry.train, max_shift=max_shift))


def art_run_records(folder: Path, *, sigma: float | None = None) -> list[dict]:
    """Validation records of the ART models trained in a ``certified_training`` run folder: one per ART ``train`` row
    (``name`` is the zoo entry it was initialized from), its weights read from ``art_models/`` with nothing unpickled
    and refused unless their sha256 is the one the row recorded."""
    from benchmarks import common
    from benchmarks.kinds import certified_training as kind

    records = []
    for row in common.read_rows(folder):
        if row["kind"] != "train" or not row["implementation"].startswith("ART ") or (
                sigma is not None and row["sigma"] != sigma):
            continue
        path = kind.art_weights_file(folder, row["name"])
        try:
            state = kind.read_art_weights(path, row["sha256"])
        except common.SuiteError as error:  # this command line's one-line exit, naming the file
            raise SystemExit(f"{path}: its weights are not the ones the run's train row recorded "
                             f"({row['sha256']})") from error
        entry = zoo.get_entry(row["model"], kind="classifier")
        module = entry.build()
        module.load_state_dict(state)
        module.eval()
        with torch.no_grad():
            torch.set_num_threads(1)
            started = time.perf_counter()
            scores = validation_scores(module, float(row["sigma"]))
        records.append({"name": row["model"], "method": row["method"], "sigma": float(row["sigma"]),
                        "implementation": row["implementation"], "sha256": row["sha256"],
                        "max_shift": 0, **scores, "train_seconds": row["seconds"],
                        "certify_seconds": round(time.perf_counter() - started, 1)})
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, help="only the candidates at this sigma")
    parser.add_argument("--method", help="only these methods (comma-separated)")
    parser.add_argument("--cache", type=Path, default=Path("sweep_cache"), help="where the trained weights go")
    parser.add_argument("--out", type=Path, help="JSON lines file to append the results to")
    parser.add_argument("--baselines", action="store_true",
                        help="also score the shipped Gaussian-augmentation models (digits_cnn_noise025 / 050)")
    parser.add_argument("--selected", action="store_true", help="only the shipped candidate of each method and sigma")
    parser.add_argument("--max-shift", type=int, default=None,
                        help="train with random shifts of up to this many pixels instead of the zoo recipe's (an "
                             "ablation of the recipe; 0 = none)")
    parser.add_argument("--art-run", type=Path, default=None,
                        help="instead: score the ART models a certified_training run folder trained (its art_models/, "
                             "checked against the sha256 its train rows recorded)")
    args = parser.parse_args(argv)
    if args.max_shift is not None and args.max_shift < 0:
        parser.error(f"--max-shift must be >= 0, got {args.max_shift}")
    if args.art_run is not None:
        for record in art_run_records(args.art_run, sigma=args.sigma):
            print(json.dumps(record), flush=True)
            if args.out is not None:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
        return
    methods = args.method.split(",") if args.method else None
    scored = set()
    if args.out is not None and args.out.is_file():
        scored = {json.loads(line)["fingerprint"] for line in args.out.read_text().splitlines() if line.strip()}
    todo: list[tuple[str, float, CertifiedMethod | None]] = []
    if args.baselines:
        todo += [("gaussian", sigma, None) for sigma in SIGMAS]
    todo += [(m, s, c) for m, s, c in CANDIDATES if not args.selected or c == shipped_method(m, s)]
    for method, sigma, config in todo:
        if (args.sigma is not None and sigma != args.sigma) or (methods and method not in methods):
            continue
        entry = sweep_entry(method, sigma, config, args.max_shift)
        if entry.fingerprint() in scored:
            continue
        if config is None and entry == zoo.get_entry(entry.name):  # the shipped Gaussian-augmentation model
            model = zoo.load(entry.name)
        else:
            path = _cache.cache_file(entry, args.cache)
            if path.exists():
                model = _cache.read(entry, path, "cpu", source="cache")
            else:
                model = train_entry(entry)
                _cache.write(model, path)
        described = f"GaussianAugmentation(sigma={sigma})" if config is None else repr(config)
        with torch.no_grad():
            torch.set_num_threads(1)
            started = time.perf_counter()
            scores = validation_scores(model.module, sigma)
        record = {"name": entry.name, "method": method, "sigma": sigma, "fingerprint": entry.fingerprint(),
                  "config": described, "max_shift": entry.train.max_shift, **scores,
                  "val_accuracy": model.info["val_accuracy"], "train_seconds": model.info["train_seconds"],
                  "certify_seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps(record), flush=True)
        if args.out is not None:
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
