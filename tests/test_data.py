"""The IDX reader and the dataset splits."""

import gzip
import struct

import numpy as np
import pytest

from sltc.config import from_dict
from sltc.data import load_dataset, load_split, read_idx
from sltc.errors import DataError


def write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 10
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    split = load_split("mnist", "train", str(tmp_path))
    assert np.array_equal(split.images[:, 0], images) and np.array_equal(split.labels, labels)


def test_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # claims 5 bytes, has 3
    with pytest.raises(DataError, match="does not match its header"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(bad)


def test_splits_are_deterministic_and_disjoint():
    cfg = from_dict({"data": {"name": "synthetic", "synthetic_size": 400, "val_size": 100}})
    a, b = load_dataset(cfg.data, 0), load_dataset(cfg.data, 0)
    assert np.array_equal(a.val.images, b.val.images) and len(a.val) == 100
    assert len(a.train) == 300
    train_rows = {row.tobytes() for row in a.train.images}
    assert not any(row.tobytes() in train_rows for row in a.val.images)
    assert 0 < a.mean < 1 and 0 < a.std < 1
