"""Datasets: MNIST / Fashion-MNIST (IDX), CIFAR (``cifar``), image folders (``folder``)
and a synthetic set for tests, split into train / validation / test.

Numpy only (the runtime's ``validate`` reads test sets too). Images stay uint8
in memory (an image folder stays on disk); models take pixels scaled to [0, 1]
and normalise inside. A split hands out ``batch(start, stop)`` of uint8 images.
"""

from __future__ import annotations

import gzip
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cifar import cifar_files, cifar_folder, cifar_in, load_cifar
from .folder import load_folder
from .format.errors import DataError
from .format.limits import MAX_DATA_BYTES, require_regular
from .format.records import DataSection
from .format.seeding import permutation, uniform01, valid_seed
from .splits import Split, candidate_dirs

log = logging.getLogger(__name__)
HOW_TO_GET = {
    "fashion_mnist": "apt-get install dataset-fashion-mnist, or put the four IDX files in data.root",
    "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...) in data.root",
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}
CIFAR = {"cifar10": 10, "cifar100": 100}  # name -> classes
FOUND_IN_A_FOLDER = ("MNIST-style IDX files (t10k-images-idx3-ubyte[.gz], ...), CIFAR's "
                     "binary batches, or train/ and test/ image folders")
STATS_SAMPLE = 1 << 62  # training images for the mean and std (all; a folder samples)
SYNTHETIC_CHUNK = 1 << 20  # pixels of a synthetic set made at a time


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
        return self.train.shape


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or gzip): the header first, then exactly the bytes it
    declares, at most ``MAX_DATA_BYTES`` (a gzip bomb inflates no further)."""
    path = Path(path)
    require_regular(path, "IDX", DataError)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0:2] != b"\0\0" or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: not an unsigned-byte IDX file; check the file")
            shape = f.read(4 * head[3])
            dims = [int.from_bytes(shape[4 * i:4 * i + 4], "big") for i in range(head[3])]
            size = math.prod(dims)
            if len(shape) != 4 * head[3] or size > MAX_DATA_BYTES:
                raise DataError(f"{path}: IDX header {dims} declares more than "
                                f"{MAX_DATA_BYTES} bytes; re-download it")
            if 0 in dims:
                raise DataError(f"{path}: IDX header {dims} declares an empty dimension; "
                                "re-download it")
            raw = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read IDX file ({e}); re-download it") from None
    if len(raw) != size:
        raise DataError(f"{path}: IDX size does not match its header {dims}; re-download it")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for suffix in (".gz", ""):
            if (d / f"{stem}{suffix}").is_file():
                return d / f"{stem}{suffix}"
    return None


def load_split(name: str, split: str, root: str | None = None) -> Split:
    dirs = candidate_dirs(name, root)
    paths = [_find(stem, dirs) for stem in FILES[split]]
    if None in paths:
        where = ", ".join(str(d) for d in dirs)
        raise DataError(f"{name} {split} set not found in {where}; {HOW_TO_GET[name]}")
    images, labels = (read_idx(p) for p in paths)
    if labels.ndim != 1:
        raise DataError(f"{paths[1]}: expected one label per image (a 1-D IDX file), found "
                        f"shape {list(labels.shape)}; pass the labels file")
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(f"{paths[0]}: expected N x H x W images matching {len(labels)} labels, "
                        f"found shape {list(images.shape)}")
    return Split(images[:, None], labels.astype(np.int64))


def synthetic_split(seed: int, split: str, n: int, classes: int = 10,
                    shape: tuple[int, ...] = (1, 28, 28)) -> Split:
    """Noisy class templates: learnable in seconds, no files needed. Made
    ``SYNTHETIC_CHUNK`` pixels at a time: the uint8 images and one chunk's float64 numbers
    are all it holds (a pixel takes about 120 ns: 2**24 of them, 2 s)."""
    size = int(np.prod(shape))
    templates = uniform01(seed, "synthetic/templates", classes * size).reshape(classes, size)
    labels = (uniform01(seed, f"synthetic/{split}/labels", n) * classes).astype(np.int64)
    images = np.empty((n, size), np.uint8)
    rows = max(1, SYNTHETIC_CHUNK // size)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        noise = uniform01(seed, f"synthetic/{split}/noise", (b - a) * size, a * size)
        pixels = 0.6 * templates[labels[a:b]] + 0.4 * noise.reshape(b - a, size)
        images[a:b] = np.round(pixels * 255)
    return Split(images.reshape(n, *shape), labels)


def load_named_split(cfg, seed: int, which: str, root: str | None = None):
    """The ``train`` or ``test`` split of the configured dataset."""
    root = root or cfg.root
    if cfg.name == "loaders":
        if root is None:
            raise DataError("this run's data came from Python DataLoaders (sltc.find_ticket); "
                            f"pass --data DIR, a folder holding {FOUND_IN_A_FOLDER}")
        return split_in(root, which)
    if cfg.name == "synthetic":
        size = cfg.synthetic_size if which == "train" else max(16, cfg.synthetic_size // 4)
        return synthetic_split(seed, which, size, shape=tuple(cfg.synthetic_shape))
    if cfg.name in CIFAR:
        return load_cifar(cfg.name, which, root)
    if cfg.name == "folder":
        return load_folder(root, which, cfg.image_size)
    return load_split(cfg.name, which, root)


def split_in(root: str, which: str):
    """The ``train`` or ``test`` split of whatever dataset the folder ``root`` holds (the
    data of a run whose loaders came from Python): MNIST-style IDX files, a CIFAR binary
    folder, or an image folder."""
    here = Path(root)
    if all(_find(stem, [here]) for stem in FILES[which]):
        return load_split("mnist", which, root)  # Fashion-MNIST's files have MNIST's names
    if (name := cifar_in(root)) is not None:
        return load_cifar(name, which, root)
    if (here / "train").is_dir() and (here / which).is_dir():
        return load_folder(root, which)
    raise DataError(f"{root}: no dataset found; pass a folder holding {FOUND_IN_A_FOLDER}")


def dataset_files(cfg, root: str | None = None) -> list[Path]:
    """What the configured dataset reads (``root`` overrides its folder), and the folders
    that hold it: its IDX or CIFAR files where they are found, an image folder's root. No
    command writes over them or into those folders (``outputs.check_output``)."""
    root = root or cfg.root
    if cfg.name in CIFAR:
        try:
            folder = cifar_folder(cfg.name, root)
        except DataError:
            return []
        return [folder, *(folder / f for f in cifar_files(cfg.name))]
    if cfg.name == "folder":
        return [Path(root)] if root else []
    if cfg.name in HOW_TO_GET:
        dirs = candidate_dirs(cfg.name, root)
        files = [p for split in FILES.values() for stem in split if (p := _find(stem, dirs))]
        return [*dict.fromkeys(p.parent for p in files), *files]
    return []


def check_data_folder(cfg, root: str | None) -> None:
    """A folder given for the dataset (``--data``) must hold it: read from there, never
    from the folders searched otherwise; a generated (synthetic) dataset reads none."""
    if root is None:
        return
    if cfg.name == "synthetic":
        raise DataError(f"--data {root}: this model's dataset is synthetic, generated from its "
                        "seed, and read from no folder; drop --data")
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"--data {root}: no such folder; pass the folder that holds the "
                        "dataset")
    if cfg.name in CIFAR or cfg.name in HOW_TO_GET:
        found = [p for p in dataset_files(cfg, root) if p.is_file()]
        if not found or not all(p.resolve().is_relative_to(folder.resolve()) for p in found):
            raise DataError(f"--data {root}: the {cfg.name} files are not in it; pass the "
                            "folder that holds them")


def _classes(name: str, train, test) -> int:
    if name in CIFAR:
        return CIFAR[name]
    if name == "folder":
        return len(train.classes)
    if name == "synthetic":
        return 10
    return int(max(train.labels.max(), test.labels.max())) + 1


def load_dataset(cfg, seed: int) -> Dataset:
    """Train/val/test splits: validation is the head of a fixed permutation of the training
    set, training the rest of it (its first ``train_size`` images, where set)."""
    full, test = (load_named_split(cfg, seed, which) for which in ("train", "test"))
    if full.shape != test.shape:
        raise DataError(f"{cfg.name}: the training images are {_shape(full.shape)} but the test "
                        f"images {_shape(test.shape)}; give both splits one size and channel "
                        "count")
    classes = _classes(cfg.name, full, test)
    val_size = min(cfg.val_size, len(full) // 2)
    if val_size < cfg.val_size:
        log.warning("warning: data.val_size %d is more than half the %d training images of "
                    "%s; validating on %d of them; set data.val_size to at most %d",
                    cfg.val_size, len(full), cfg.name, val_size, val_size)
    order = permutation(0, f"{cfg.name}/val_split", len(full))
    rest = order[val_size:] if cfg.train_size is None else order[val_size:val_size + cfg.train_size]
    train, val = full.take(np.sort(rest)), full.take(np.sort(order[:val_size]))
    pixels = train.sample(STATS_SAMPLE)
    mean = pixels.mean(dtype=np.float64) / 255.0
    std = pixels.std(dtype=np.float64) / 255.0
    if std == 0:
        raise DataError(f"{cfg.name}: every training pixel is {round(mean * 255)}: nothing to "
                        "learn from, and no spread to normalise by; check the dataset")
    return Dataset(cfg.name, train, val, test, classes, float(mean), float(std))


def _shape(shape) -> str:
    """(C, H, W) as a reader says it: ``1 x 28 x 28``."""
    return " x ".join(map(str, shape))


def check_fits(split, input_shape, classes: int, where: str) -> None:
    """A test set against the network it is for: the same image shape, labels below its
    class count; a ``DataError`` saying what was found."""
    if tuple(split.shape) != tuple(input_shape):
        raise DataError(f"{where}: the images are {_shape(split.shape)} (channels x height x "
                        f"width) but the model takes {_shape(input_shape)}; pass the dataset "
                        "it was trained for")
    top = int(split.labels.max()) if len(split) else -1
    if top >= classes:
        raise DataError(f"{where}: a label is {top} but the model has {classes} classes; "
                        "pass the dataset it was trained for")


def recorded_test_set(data: dict, seed: int, root: str | None = None, input_shape=None,
                      classes: int | None = None):
    """The test set named by a saved run's ``data`` config (``root`` overrides its folder),
    checked against the model's ``input_shape`` and ``classes`` where given; a ``data``
    that does not validate as a ``DataSection`` is a ``DataError``."""
    try:
        cfg = DataSection.from_json(data)
    except DataError as e:
        raise DataError(f"{e}; re-export the model from its ticket") from None
    if not valid_seed(seed):
        raise DataError("the model's recorded seed is not an integer in [0, 2**64); re-export "
                        "the model from its ticket")
    check_data_folder(cfg, root)
    test = load_named_split(cfg, seed, "test", root)
    if input_shape is not None:
        check_fits(test, input_shape, classes, root or cfg.root or cfg.name)
    return test


