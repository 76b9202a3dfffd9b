"""Datasets: an IDX reader for MNIST / Fashion-MNIST and a synthetic set for tests.

Numpy only (the runtime's ``validate`` reads test sets too). Images stay uint8
in memory; models take pixels scaled to [0, 1] and normalise inside.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .seeding import permutation, uniform01

SYSTEM_DIRS = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}
HOW_TO_GET = {
    "fashion_mnist": "apt-get install dataset-fashion-mnist, or put the four IDX files in data.root",
    "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) in data.root",
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, C, H, W)
    labels: np.ndarray  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    classes: int
    mean: float  # of training pixels in [0, 1]
    std: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip); checks the header against the payload size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e}); re-download it") from None
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an unsigned-byte IDX file; check the file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != header + int(np.prod(dims)):
        raise DataError(f"{path}: IDX size does not match its header {dims}; re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _candidate_dirs(name: str, root: str | None) -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sltc" / name
    dirs = [Path(root)] if root else []
    if name in SYSTEM_DIRS:
        dirs.append(Path(SYSTEM_DIRS[name]))
    return [*dirs, cache]


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for suffix in (".gz", ""):
            if (d / f"{stem}{suffix}").is_file():
                return d / f"{stem}{suffix}"
    return None


def load_split(name: str, split: str, root: str | None = None) -> Split:
    dirs = _candidate_dirs(name, root)
    paths = [_find(stem, dirs) for stem in FILES[split]]
    if None in paths:
        where = ", ".join(str(d) for d in dirs)
        raise DataError(f"{name} {split} set not found in {where}; {HOW_TO_GET[name]}")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(f"{paths[0]}: expected N x H x W images matching {len(labels)} labels")
    return Split(images[:, None], labels.astype(np.int64))


def synthetic_split(seed: int, split: str, n: int, classes: int = 10) -> Split:
    """Noisy class templates on 1x28x28: learnable in seconds, no files needed."""
    templates = uniform01(seed, "synthetic/templates", classes * 784).reshape(classes, 784)
    labels = (uniform01(seed, f"synthetic/{split}/labels", n) * classes).astype(np.int64)
    noise = uniform01(seed, f"synthetic/{split}/noise", n * 784).reshape(n, 784)
    pixels = 0.6 * templates[labels] + 0.4 * noise
    images = np.round(pixels * 255).astype(np.uint8).reshape(n, 1, 28, 28)
    return Split(images, labels)


def load_dataset(cfg, seed: int) -> Dataset:
    """Train/val/test splits; validation is a fixed permutation's tail of training."""
    if cfg.name == "synthetic":
        full = synthetic_split(seed, "train", cfg.synthetic_size)
        test = synthetic_split(seed, "test", max(16, cfg.synthetic_size // 4))
    else:
        full = load_split(cfg.name, "train", cfg.root)
        test = load_split(cfg.name, "test", cfg.root)
    val_size = min(cfg.val_size, len(full) // 2)
    order = permutation(0, f"{cfg.name}/val_split", len(full))
    train, val = full.take(np.sort(order[val_size:])), full.take(np.sort(order[:val_size]))
    mean = train.images.mean(dtype=np.float64) / 255.0
    std = train.images.std(dtype=np.float64) / 255.0
    classes = int(max(full.labels.max(), test.labels.max())) + 1
    return Dataset(cfg.name, train, val, test, classes, float(mean), float(std))


def load_test_set(name: str, root: str | None = None, seed: int = 0, size: int = 2048) -> Split:
    if name == "synthetic":
        return synthetic_split(seed, "test", max(16, size // 4))
    return load_split(name, "test", root)


def recorded_test_set(data: dict, seed: int, root: str | None = None) -> Split:
    """The test set named by a saved run's ``data`` config (``root`` overrides its folder)."""
    return load_test_set(data["name"], root or data["root"], seed, data["synthetic_size"])
