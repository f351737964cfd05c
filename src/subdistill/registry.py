"""One registry pattern for every extension point: methods, models, datasets, subtask presets,
augmentations, basis methods, optimisers, schedules, attributions and canonizers.

A :class:`Registry` maps names to entries of one kind. Entries are added with the decorator
``@REGISTRY.register("name")`` (or ``REGISTRY.register("name", entry)``) and found with
``REGISTRY.get("name")``, whose error for an unknown name lists the known ones and the
closest match. The first lookup in any registry loads the installed plugins
(:mod:`subdistill.plugins`), so a user's own entries are found by name everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from .errors import ConfigError, SubdistillError, closest

T = TypeVar("T")
_SHOWN = 15  # names an unknown-name error lists


class Registry(Generic[T]):
    """Named entries of one ``kind``; ``error`` is the exception an unknown name raises."""

    def __init__(self, kind: str, error: type[SubdistillError] = ConfigError, hint: str = ""):
        self.kind, self.error, self.hint = kind, error, hint
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Add ``entry`` as ``name``; without ``entry``, a decorator that adds what it
        decorates. A name can be registered once (a plugin cannot silently replace an
        entry); registering the same object again is allowed."""

        def add(item: T) -> T:
            if not isinstance(name, str) or not name:
                raise self.error(f"a {self.kind} name must be a non-empty string, got {name!r}")
            if name in self._entries and self._entries[name] is not item:
                raise self.error(f"{self.kind} {name!r} is already registered")
            self._entries[name] = item
            return item

        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        """The entry called ``name``."""
        self._load_plugins()
        if name not in self._entries:
            names = self.names()
            shown = ", ".join(names[:_SHOWN]) + (f", ... ({len(names)} in all)"
                                                 if len(names) > _SHOWN else "")
            hint = f" {self.hint}" if self.hint else ""
            raise self.error(f"unknown {self.kind} {name!r}.{closest(str(name), names)} "
                             f"Available: {shown or 'none'}.{hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    def in_order(self) -> list[T]:
        """The entries in the order they were registered."""
        self._load_plugins()
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    @staticmethod
    def _load_plugins() -> None:
        from .plugins import load_entry_points

        load_entry_points()
