"""The Ray backend: the same rows as the local backend for 1 or 2 workers, a killed worker's unit retried and written
once, a killed driver resumed to the uninterrupted run's tables, duplicate rows, and the backend option errors.

One Ray instance (2 CPUs) serves the whole module; every run starts its own actors on it and kills them at the end.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import backends, common, run

REPO = Path(__file__).resolve().parents[2]
TIMING = ("seconds", "seconds_per_example")


def default_suite(tmp_path: Path, *, n: int = 100, chunk: int = 2, name: str = "tiny_default") -> Path:
    """The shipped default suite (its four configs) with a small n and small chunks."""
    text = (common.SUITES_DIR / "default.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "n":
            line = f"n = {n}"
        elif key == "images_per_chunk":
            line = f"images_per_chunk = {chunk}"
        lines.append(line)
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def untimed_rows(out: Path) -> list[str]:
    return sorted(common.untimed(r) for r in common.read_rows(out))


def untimed_summary(out: Path) -> list[dict]:
    return [{k: v for k, v in s.items() if k not in TIMING} for s in json.loads((out / "summary.json").read_text())]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The default suite (limit 4, n = 100, chunks of 2) run by the local backend: 4 configs x 4 images."""
    tmp = tmp_path_factory.mktemp("local")
    suite = default_suite(tmp)
    out = tmp / "out"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--limit", "4", "--device", "cpu"]) == 0
    return suite, out


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ray_rows_equal_local_rows(ray_instance, local_reference, tmp_path, workers):
    suite, local = local_reference
    out = tmp_path / "ray"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--limit", "4", "--device", "cpu",
                     "--backend", "ray", "--workers", str(workers)]) == 0
    rows = common.read_rows(out)
    assert len(rows) == 16 and len({(r["config"], r["index"]) for r in rows}) == 16
    assert untimed_rows(out) == untimed_rows(local)
    assert untimed_summary(out) == untimed_summary(local)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == {"name": "ray", "workers": workers, "ray_address": None, "gpus_per_worker": None}
    assert ray_instance.is_initialized()  # an instance the process had is left running


@pytest.mark.slow
def test_a_killed_workers_unit_is_retried_and_written_once(ray_instance, local_reference, tmp_path, monkeypatch):
    suite, local = local_reference
    marker = tmp_path / "killed"
    monkeypatch.setenv(backends.KILL_UNIT_ENV, "digits_cnn@sigma=0.5#2")  # the third config's second chunk
    monkeypatch.setenv(backends.KILL_MARKER_ENV, str(marker))
    out = tmp_path / "ray"
    assert run.main(["--suite", str(suite), "--out", str(out), "--quiet", "--limit", "4", "--device", "cpu",
                     "--backend", "ray", "--workers", "2"]) == 0
    assert marker.exists()  # the worker did die on that unit
    keys = [(r["config"], r["index"]) for r in common.read_rows(out)]
    assert len(keys) == len(set(keys)) == 16
    assert untimed_rows(out) == untimed_rows(local)


@pytest.mark.slow
def test_a_killed_driver_resumes_to_the_uninterrupted_tables(ray_instance, tmp_path):
    # 2 configs x 6 images, one image per unit, n = 3000: long enough units to kill the driver between rows
    suite = default_suite(tmp_path, n=3000, chunk=1)
    text = suite.read_text().split("[[configs]]")
    suite.write_text("[[configs]]".join(text[:3]))  # keep the first two configs
    out, full = tmp_path / "killed", tmp_path / "full"
    address = ray_instance.get_runtime_context().gcs_address
    command = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--suite", str(suite), "--out", str(out),
               "--quiet", "--limit", "6", "--device", "cpu", "--backend", "ray", "--workers", "2",
               "--ray-address", address]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(common.read_rows(out)) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = len(common.read_rows(out))
    assert 3 <= finished < 12, (finished, driver.stderr.read().decode()[-2000:] if driver.stderr else "")
    assert not (out / "summary.json").exists()
    kept = (out / common.ROWS_FILE).read_text()
    kept = kept[: kept.rfind("\n") + 1]  # the complete rows (a line cut by the kill is recomputed)

    # the rerun (in this process, on the same Ray instance) keeps the finished units and computes the rest
    assert run.main(command[2:-2]) == 0
    keys = [(r["config"], r["index"]) for r in common.read_rows(out)]
    assert len(keys) == len(set(keys)) == 12
    assert (out / common.ROWS_FILE).read_text().startswith(kept)  # finished units kept, not recomputed

    assert run.main(["--suite", str(suite), "--out", str(full), "--quiet", "--limit", "6", "--device", "cpu"]) == 0
    assert untimed_rows(out) == untimed_rows(full)
    assert untimed_summary(out) == untimed_summary(full)
    strip = lambda text: [line for line in text.splitlines() if "git " not in line and "|" not in line]  # noqa: E731
    assert strip((out / "summary.md").read_text()) == strip((full / "summary.md").read_text())


