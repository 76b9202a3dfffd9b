"""One kind of registry for models, gates, exporters and engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .format.errors import SltcError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object dict filled by a decorator; duplicates are rejected."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise SltcError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
