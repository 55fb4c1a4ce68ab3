#!/usr/bin/env python3
"""Run an art_ext benchmark suite: ``python benchmarks/run.py [--suite default] [--out DIR] [--resume] ...``.

Each example's result is appended to ``<out>/rows.jsonl`` as soon as it is computed; ``<out>/manifest.json`` records
the configuration, seed, git SHA, library versions, device, the resolved model and dataset references, and their
identity by content: ``models`` (per model reference, the sha256 of the weights loaded and their source) and
``dataset`` (the sha256 of the examples used; ``references.identify``). Tables
(``summary.md``, ``summary.json``) and plots are derived from the rows only, so an interrupted run that is continued
reports exactly what an uninterrupted run reports. Rerunning the same command continues the run in ``--out``
(finished examples are skipped); a folder that holds a run of a different suite, seed or limit, or of other
weights or examples, is refused (the message names what differs), never overwritten.

Everything is checked before the first example runs: the suite name, the TOML, every key against the kind's schema
(unknown keys are errors), every value in every config, the device and the model and dataset references (files
present and well-formed; ``benchmarks/references.py`` lists the forms). A problem is one line on stderr and exit
status 2; the manifest is written only after these checks pass. ``--list`` prints the suites.

``--backend ray [--workers N] [--ray-address ADDR] [--gpus-per-worker G]`` computes the work units as tasks on N Ray
actors (``benchmarks/backends.py``) instead of in order in this process; this process still writes every row, and
the rows are the same (timing fields aside) for either backend and any number of workers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `art_ext` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import backends, common, references, results, specs
from benchmarks.kinds import KINDS

log = logging.getLogger("benchmarks")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit status 2 (argparse's own status)
        fail(message)


def fail(message: str) -> NoReturn:
    """Report a problem found before any work as one line on stderr and exit with status 2."""
    print(f"run.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="default",
                        help="suite name (benchmarks/suites/<name>.toml) or a path to a suite .toml file")
    parser.add_argument("--list", action="store_true",
                        help="list the suites with their kinds and descriptions, then exit")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results/<suite>)")
    parser.add_argument(
        "--resume", action="store_true",
        help="require an earlier run in --out and continue it (a plain rerun also continues a matching run)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N examples in every part of the suite (default: the suite's own sizes)")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:<i> ('gpu' is read as cuda); default cuda if available")
    parser.add_argument("--seed", type=int, default=0, help="run seed (noise and attack randomness)")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="folder of on-disk datasets, e.g. <DIR>/cifar-10-batches-py "
                        f"(default ${references.DATA_ROOT_ENV})")
    parser.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                        help="folder of model files, e.g. RobustBench's <DIR>/cifar10/Linf/<Name>.pt "
                        f"(default ${references.MODEL_DIR_ENV})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--backend", default="local",
                        help="where work units run: local (in order, in this process; the default) or ray (tasks "
                        "on Ray actors, pip install \"art_ext[distributed]\"); the rows do not depend on it")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="--backend ray: number of worker actors (default: one per CPU of the Ray instance, or "
                        "per --gpus-per-worker GPUs)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="--backend ray: join a running cluster ('auto', <host>:<port>); default: start a local "
                        "Ray instance for this run and stop it afterwards")
    parser.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                        help="--backend ray with a cuda device: GPUs per worker (a fraction shares one GPU; "
                        "default 1)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if not 0 <= args.seed <= common.INT64_MAX:
        parser.error(f"--seed must be an integer in [0, 2**63 - 1], got {args.seed}")
    return args


def list_suites() -> str:
    """One line per shipped suite: name, kind and description (an unreadable suite says why)."""
    lines = []
    paths = sorted(common.SUITES_DIR.glob("*.toml"))
    width = max((len(p.stem) for p in paths), default=0)
    for path in paths:
        try:
            suite = common.load_suite(str(path))
            lines.append(f"{path.stem:<{width}}  {suite['kind']:<18}  {suite.get('description', '')}")
        except common.SuiteError as err:
            lines.append(f"{path.stem:<{width}}  (invalid: {err})")
    return "\n".join(lines)


def resolve_device(name: str | None) -> torch.device:
    """The torch device of ``--device``; ``gpu`` (ART's spelling) means cuda. A device this machine lacks is a
    ``SuiteError`` saying so, never a driver traceback."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spelled = "cuda" + name[3:] if name == "gpu" or name.startswith("gpu:") else name
    try:
        device = torch.device(spelled)
    except RuntimeError as err:
        raise common.SuiteError(f"--device {name!r} is not a torch device ({str(err).splitlines()[0]}); "
                                "expected cpu, cuda, cuda:<index> or gpu") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
            raise common.SuiteError(f"--device {name!r}: CUDA is not available ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise common.SuiteError(f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) "
                                    f"(indices 0..{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise common.SuiteError(f"--device {name!r}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise common.SuiteError(f"--device {name!r}: unsupported device type; expected cpu, cuda, cuda:<index> or gpu")
    return device


@dataclass
class Plan:
    """A validated run: everything checked, nothing written yet."""

    suite: dict[str, Any]
    kind: ModuleType
    out: Path
    device: torch.device
    limit: int | None
    roots: references.Roots
    manifest: dict[str, Any]
    previous: list[dict[str, Any]]
    backend: backends.Backend
    spec: specs.SuiteSpec


def backend_options(args: argparse.Namespace) -> tuple[str, int | None, str | None, float | None]:
    """``--backend``, ``--workers``, ``--ray-address``, ``--gpus-per-worker`` (a namespace without them: local)."""
    return (getattr(args, "backend", "local"), getattr(args, "workers", None), getattr(args, "ray_address", None),
            getattr(args, "gpus_per_worker", None))


def plan(args: argparse.Namespace) -> Plan:
    """Every check that can fail before work starts (raises ``SuiteError``); writes nothing."""
    suite = common.load_suite(args.suite)
    where = f"suite {suite['name']!r} ({common.suite_path(args.suite)})"
    if suite["kind"] not in KINDS:
        raise common.SuiteError(f"{where}: unknown kind {suite['kind']!r}; known kinds: {', '.join(sorted(KINDS))}")
    kind = KINDS[suite["kind"]]
    spec = specs.build(suite, kind, where)
    roots = references.Roots.from_options(args.data_root, args.model_dir)
    try:
        resolved = kind.prepare(suite, roots) if hasattr(kind, "prepare") else {}
    except common.SuiteError as err:
        raise common.SuiteError(f"{where}: {err}") from err
    device = resolve_device(args.device)
    options = backend_options(args)
    problems = backends.check_options(*options, device)
    if problems:
        raise common.SuiteError(problems[0])
    limit = args.limit if args.limit is not None else suite.get("limit")
    out = args.out or common.REPO_ROOT / "results" / suite["name"]
    if out.exists() and not out.is_dir():
        raise common.SuiteError(f"--out {out} exists and is not a folder")
    manifest = common.make_manifest(suite, seed=args.seed, limit=limit, device=device, limit_option=args.limit,
                                    references=resolved)
    manifest["backend"] = dict(zip(("name", "workers", "ray_address", "gpus_per_worker"), options, strict=True))
    previous = inspect_folder(out, manifest, resume=args.resume)
    backend = backends.make_backend(*options, device)
    return Plan(suite, kind, out, device, limit, roots, manifest, previous, backend, spec)


def inspect_folder(out: Path, manifest: dict[str, Any], *, resume: bool, warn: bool = True) -> list[dict[str, Any]]:
    """The finished rows in ``out`` that this run continues (raises ``SuiteError`` for a folder that holds another
    run, rows without a manifest, a corrupt manifest, or files of something else); sets ``manifest["resumed_from"]``.
    """
    foreign = results.foreign_files(out)
    if foreign and not (out / common.ROWS_FILE).exists():
        raise common.SuiteError(f"--out {out} holds files that no run wrote ({', '.join(foreign[:3])}"
                                f"{', ...' if len(foreign) > 3 else ''}); they are never overwritten: choose another "
                                "--out")
    old = results.read_manifest(out)
    previous = common.read_rows(out)
    if previous or old is not None:
        if old is None:
            raise common.SuiteError(f"{out} holds result rows but no manifest; cannot tell what they are: choose "
                                    "another --out")
        differences = common.work_differences(old, manifest)
        if differences:
            raise common.SuiteError(f"{out} holds a different run ({'; '.join(differences)}); it is never "
                                    "overwritten: choose another --out or delete that folder")
        changed = common.identity_differences(old, manifest) if "models" in manifest else []
        if changed:
            raise common.SuiteError(f"{out} holds a run with other weights or examples ({'; '.join(changed)}); it "
                                    "is never overwritten: choose another --out or delete that folder")
        manifest["resumed_from"] = old.get("started")
        for field in ("git_sha", "versions"):
            if warn and old.get(field) != manifest.get(field):
                log.warning("continuing a run made with other %s (%s there, %s here); the rows are recorded with "
                            "both", field, old.get(field), manifest.get(field))
                manifest.setdefault("earlier", {})[field] = old.get(field)
    elif resume:
        raise common.SuiteError(f"--resume: {out} holds no earlier run to continue")
    return previous


def identify(p: Plan) -> None:
    """Record in ``p.manifest`` the sha256 of the weights of every model the suite names and of its examples
    (``references.identify``: each model is loaded once, on the CPU; a zoo model may be trained here, before the
    first row); a continued run must find the same hashes as the run it continues (raises ``SuiteError``)."""
    where = f"suite {p.suite['name']!r}"
    try:
        pairs = p.kind.pairs(p.suite) if hasattr(p.kind, "pairs") else []  # (model, defence) pairs the run builds
        identity = references.identify(p.suite, p.roots, references=sorted(p.manifest["references"].get("models", {})),
                                       limit=p.limit, pairs=pairs)
    except common.SuiteError as err:
        raise common.SuiteError(f"{where}: {err}") from err
    p.manifest.update(identity)
    inspect_folder(p.out, p.manifest, resume=False, warn=False)  # refuse a folder of other weights before any work


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print(list_suites())
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        p = plan(args)
        identify(p)
    except common.SuiteError as err:
        fail(str(err))
    created = not p.out.exists()
    p.out.mkdir(parents=True, exist_ok=True)
    lock = results.FolderLock(p.out)
    try:
        lock.acquire()
        p.previous = inspect_folder(p.out, p.manifest, resume=args.resume)  # again, now that no one else writes
        common.repair_rows_file(p.out)
        results.write_manifest(p.out, p.manifest)
    except common.SuiteError as err:
        lock.release()
        fail(str(err))
    try:
        return _run(p, args, lock, created)
    finally:
        lock.release()


def _run(p: Plan, args: argparse.Namespace, lock: results.FolderLock, created: bool) -> int:
    manifest_path = p.out / common.MANIFEST_FILE

    ctx = common.RunContext(out=p.out, device=p.device, seed=args.seed, limit=p.limit, verbose=not args.quiet,
                            limit_option=args.limit, data_root=p.roots.data_root, model_dir=p.roots.model_dir,
                            backend=p.backend)
    ctx.resume(p.previous)
    if p.previous:
        log.info("resuming: %d finished examples in %s", len(p.previous), p.out)
    try:
        p.kind.run(p.suite, ctx)
    except BaseException as err:
        ctx.close()
        if not p.previous and not common.read_rows(p.out):  # nothing to resume: leave no manifest that blocks --out
            manifest_path.unlink(missing_ok=True)
            (p.out / common.ROWS_FILE).unlink(missing_ok=True)
            lock.release()
            (p.out / results.LOCK_FILE).unlink(missing_ok=True)
            if created and not any(p.out.iterdir()):
                p.out.rmdir()
        if isinstance(err, common.SuiteError):  # e.g. a full disk: one line, the finished rows stay
            fail(str(err))
        raise
    ctx.close()
    summary = p.kind.report(p.suite, common.read_rows(p.out), p.out, p.manifest)
    try:
        results.atomic_write_text(p.out / "summary.md", summary)
    except common.SuiteError as err:
        fail(str(err))
    print(summary)
    log.info("results in %s", p.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
