"""Where datasets live on disk, and the in-memory split every reader returns. Numpy only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SYSTEM_DIRS = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, C, H, W)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])

    def batch(self, start: int, stop: int) -> np.ndarray:
        return self.images[start:stop]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def sample(self, count: int) -> np.ndarray:
        return self.images[:count]


def candidate_dirs(name: str, root: str | None) -> list[Path]:
    """``root`` first, then the system folder of ``name`` (if any), then the user's cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sltc" / name
    dirs = [Path(root)] if root else []
    if name in SYSTEM_DIRS:
        dirs.append(Path(SYSTEM_DIRS[name]))
    return [*dirs, cache]
