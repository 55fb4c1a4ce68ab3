#!/usr/bin/env python3
"""Run an art_ext benchmark suite: ``python benchmarks/run.py [--suite default] [--out DIR] [--resume] ...``.

Each example's result is appended to ``<out>/rows.jsonl`` as soon as it is computed; ``<out>/manifest.json`` records
the configuration, seed, git SHA, library versions and device. Tables (``summary.md``, ``summary.json``) and plots
are derived from the rows only, so an interrupted run that is continued reports exactly what an uninterrupted run
reports. Rerunning the same command continues the run in ``--out`` (finished examples are skipped); a folder that
holds a run of a different suite, seed or limit is refused, never overwritten.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `art_ext` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from benchmarks.kinds import KINDS

log = logging.getLogger("benchmarks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="default", help="suite name (benchmarks/suites/<name>.toml) or a path to a suite .toml file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/<suite>)")
    parser.add_argument(
        "--resume", action="store_true",
        help="require an earlier run in --out and continue it (a plain rerun also continues a matching run)",
    )
    parser.add_argument("--limit", type=int, default=None, help="number of test examples (default: the suite's)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (noise and attack randomness)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    suite = common.load_suite(args.suite)
    if suite["kind"] not in KINDS:
        raise ValueError(f"suite {args.suite!r} has unknown kind {suite['kind']!r}; known: {sorted(KINDS)}")
    kind = KINDS[suite["kind"]]
    out = args.out or common.REPO_ROOT / "results" / suite["name"]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    limit = args.limit if args.limit is not None else suite.get("limit")

    out.mkdir(parents=True, exist_ok=True)
    manifest = common.make_manifest(suite, seed=args.seed, limit=limit, device=device)
    manifest_path = out / common.MANIFEST_FILE
    previous = common.read_rows(out)
    if previous or manifest_path.is_file():
        old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        if not old:
            raise SystemExit(f"{out} holds result rows but no manifest; cannot tell what they are: choose another --out")
        if not common.same_work(old, manifest):
            raise SystemExit(
                f"{out} holds a run with a different suite/seed/limit; it is never overwritten: choose another --out "
                "or delete that folder"
            )
        manifest["resumed_from"] = old.get("started")
    elif args.resume:
        raise SystemExit(f"--resume: {out} holds no earlier run to continue")
    common.repair_rows_file(out)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))

    ctx = common.RunContext(out=out, device=device, seed=args.seed, limit=limit, verbose=not args.quiet)
    ctx.done = {(row["config"], int(row["index"])) for row in previous}
    if previous:
        log.info("resuming: %d finished examples in %s", len(previous), out)
    try:
        kind.run(suite, ctx)
    finally:
        ctx.close()
    summary = kind.report(suite, common.read_rows(out), out, manifest)
    (out / "summary.md").write_text(summary)
    print(summary)
    log.info("results in %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
