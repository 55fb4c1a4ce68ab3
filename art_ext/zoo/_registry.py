"""Registry mechanics: register, look up and list named entries (the shape of ``timm/models/_registry.py``).

Nothing here trains, loads or caches; registering only stores the entry (and warns when a name is replaced).
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """Named entries of several kinds in one namespace (a name is unique across kinds).

    Args:
        kinds: The kinds an entry may have (e.g. ``("classifier", "denoiser")``).

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Item:
        ...     name: str
        ...     kind: str = "classifier"
        >>> registry = Registry(("classifier", "denoiser"))
        >>> _ = registry.register(Item("cnn_a")); _ = registry.register(Item("dncnn_a", "denoiser"))
        >>> registry.names("*_a", kind="denoiser")
        ['dncnn_a']
    """

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = tuple(kinds)
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        """Add ``entry`` under ``entry.name``; warns when it replaces an entry of the same name."""
        self._check_kind(entry.kind)
        if entry.name in self._entries:
            warnings.warn(f"zoo entry {entry.name!r} replaced", stacklevel=2)
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> E:
        """Remove and return entry ``name``."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str, kind: str | None = None) -> E:
        """Entry ``name``; with ``kind``, it must be of that kind.

        Raises:
            ValueError: on an unknown name (the known names of that kind are listed) or an entry of another kind.
        """
        if kind is not None:
            self._check_kind(kind)
        entry = self._entries.get(name)
        if entry is None:
            what = f"zoo {kind}" if kind else "zoo entry"
            raise ValueError(f"unknown {what} {name!r}; known: {', '.join(self.names(kind=kind))}")
        if kind is not None and entry.kind != kind:
            raise ValueError(f"zoo entry {name!r} is a {entry.kind}, expected a {kind}")
        return entry

    def names(self, pattern: str | Iterable[str] = "*", *, kind: str | None = None) -> list[str]:
        """Sorted names matching ``pattern`` (an ``fnmatch`` pattern, or several: a name matching any), optionally
        only those of ``kind``."""
        if kind is not None:
            self._check_kind(kind)
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        return sorted(
            name for name, entry in self._entries.items()
            if (kind is None or entry.kind == kind) and any(fnmatch.fnmatchcase(name, p) for p in patterns)
        )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
