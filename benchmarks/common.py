"""Run bookkeeping shared by all suites: manifest, append-only JSONL rows, resume, seeds, versions."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = Path(__file__).resolve().parent / "suites"
ROWS_FILE = "rows.jsonl"
MANIFEST_FILE = "manifest.json"


def load_suite(name: str) -> dict[str, Any]:
    """Read ``benchmarks/suites/<name>.toml``, or the TOML file at path ``name`` (ending in ``.toml``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(known)}")
    with open(path, "rb") as handle:
        suite = tomllib.load(handle)
    suite.setdefault("name", path.stem)
    if "kind" not in suite:
        raise ValueError(f"suite file {path} has no 'kind' entry")
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


@dataclass
class RunContext:
    """What a suite's ``run`` needs: where to write, the device, the seed, verbosity and the finished work."""

    out: Path
    device: torch.device
    seed: int
    limit: int | None
    verbose: bool
    done: set[tuple[str, int]] = field(default_factory=set)
    _handle: Any = None

    def is_done(self, config_id: str, index: int) -> bool:
        return (config_id, index) in self.done

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows and flush them to disk at once, so finished work survives an interruption."""
        if self._handle is None:
            self._handle = open(self.out / ROWS_FILE, "a", encoding="utf-8")
        for row in rows:
            self._handle.write(json.dumps(row, sort_keys=True) + "\n")
            self.done.add((row["config"], int(row["index"])))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_rows(out: Path) -> list[dict[str, Any]]:
    """All complete rows of a run (a line cut off by an interruption is ignored and will be recomputed)."""
    path = out / ROWS_FILE
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def repair_rows_file(out: Path) -> None:
    """Drop a trailing partial line left by a killed process, so new rows start on a fresh line."""
    path = out / ROWS_FILE
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def make_manifest(suite: dict[str, Any], *, seed: int, limit: int | None, device: torch.device) -> dict[str, Any]:
    return {
        "suite": suite,
        "seed": seed,
        "limit": limit,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "git_sha": git_sha(),
        "versions": versions(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def same_work(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two manifests describe the same computation (suite, seed, limit), so rows can be shared."""
    return all(a.get(k) == b.get(k) for k in ("suite", "seed", "limit"))
