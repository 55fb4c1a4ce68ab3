"""A results folder that nothing corrupts: one writer at a time, an atomic manifest, repairs that only truncate.

A run folder holds ``manifest.json`` (what produced the rows), ``rows.jsonl`` (one JSON line per finished example,
appended and flushed at once) and the reports derived from the rows. Here:

* ``FolderLock``: an exclusive ``flock`` on ``<out>/.lock``, held for the whole run; a second runner on the same
  folder gets a one-line error that names the holder (pid, host, start time, command). The kernel drops the lock
  when the holder dies, so a killed run never leaves a stale lock behind.
* ``write_manifest``: temp file, ``fsync``, ``os.replace``: a reader sees the old manifest or the new one, never a
  truncated one. ``read_manifest`` turns a corrupt file (from an older version, or edited by hand) into a one-line
  error that says how to recover.
* ``common.repair_rows_file``: a line cut off by a kill is removed by truncating the file at its last newline; the
  finished rows before it are never rewritten, so a second kill cannot lose them.
* ``common.read_rows``: each row key ``(config, index)`` counts once, whatever the file holds.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MANIFEST_FILE, ROWS_FILE, SuiteError, disk_error

LOCK_FILE = ".lock"
#: files a runner writes into a run folder (a folder that holds other files and no manifest is not a run folder)
RUN_FILES = (MANIFEST_FILE, ROWS_FILE, LOCK_FILE)


class FolderLock:
    """Exclusive ownership of a run folder while a runner writes into it (POSIX ``flock``).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder, FolderLock(Path(folder)) as lock:
        ...     lock.held
        True
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ``SuiteError`` naming the runner that holds it."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise SuiteError(f"{self.out} is being written by another runner ({holder}); a results folder has one "
                             "writer: wait for it to finish, or choose another --out") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically: a reader (or a crash) sees the old file or the new one, never a part.
    A full disk is a ``SuiteError`` (the old file stays)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise disk_error(err, path) from None
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the disk
    finally:
        os.close(directory)


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of the run in ``out`` (None when there is none); a corrupt one is a ``SuiteError``."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SuiteError(f"{path} is not a valid manifest ({err.__class__.__name__} at {getattr(err, 'pos', '?')}), "
                         "so the rows beside it cannot be identified: move the folder aside (its rows.jsonl is "
                         "intact) and run again, or choose another --out") from None
    if not isinstance(manifest, dict):
        raise SuiteError(f"{path} is not a valid manifest (a JSON object was expected): move the folder aside and "
                         "run again, or choose another --out")
    return manifest


def foreign_files(out: Path) -> list[str]:
    """Files in ``out`` that no runner wrote, when ``out`` holds no manifest (so no run of ours): the runner must
    not write its summary over them."""
    if not out.is_dir() or (out / MANIFEST_FILE).exists():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith(".manifest"))
