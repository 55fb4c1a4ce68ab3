"""Regenerate the weights shipped with the package (``art_ext/zoo/weights``) from the entries' recipes.

``python -m art_ext.zoo.ship`` trains every entry of ``SHIPPED`` (and what they start from or are guided by) from its
recipe into a fresh temporary cache, never from shipped weights, then writes ``weights/<name>.pt`` (the cache's
verified format: name, fingerprint, sha256, state_dict, info) and ``weights/MANIFEST.json`` (per entry: kind,
fingerprint, sha256, file, bytes; and the machine, torch and python that produced them). ``--cache DIR`` reuses
(and fills) a cache instead; ``NAME ...`` ships only those entries (the manifest keeps the others' records).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from art_ext.zoo import _cache, _shipped
from art_ext.zoo.entries import REGISTRY
from art_ext.zoo.loader import TRAINING_THREADS, load

#: the shipped entries: the default suite's and the README examples' models, the attacks and comparison suites'
#: classifiers and denoisers, the diffusion model and the certified-training classifiers (about 5 MB in all)
SHIPPED: tuple[str, ...] = (
    "digits_cnn", "digits_cnn_noise025", "digits_cnn_noise050", "digits_cnn_noise100", "digits_lenet", "digits_mlp",
    "digits_cnn_pgd_l2", "digits_cnn_pgd_linf", "digits_cnn_cni",
    *(f"digits_dncnn_{objective}_{sigma}" for objective in ("mse", "stab", "stabmse", "bb_stabmse", "bb_stab")
      for sigma in ("025", "050", "100")),
    "digits_ddpm",
    *(f"digits_cnn_{method}{sigma}" for method in ("smoothadv", "macer", "smoothmix", "consistency")
      for sigma in ("025", "050")),
)


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s model name where there is one, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to what platform knows
    return platform.processor() or platform.machine()


def ship(names: tuple[str, ...] = SHIPPED, *, cache: Path | str | None = None, out: Path = _shipped.WEIGHTS_DIR,
         verbose: bool = False) -> dict[str, Any]:
    """Train (or read from ``cache``) each of ``names`` with ``shipped=False`` and write its file and the manifest
    into ``out``; returns the manifest."""
    for name in names:
        REGISTRY.get(name)  # unknown names fail before any training
    out.mkdir(parents=True, exist_ok=True)
    manifest_file = out / _shipped.MANIFEST_FILE.name
    manifest: dict[str, Any] = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    records: dict[str, Any] = dict(manifest.get("models", {}))
    with tempfile.TemporaryDirectory(prefix="art_ext_ship_") as tmp:
        folder = Path(cache) if cache is not None else Path(tmp)
        for name in names:
            started = time.perf_counter()
            model = load(name, cache=folder, shipped=False, verbose=verbose)
            path = out / f"{name}.pt"
            sha256 = _cache.write(model, path)
            records[name] = {"kind": model.entry.kind, "fingerprint": model.entry.fingerprint(), "sha256": sha256,
                             "file": path.name, "bytes": path.stat().st_size,
                             "val_accuracy": model.info.get("val_accuracy")}
            print(f"{name}: {model.info['source']} in {time.perf_counter() - started:.1f} s, sha256 {sha256[:16]}..., "
                  f"{path.stat().st_size:,} bytes", flush=True)
    manifest = {
        "produced_on": {"cpu": cpu_name(), "machine": platform.machine(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": str(torch.__version__),
                        "python": platform.python_version(), "training_threads": TRAINING_THREADS},
        "models": dict(sorted(records.items())),
    }
    manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
    _shipped.manifest.cache_clear()
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to ship (default: all {len(SHIPPED)} of SHIPPED)")
    parser.add_argument("--cache", type=Path, help="cache folder to reuse (default: a fresh one, all trained now)")
    parser.add_argument("--out", type=Path, default=_shipped.WEIGHTS_DIR, help="where to write (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="progress bars while training")
    args = parser.parse_args(argv)
    manifest = ship(tuple(args.names) or SHIPPED, cache=args.cache, out=args.out, verbose=args.verbose)
    total = sum(record["bytes"] for record in manifest["models"].values())
    print(f"{len(manifest['models'])} entries, {total:,} bytes, on {manifest['produced_on']['cpu']}")


if __name__ == "__main__":
    main()