# ---- duplicates (no Ray needed) ---------------------------------------------------------------------------------
def _ctx(tmp_path: Path) -> common.RunContext:
    return common.RunContext(out=tmp_path, device=torch.device("cpu"), seed=0, limit=None, verbose=False)


ROW = {"config": "c", "index": 0, "radius": 0.5, "seconds": 0.1}


def test_a_duplicate_row_is_dropped_and_a_conflicting_one_is_an_error(tmp_path):
    ctx = _ctx(tmp_path)
    assert ctx.write_rows([ROW, {**ROW, "index": 1}]) == 2
    assert ctx.write_rows([{**ROW, "seconds": 9.0}]) == 0  # the same row, other timing: dropped
    assert ctx.write_rows([{**ROW, "index": 2}, {**ROW, "index": 2}]) == 1  # twice in one unit: once
    with pytest.raises(common.DuplicateRowError, match=r"\('c', 1\).*fields radius differ"):
        ctx.write_rows([{**ROW, "index": 3}, {**ROW, "index": 1, "radius": 0.25}])
    ctx.close()
    rows = common.read_rows(tmp_path)
    assert [(r["index"], r["radius"]) for r in rows] == [(0, 0.5), (1, 0.5), (2, 0.5)]  # the bad unit wrote nothing


def test_rows_of_an_earlier_run_count_as_written(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.resume([ROW])
    assert ctx.is_done("c", 0) and ctx.write_rows([ROW]) == 0
    with pytest.raises(common.DuplicateRowError):
        ctx.write_rows([{**ROW, "radius": 0.75}])
    assert not (tmp_path / common.ROWS_FILE).exists()


def test_local_backend_writes_rows_in_unit_order(tmp_path):
    ctx = _ctx(tmp_path)
    units = [backends.Unit("c", (i, i + 1), seed=i, spec={}) for i in (0, 2, 4)]
    ctx.done = {("c", 2), ("c", 3)}  # the middle unit is finished: not computed again
    seen = []

    def compute(suite, unit, env):
        seen.append(unit.indices)
        assert env.seed == 0 and env.device == torch.device("cpu")
        return [{"config": unit.config, "index": i, "seed": unit.seed} for i in unit.indices]

    ctx.run_units(units, compute, {})
    ctx.close()
    assert seen == [(0, 1), (4, 5)]
    assert [(r["index"], r["seed"]) for r in common.read_rows(tmp_path)] == [(0, 0), (1, 0), (4, 4), (5, 4)]


# ---- option errors: one line, exit status 2, nothing written ----------------------------------------------------
@pytest.mark.parametrize("options, message", [
    (["--backend", "spark"], "--backend 'spark' is unknown; expected one of local, ray"),
    (["--backend", "ray", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["--workers", "2"], "--workers applies to --backend ray only"),
    (["--ray-address", "auto"], "--ray-address applies to --backend ray only"),
    (["--backend", "ray", "--gpus-per-worker", "0.5", "--device", "cpu"],
     "--gpus-per-worker applies to a cuda device, but the device is cpu"),
    (["--backend", "ray", "--workers", "x"], "argument --workers: invalid int value: 'x'"),
])
def test_backend_option_errors(tmp_path, capsys, options, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(default_suite(tmp_path)), "--out", str(out), "--quiet", "--device", "cpu",
                  "--limit", "1", *options])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_ray_missing_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends, "ray_available", lambda: False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:
        run.main(["--suite", str(default_suite(tmp_path)), "--out", str(out), "--quiet", "--device", "cpu",
                  "--backend", "ray"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and 'pip install "art_ext[distributed]"' in err and not out.exists()
