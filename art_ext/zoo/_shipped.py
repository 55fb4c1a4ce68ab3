"""Reference weights shipped with the package: ``art_ext/zoo/weights/<name>.pt`` and ``weights/MANIFEST.json``.

The files have the cache's format (``_cache``: name, fingerprint, sha256, state_dict, info) and were produced by the
entries' own recipes (``python -m art_ext.zoo.ship``). ``MANIFEST.json`` lists, per entry, its kind, recipe
fingerprint, sha256, file and size, and where the files were made. ``zoo.load`` reads a shipped file only when the
entry's current fingerprint equals the manifest's, and only after its tensors hash to the manifest's sha256.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from art_ext.zoo.entries import Entry

#: the folder of the shipped weights (package data)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_FILE = WEIGHTS_DIR / "MANIFEST.json"


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """The shipped manifest (``{"models": {}}`` when the package ships no weights)."""
    if not MANIFEST_FILE.is_file():
        return {"models": {}}
    data: dict[str, Any] = json.loads(MANIFEST_FILE.read_text())
    return data


def shipped(entry: Entry) -> tuple[Path, str] | None:
    """``(file, sha256)`` of the shipped weights of ``entry``, or None when none are shipped for its name and
    current recipe fingerprint."""
    record = manifest()["models"].get(entry.name)
    if record is None or record["fingerprint"] != entry.fingerprint():
        return None
    return WEIGHTS_DIR / record["file"], str(record["sha256"])
