"""Run bookkeeping shared by all suites: manifest, append-only JSONL rows, resume, seeds, versions."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# the schema helpers, re-exported: kinds read them as common.<name>
from benchmarks.schema import (  # noqa: F401
    COMMON_KEYS,
    INT64_MAX,
    Check,
    Key,
    SuiteError,
    Table,
    Tables,
    boolean,
    choice,
    denoiser_sigma,
    eps_budget,
    integer,
    list_of,
    number,
    string,
    validate,
    zoo_name,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = Path(__file__).resolve().parent / "suites"
ROWS_FILE = "rows.jsonl"
MANIFEST_FILE = "manifest.json"


def suite_path(name: str) -> Path:
    """``benchmarks/suites/<name>.toml``, or the file at path ``name`` when it ends in ``.toml``."""
    path = Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        if name.endswith(".toml"):
            raise SuiteError(f"suite file {path} does not exist (known suites: {', '.join(known)})")
        raise SuiteError(f"unknown suite {name!r}; known suites: {', '.join(known)} (or a path to a .toml file)")
    return path


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def load_suite(name: str) -> dict[str, Any]:
    """Read a suite (see ``suite_path``); a malformed file or a missing ``kind`` is a ``SuiteError``."""
    import tomllib

    path = suite_path(name)
    try:
        with open(path, "rb") as handle:
            suite = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:  # its message ends with "(at line L, column C)"
        raise SuiteError(f"suite file {path} is not valid TOML: {err}") from err
    suite.setdefault("name", path.stem)
    name = suite["name"]
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise SuiteError(f"suite file {path}: name {name!r} must be a plain name (letters, digits, '_', '-', '.'; no "
                         "path separator, no '..'): it names the folder results/<name>")
    if "kind" not in suite:
        raise SuiteError(f"suite file {path} has no 'kind' entry")
    return suite


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("art_ext", "torch", "torchvision", "adversarial-robustness-toolbox", "numpy", "scipy",
                 "scikit-learn", "torchattacks", "robustbench", "diffusers", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s "model name" on Linux, else what ``platform`` knows) and architecture:
    the machine type a run's numbers come from (zoo training and CPU kernels can differ between types)."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name or 'unknown CPU'} ({platform.machine()})"


def git_sha() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() + ("+dirty" if dirty else "")


def seed_for(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from the run seed and keys: the same work unit always gets the same noise, so a
    resumed run reproduces an uninterrupted one exactly."""
    digest = hashlib.sha256(json.dumps([seed, *map(str, keys)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class DuplicateRowError(RuntimeError):
    """Two computations of one row ``(config, index)`` that differ beyond timing fields: the run is not
    reproducible, so nothing of the second is written."""


#: row fields that measure time and may differ between two computations of the same row
TIMING_FIELDS = ("seconds",)


def untimed(row: dict[str, Any]) -> str:
    """A row without its timing fields, as canonical JSON (two computations of one row must agree on it)."""
    return json.dumps({k: v for k, v in row.items() if k not in TIMING_FIELDS}, sort_keys=True)


@dataclass
class RunContext:
    """What a suite's ``run`` needs: where to write, the device, the seed, verbosity, the finished work and the
    backend that computes work units (``run_units``; default in order in this process)."""

    out: Path
    device: torch.device
    seed: int
    limit: int | None
    verbose: bool
    limit_option: int | None = None  # --limit as given: caps every part's examples (None: the suite's own sizes)
    data_root: Path | None = None  # --data-root / ART_EXT_DATA_ROOT, for dataset references
    model_dir: Path | None = None  # --model-dir / ART_EXT_MODEL_DIR, for model references
    done: set[tuple[str, int]] = field(default_factory=set)
    backend: Any = None  # benchmarks.backends.LocalBackend or RayBackend (None: local)
    _handle: Any = None
    _written: dict[tuple[str, int], str] = field(default_factory=dict)  # (config, index) -> untimed(row)

    def is_done(self, config_id: str, index: int) -> bool:
        return (config_id, index) in self.done

    def resume(self, rows: Iterable[dict[str, Any]]) -> None:
        """Mark the rows of an earlier run finished (their content is kept to tell duplicates from conflicts)."""
        for row in rows:
            key = (row["config"], int(row["index"]))
            self.done.add(key)
            self._written[key] = untimed(row)

    def written(self, config_id: str, index: int) -> dict[str, Any] | None:
        """The finished row of ``(config_id, index)`` without its timing fields (None when not finished)."""
        text = self._written.get((config_id, index))
        return None if text is None else json.loads(text)

    def worker_env(self) -> Any:
        from benchmarks.backends import WorkerEnv

        return WorkerEnv(device=self.device, seed=self.seed, limit=self.limit, limit_option=self.limit_option,
                         data_root=self.data_root, model_dir=self.model_dir, verbose=self.verbose)

    def run_units(self, units: Iterable[Any], compute: Callable[..., list[dict[str, Any]]], suite: dict[str, Any],
                  desc: str = "") -> None:
        """Compute the unfinished ``units`` (``benchmarks.backends.Unit``) with ``compute(suite, unit, env)`` on
        the backend and write each unit's rows as soon as it finishes (in completion order); one progress bar with
        its ETA over all workers."""
        from tqdm.auto import tqdm

        from benchmarks import backends

        todo = [u for u in units if not all(self.is_done(u.config, i) for i in u.indices)]
        if not todo:
            return
        if self.backend is None:
            self.backend = backends.LocalBackend()
        self.backend.start()  # workers up before the progress bar starts, so its rate and ETA are computing only
        total = backends.rows_left(todo, self.is_done)
        bar = tqdm(total=total, desc=f"{desc} [{self.backend.describe()}]" if desc else self.backend.describe(),
                   disable=not self.verbose, unit="row")
        try:
            for _unit, rows in self.backend.map(compute, suite, todo, self.worker_env()):
                bar.update(self.write_rows(rows))
        finally:
            bar.close()

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append rows and flush them to disk at once, so finished work survives an interruption; returns how many
        were written. A row already written (same config and index) is dropped when it equals the earlier one up to
        timing fields, and a ``DuplicateRowError`` when it differs; rows marked done without their content (``done``
        set directly) are dropped."""
        fresh: list[tuple[tuple[str, int], str, dict[str, Any]]] = []
        seen_here: dict[tuple[str, int], str] = {}
        for row in rows:
            key, text = (row["config"], int(row["index"])), untimed(row)
            earlier = seen_here.get(key, self._written.get(key))
            if earlier is not None:
                if earlier != text:
                    a, b = json.loads(earlier), json.loads(text)
                    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                    raise DuplicateRowError(f"row {key} was computed twice with different values (fields "
                                            f"{', '.join(fields)} differ): the run is not reproducible")
                continue
            if key in self.done:
                continue
            seen_here[key] = text
            fresh.append((key, text, row))
        if not fresh:
            return 0
        try:
            if self._handle is None:
                self._handle = open(self.out / ROWS_FILE, "a", encoding="utf-8")
            self._handle.write("".join(json.dumps(row, sort_keys=True) + "\n" for _, _, row in fresh))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:  # e.g. a full disk: the rows flushed before stay; a torn line is cut on the next run
            handle, self._handle = self._handle, None
            if handle is not None:
                try:
                    handle.close()
                except OSError:
                    pass  # its buffer could not be written either; the error below says why
            raise disk_error(err, self.out / ROWS_FILE) from None
        for key, text, _ in fresh:
            self.done.add(key)
            self._written[key] = text
        return len(fresh)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.backend is not None:
            self.backend.close()


def disk_error(err: OSError, path: Path) -> SuiteError:
    """A one-line error for a failed write (full disk, quota, read-only folder)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return SuiteError(f"no space left on the disk while writing {path}: the finished rows are kept; free some "
                          "space and rerun the same command to continue")
    return SuiteError(f"cannot write {path}: {err.strerror or err}")


def repair_rows_file(out: Path) -> int:
    """Cut a trailing partial line left by a killed writer, by truncating the file at its last newline (the rows
    before it are never rewritten); returns the bytes removed."""
    path = out / ROWS_FILE
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb") as handle:
        end, chunk = size, 1 << 16
        while end > 0:  # scan backwards for the last newline
            start = max(0, end - chunk)
            handle.seek(start)
            data = handle.read(end - start)
            if end == size and data.endswith(b"\n"):
                return 0
            cut = data.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
    os.truncate(path, keep)
    return size - keep


def read_rows(out: Path) -> list[dict[str, Any]]:
    """The complete rows of a run, each key ``(config, index)`` once (the first occurrence); a line cut off by an
    interruption is ignored and will be recomputed."""
    path = out / ROWS_FILE
    if not path.is_file():
        return []
    rows, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict) or "config" not in row or "index" not in row:
                continue
            key = (row["config"], row["index"])
            if key in seen:
                continue
            seen.add(key)
            rows.append(row)
    return rows


def make_manifest(
    suite: dict[str, Any], *, seed: int, limit: int | None, device: torch.device, limit_option: int | None = None,
    references: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a run records before its first row (the runner adds ``models`` and ``dataset``: the sha256 of the weights
    of every model reference and of the examples used, ``references.identify``)."""
    return {
        "suite": suite,
        "seed": seed,
        "limit": limit,
        "limit_option": limit_option,
        "references": references or {},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "versions": versions(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


#: manifest fields that decide whether two runs compute the same rows (``limit_option`` is ``--limit`` as given:
#: it also bounds parts the suite's own ``limit`` does not, so it is part of the work)
WORK_FIELDS = ("suite", "seed", "limit", "limit_option")


def work_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields in which two manifests describe different computations, each as ``field: old vs new``; for the
    suite, the differing top-level keys. Empty when rows can be shared."""
    out = []
    for key in WORK_FIELDS:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "suite" and isinstance(a, dict) and isinstance(b, dict):
            out.append("suite (" + ", ".join(_value_differences(a, b)) + ")")
        else:
            name = "--limit option" if key == "limit_option" else key
            out.append(f"{name}: {a!r} there vs {b!r} here")
    return out


def _value_differences(a: Any, b: Any, path: str = "", limit: int = 4) -> list[str]:
    """The leaves in which two suite values differ, each as ``path: old there vs new here`` (``configs[1].sigma: 0.25
    there vs 0.5 here``), at most ``limit`` of them (then ``...``)."""
    out: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if len(out) > limit or x == y:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{where}.{k}" if where else str(k))
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{where}[{i}]")
        elif isinstance(x, list) and isinstance(y, list):
            out.append(f"{where}: {len(x)} entries there vs {len(y)} here")
        else:
            out.append(f"{where}: {x!r} there vs {y!r} here")

    walk(a, b, path)
    return out[:limit] + (["..."] if len(out) > limit else [])


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The models whose weights, and the examples, that differ by sha256 between two manifests (a manifest written
    before hashes were recorded has none: nothing to compare)."""
    out = []
    for ref, record in new.get("models", {}).items():
        before = old.get("models", {}).get(ref)
        if before and before.get("sha256") != record.get("sha256"):
            out.append(f"model {ref!r}: weights sha256 {str(before.get('sha256'))[:12]}... there vs "
                       f"{str(record.get('sha256'))[:12]}... here")
    a, b = old.get("dataset", {}).get("sha256"), new.get("dataset", {}).get("sha256")
    if a and b and a != b:
        out.append(f"dataset: examples sha256 {a[:12]}... there vs {b[:12]}... here")
    return out


def same_work(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two manifests describe the same computation (suite, seed, limit), so rows can be shared."""
    return not work_differences(a, b)
