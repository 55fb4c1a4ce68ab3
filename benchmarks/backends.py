"""Where a suite's work units run: in order in this process (``LocalBackend``) or as tasks on Ray actors
(``RayBackend``, ``--backend ray``).

A kind lists its work units (``Unit``: picklable descriptions of a chunk of examples and its derived seed) and
offers a module-level ``compute(suite, unit, env) -> rows``; ``RunContext.run_units`` hands both to the backend and
writes the rows of every finished unit itself. The driver is the only writer of ``rows.jsonl`` whatever the backend,
so resume, the manifest and the reports do not depend on it. A unit's rows depend only on the suite, the unit (its
derived seed included) and the run options in ``WorkerEnv``, never on which process computes it or when, so the rows
of local, 1-worker and N-worker runs are identical (timing fields aside) in any completion order.

``RayBackend`` starts N actors; each keeps the models and datasets it loaded (``cached``) for the rest of the run,
on its device, and computes one unit per task. A worker process that dies is restarted and its unfinished units are
retried (Ray's actor fault tolerance: ``max_restarts`` / ``max_task_retries``); an exception raised by ``compute``
itself is not retried, it ends the run (finished units are kept for a rerun).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("benchmarks")

BACKENDS = ("local", "ray")
#: the pip extra of art_ext that provides Ray
RAY_EXTRA = "distributed"
#: environment variables every Ray worker gets from the driver (besides PYTHONPATH): the zoo cache, data and model
#: folders, thread counts, and the test-only kill hook below
FORWARDED_ENV = ("ART_EXT_CACHE", "ART_EXT_DATA_ROOT", "ART_EXT_MODEL_DIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: test-only hook: a worker whose unit's label equals $ART_EXT_TEST_KILL_UNIT kills its own process (once: it first
#: creates the file $ART_EXT_TEST_KILL_MARKER, and does nothing when that file exists)
KILL_UNIT_ENV, KILL_MARKER_ENV = "ART_EXT_TEST_KILL_UNIT", "ART_EXT_TEST_KILL_MARKER"
#: tasks queued on one actor at a time (one running, one waiting: hides the dispatch round trip)
IN_FLIGHT_PER_WORKER = 2
#: Ray restarts a dead worker and retries its units this many times before the run fails
MAX_RESTARTS = 3

Compute = Callable[[dict[str, Any], "Unit", "WorkerEnv"], list[dict[str, Any]]]


@dataclass(frozen=True)
class Unit:
    """One work unit: the rows ``(config, index)`` for ``index in indices``, computed under one derived ``seed``.

    Attributes:
        config: The config id of the unit's rows.
        indices: The ``index`` of every row the unit produces (images, or seeds for per-seed rows).
        seed: The unit's derived seed (``common.seed_for(run seed, ...)``); kinds that need more derived seeds get
            them from ``WorkerEnv.seed``.
        spec: What else ``compute`` needs, picklable (e.g. the config table, the part of the suite).
    """

    config: str
    indices: tuple[int, ...]
    seed: int
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        """``<config>#<first index>``: names the unit in messages."""
        return f"{self.config}#{self.indices[0]}"


@dataclass(frozen=True)
class WorkerEnv:
    """The run options a unit's computation reads (the same attribute names as ``RunContext``)."""

    device: torch.device
    seed: int
    limit: int | None
    limit_option: int | None
    data_root: Path | None
    model_dir: Path | None
    verbose: bool = False


# ---- per-process cache of loaded models and data ----------------------------------------------------------------
_CACHE: OrderedDict[tuple, Any] = OrderedDict()
#: entries kept per process (least recently used first out), so a long suite holds a few models, not all of them
CACHE_SIZE = 8


