"""CIFAR-10 and CIFAR-100 from their official *binary* distributions (never the pickles:
a folder of the pickled "python version" is named, and the binary one asked for).

``cifar-10-batches-bin``: ``data_batch_1..5.bin`` and ``test_batch.bin``, records of one
label byte and 3,072 pixel bytes (red, green, blue planes of 32x32). ``cifar-100-binary``:
``train.bin`` and ``test.bin``, records of a coarse and a fine label byte (the fine one, of
100 classes, is used) and the pixels. Numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .format.errors import DataError
from .format.limits import MAX_CIFAR_RECORDS, read_limited
from .splits import Split, candidate_dirs

PIXELS = 3 * 32 * 32
LAYOUT = {  # name: (folder, training files, test files, label bytes)
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)],
                ["test_batch.bin"], 1),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2),
}
HOW_TO_GET = ("download the binary version ({}.tar.gz) from "
              "https://www.cs.toronto.edu/~kriz/cifar.html and extract it into data.root")
ARCHIVES = {"cifar10": "cifar-10-binary", "cifar100": "cifar-100-binary"}
PYTHON_LAYOUT = {  # name: (folder, some of its files) of the pickled "python version"
    "cifar10": ("cifar-10-batches-py", ["data_batch_1", "test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}


def read_batch(path: Path, label_bytes: int) -> Split:
    """One binary batch file; its size must be a whole number of records, at most
    ``MAX_CIFAR_RECORDS`` of them."""
    record = label_bytes + PIXELS
    raw = read_limited(path, MAX_CIFAR_RECORDS * record, "CIFAR batch", DataError)
    if not raw or len(raw) % record:
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {record}-byte CIFAR "
                        "records (a truncated file?); re-download it")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].astype(np.int64)
    return Split(rows[:, label_bytes:].reshape(-1, 3, 32, 32), labels)


def cifar_files(name: str) -> list[str]:
    """The batch files of ``name``, training then test."""
    _, train, test, _ = LAYOUT[name]
    return train + test


def cifar_folder(name: str, root: str | None) -> Path:
    """The first candidate folder that holds every batch file of ``name``."""
    folder, train, test, _ = LAYOUT[name]
    tried = []
    for base in candidate_dirs(name, root):
        for d in (base / folder, base):
            tried.append(str(d))
            if all((d / f).is_file() for f in train + test):
                return d
    for base in candidate_dirs(name, root):
        refuse_python_version(base)
    raise DataError(f"{name} not found in {', '.join(dict.fromkeys(tried))}; "
                    f"{HOW_TO_GET.format(ARCHIVES[name])}")


def refuse_python_version(base: Path) -> None:
    """A ``DataError`` naming CIFAR's pickled "python version" where ``base`` (or its usual
    sub-folder) holds it: unpickling a file can run any code, so sltc reads only the binary
    version, which holds the same images."""
    for name, (folder, files) in PYTHON_LAYOUT.items():
        for d in (base / folder, base):
            if all((d / f).is_file() for f in files):
                raise DataError(
                    f"{d} holds the python version of {name} (pickled batches, which sltc "
                    f"never unpickles: a pickle can run code); "
                    f"{HOW_TO_GET.format(ARCHIVES[name])} (it extracts to "
                    f"{LAYOUT[name][0]})")


def cifar_in(root: str) -> str | None:
    """The CIFAR whose batch files all lie in ``root`` (or its usual sub-folder), if any."""
    for name, (folder, train, test, _) in LAYOUT.items():
        for d in (Path(root) / folder, Path(root)):
            if all((d / f).is_file() for f in train + test):
                return name
    refuse_python_version(Path(root))
    return None


def load_cifar(name: str, which: str, root: str | None = None) -> Split:
    folder = cifar_folder(name, root)
    _, train, test, label_bytes = LAYOUT[name]
    parts = [read_batch(folder / f, label_bytes) for f in (train if which == "train" else test)]
    split = Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    classes = 10 if name == "cifar10" else 100
    if split.labels.max() >= classes:
        raise DataError(f"{folder}: a label is {split.labels.max()}, past the {classes} classes of "
                        f"{name}; is this the other CIFAR?")
    return split
