#!/usr/bin/env python3
"""Speed-up of the Ray backend on this machine: the default suite (small n) run by the local backend, by Ray with 1
worker and with 2 workers, side by side in one process and one Ray instance; and Ray's per-unit overhead (empty units
through one worker). Not a test: prints ratios measured in this run.

    OMP_NUM_THREADS=1 python benchmarks/perf_ray.py [--n 2000] [--limit 8] [--chunk 2] [--workers 1 2] [--empty 200]

Wall times include starting the workers (each loads its models once) but not starting Ray itself (printed apart).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import backends, common, run


def _suite(folder: Path, n: int, chunk: int) -> Path:
    lines = []
    for line in (common.SUITES_DIR / "default.toml").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"n = {n}" if key == "n" else f"images_per_chunk = {chunk}" if key == "images_per_chunk" else line)
    path = folder / "perf_default.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def empty_compute(suite: dict[str, Any], unit: backends.Unit, env: backends.WorkerEnv) -> list[dict[str, Any]]:
    """No work: one row per unit, to time Ray's dispatch and return."""
    return [{"config": unit.config, "index": unit.indices[0]}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--empty", type=int, default=200, help="empty units for the overhead measurement")
    args = parser.parse_args()
    ray = backends.require_ray()
    t0 = time.perf_counter()
    ray.init(num_cpus=max(args.workers), include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
                                       if k in os.environ}})
    print(f"ray {ray.__version__}: ray.init {time.perf_counter() - t0:.1f} s (not counted below)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = _suite(folder, args.n, args.chunk)
        common_args = ["--suite", str(suite), "--quiet", "--limit", str(args.limit), "--device", "cpu"]
        walls: dict[str, float] = {}
        rows: dict[str, list[str]] = {}
        for label, extra in [("local", []), *((f"ray x{w}", ["--backend", "ray", "--workers", str(w)])
                                              for w in args.workers)]:
            out = folder / label.replace(" ", "_")
            t0 = time.perf_counter()
            run.main([*common_args, "--out", str(out), *extra])
            walls[label] = time.perf_counter() - t0
            rows[label] = sorted(common.untimed(r) for r in common.read_rows(out))
        units = 4 * -(-args.limit // args.chunk)
        print(f"default suite, n={args.n}, {args.limit} images x 4 configs, {args.chunk} images per unit "
              f"({units} units); wall time including worker start and model loading:")
        for label, wall in walls.items():
            same = "rows identical to local" if rows[label] == rows["local"] else "ROWS DIFFER FROM LOCAL"
            print(f"  {label:>8}: {wall:6.1f} s  ({same})")
        for w in args.workers:
            print(f"  speed-up ray x{w} over local: {walls['local'] / walls[f'ray x{w}']:.2f}")
        if len(args.workers) > 1:
            a, b = min(args.workers), max(args.workers)
            print(f"  speed-up ray x{b} over ray x{a}: {walls[f'ray x{a}'] / walls[f'ray x{b}']:.2f}")

        backend = backends.RayBackend(workers=1)
        units_list = [backends.Unit("empty", (i,), i, {}) for i in range(args.empty)]
        env = backends.WorkerEnv(device=__import__("torch").device("cpu"), seed=0, limit=None, limit_option=None,
                                 data_root=None, model_dir=None)
        list(backend.map(empty_compute, {}, units_list[:4], env))  # start the worker first
        t0 = time.perf_counter()
        done = list(backend.map(empty_compute, {}, units_list, env))
        per_unit = (time.perf_counter() - t0) / len(done)
        backend.close()
        print(f"Ray per-unit overhead (empty units, 1 worker, {len(done)} units): {1000 * per_unit:.2f} ms")
        print(json.dumps({"walls_s": walls, "per_unit_overhead_ms": 1000 * per_unit}))
    ray.shutdown()


if __name__ == "__main__":
    main()