def cached(key: tuple, load: Callable[[], Any]) -> Any:
    """``load()`` once per process and run for ``key`` (e.g. ``("model", reference, device)``), then the same
    object. The cache lives for one run: ``clear_cache`` empties it when a run starts and ends."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = load()
    _CACHE[key] = value
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    _CACHE.clear()


# ---- backends ---------------------------------------------------------------------------------------------------
class LocalBackend:
    """Every unit in order, in this process: the runner's behaviour before backends existed."""

    name = "local"

    def describe(self) -> str:
        return "local"

    def start(self) -> None:
        """Nothing to start (``RayBackend.start`` starts its workers)."""

    def map(self, compute: Compute, suite: dict[str, Any], units: list[Unit], env: WorkerEnv
            ) -> Iterator[tuple[Unit, list[dict[str, Any]]]]:
        clear_cache()  # what one call loads lives for that call only (no model outlives its part of the run)
        try:
            for unit in units:
                yield unit, compute(suite, unit, env)
        finally:
            clear_cache()

    def close(self) -> None:
        clear_cache()


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray() -> Any:
    from art_ext._optional import require

    return require("ray")


class _Worker:
    """A Ray actor: computes units, keeping what it loaded (``cached``) for later units."""

    def __init__(self) -> None:
        clear_cache()

    def compute(self, compute: Compute, suite: dict[str, Any], unit: Unit, env: WorkerEnv) -> list[dict[str, Any]]:
        if os.environ.get(KILL_UNIT_ENV) == unit.label:
            marker = Path(os.environ[KILL_MARKER_ENV])
            if not marker.exists():
                marker.touch()
                os._exit(1)  # a worker that dies mid-unit (test hook): Ray restarts it and retries the unit
        return compute(suite, unit, env)

    def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """Units as tasks on ``workers`` Ray actors (each ``gpus_per_worker`` GPUs and one CPU).

    Args:
        workers: Number of actors; default one per CPU of the Ray instance (one per ``gpus_per_worker`` GPUs when
            that is set).
        address: A running cluster to join (``"auto"``, ``"<host>:<port>"`` or ``"ray://<host>:<port>"``); without
            it a local Ray instance is started for the run and stopped after it. A process that has already called
            ``ray.init`` uses that instance and leaves it running.
        gpus_per_worker: GPUs per actor (a fraction < 1 lets several actors share one GPU).
    """

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, gpus_per_worker: float = 0.0):
        self.workers, self.address, self.gpus_per_worker = workers, address, gpus_per_worker
        self._ray: Any = None
        self._started_ray = False
        self._actors: list[Any] = []

    def describe(self) -> str:
        where = f", address {self.address}" if self.address else ""
        gpus = f", {self.gpus_per_worker:g} GPU each" if self.gpus_per_worker else ""
        return f"ray, {len(self._actors) or self.workers or '?'} workers{gpus}{where}"

    def start(self) -> None:
        """Start (or join) Ray and the workers and wait until every worker is up, so a progress bar started after
        this measures computing only."""
        if self._actors:
            return
        ray = self._ray = require_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING,
                                           configure_logging=True)
            if self.address:
                ray.init(address=self.address, **options)
            else:
                cpus = max(self.workers or 0, os.cpu_count() or 1)
                ray.init(num_cpus=cpus, **options)
            self._started_ray = True
        resources = ray.cluster_resources()
        workers = self.workers
        if workers is None:
            workers = int(resources.get("GPU", 0) // self.gpus_per_worker) if self.gpus_per_worker else \
                int(resources.get("CPU", 1))
            workers = max(workers, 1)
        if self.gpus_per_worker and resources.get("GPU", 0) < self.gpus_per_worker:
            raise RuntimeError(f"--gpus-per-worker {self.gpus_per_worker:g}: the Ray instance has "
                               f"{resources.get('GPU', 0):g} GPU(s)")
        repo = str(Path(__file__).resolve().parent.parent)
        env_vars = {"PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
        env_vars.update({k: os.environ[k] for k in (*FORWARDED_ENV, KILL_UNIT_ENV, KILL_MARKER_ENV)
                         if k in os.environ})
        actor = ray.remote(_Worker).options(
            num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
            runtime_env={"env_vars": env_vars},
        )
        self._actors = [actor.remote() for _ in range(workers)]
        ray.get([a.pid.remote() for a in self._actors])  # every worker process is up
        log.info("ray: %d workers on %s", workers, ray.get_runtime_context().gcs_address)

    def map(self, compute: Compute, suite: dict[str, Any], units: list[Unit], env: WorkerEnv
            ) -> Iterator[tuple[Unit, list[dict[str, Any]]]]:
        """Finished units in completion order; each actor holds at most ``IN_FLIGHT_PER_WORKER`` queued units."""
        self.start()
        ray = self._ray
        if env.device.type == "cuda":  # Ray gives each actor its own GPU(s) as the visible device(s)
            env = WorkerEnv(**{**env.__dict__, "device": torch.device("cuda")})
        suite_ref = ray.put(suite)
        queue = deque(units)
        pending: dict[Any, tuple[Unit, Any]] = {}

        def submit(actor: Any) -> None:
            unit = queue.popleft()
            pending[actor.compute.remote(compute, suite_ref, unit, env)] = (unit, actor)

        for _ in range(IN_FLIGHT_PER_WORKER):
            for actor in self._actors:
                if queue:
                    submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit, actor = pending.pop(ready[0])
            rows = ray.get(ready[0])
            if queue:
                submit(actor)
            yield unit, rows

    def worker_pids(self) -> list[int]:
        self.start()
        return list(self._ray.get([a.pid.remote() for a in self._actors]))

    def close(self) -> None:
        if self._ray is not None:
            for actor in self._actors:
                self._ray.kill(actor, no_restart=True)
            self._actors = []
            if self._started_ray:
                self._ray.shutdown()
                self._started_ray = False
        clear_cache()


Backend = LocalBackend | RayBackend


def check_options(backend: str, workers: int | None, address: str | None, gpus_per_worker: float | None,
                  device: torch.device) -> list[str]:
    """The problems of a backend choice, as one-line messages (empty when it can run); checks nothing remote."""
    if backend not in BACKENDS:
        return [f"--backend {backend!r} is unknown; expected one of {', '.join(BACKENDS)}"]
    if backend == "local":
        given = [name for name, value in (("--workers", workers), ("--ray-address", address),
                                          ("--gpus-per-worker", gpus_per_worker)) if value is not None]
        return [f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --backend ray only (the local "
                "backend runs every unit in this process)"] if given else []
    if workers is not None and workers < 1:
        return [f"--workers must be >= 1, got {workers}"]
    if gpus_per_worker is not None:
        if not (gpus_per_worker > 0 and math.isfinite(gpus_per_worker)) or \
                (gpus_per_worker > 1 and gpus_per_worker != int(gpus_per_worker)):
            return [f"--gpus-per-worker must be a fraction in (0, 1] or a whole number of GPUs, got "
                    f"{gpus_per_worker:g}"]
        if device.type != "cuda":
            return [f"--gpus-per-worker applies to a cuda device, but the device is {device}"]
    if device.type == "cuda" and device.index is not None:
        return [f"--device {device}: with --backend ray use --device cuda (Ray assigns each worker its GPUs)"]
    if address is not None and not address.strip():
        return ["--ray-address must be 'auto', <host>:<port> or ray://<host>:<port>, got an empty string"]
    if not ray_available():
        return [f"--backend ray needs Ray, which is not installed: pip install \"art_ext[{RAY_EXTRA}]\" "
                "(or pip install ray)"]
    return []


def make_backend(backend: str, workers: int | None, address: str | None, gpus_per_worker: float | None,
                 device: torch.device) -> Backend:
    """The backend of checked options (``check_options``); starts nothing yet."""
    if backend == "local":
        return LocalBackend()
    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if device.type == "cuda" else 0.0)
    return RayBackend(workers, address, gpus)


def rows_left(units: Iterable[Unit], done: Callable[[str, int], bool]) -> int:
    return sum(1 for u in units for i in u.indices if not done(u.config, i))
