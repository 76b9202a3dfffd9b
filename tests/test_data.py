"""The IDX reader and the dataset splits."""


import numpy as np
import pytest

from sltc.config import from_dict
from sltc.data import load_dataset, load_named_split, load_split, read_idx
from sltc.format.errors import DataError
from tests.helpers import sltc, write_idx


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


def _cifar_records(rng, n, label_bytes, classes):
    labels = rng.integers(0, classes, (n, label_bytes), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1), labels[:, -1], pixels.reshape(n, 3, 32, 32)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_binary_round_trip(tmp_path, name):
    from sltc.cifar import LAYOUT

    folder_name, train_files, test_files, label_bytes = LAYOUT[name]
    folder = tmp_path / folder_name
    folder.mkdir()
    rng, written = np.random.default_rng(0), {}
    for i, f in enumerate(train_files + test_files):
        rows, labels, images = _cifar_records(rng, 7 + i, label_bytes, 10)
        (folder / f).write_bytes(rows.tobytes())
        written[f] = (labels, images)
    cfg = from_dict({"data": {"name": name, "root": str(tmp_path), "val_size": 5}})
    data = load_dataset(cfg.data, 0)
    test_labels, test_images = written[test_files[0]]
    assert np.array_equal(data.test.images, test_images) and np.array_equal(data.test.labels,
                                                                          test_labels)
    assert len(data.train) + len(data.val) == sum(7 + i for i in range(len(train_files)))
    assert data.input_shape == (3, 32, 32) and data.classes == (10 if name == "cifar10" else 100)


class _Hostile:
    """A pickle whose loading runs a shell command (writes ``marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_cifar_python_version_is_named_and_never_unpickled(tmp_path):
    """CIFAR's pickled python version is recognised, the binary version asked for, and its
    files (here hostile pickles) are never loaded."""
    import pickle

    folder, marker = tmp_path / "cifar-10-batches-py", tmp_path / "ran"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(_Hostile(marker)))
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "run",
                "--set", "data.name=cifar10", "--set", f"data.root={tmp_path}")
    line, = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and f"{folder} holds the python version of cifar10" in line
    assert "cifar-10-binary.tar.gz" in line and "cifar-10-batches-bin" in line, line
    assert not marker.exists()
    with pytest.raises(DataError, match="python version of cifar10"):  # validate --data DIR
        load_named_split(from_dict({"data": {"name": "loaders"}}).data, 0, "test", str(folder))
    assert not marker.exists()


def test_cifar_errors_say_where_and_how(tmp_path):
    cfg = from_dict({"data": {"name": "cifar10", "root": str(tmp_path)}})
    with pytest.raises(DataError, match=f"cifar10 not found in {tmp_path}.*cifar-10-binary.tar.gz"):
        load_dataset(cfg.data, 0)
    from sltc.cifar import LAYOUT

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for f in LAYOUT["cifar10"][1] + LAYOUT["cifar10"][2]:
        (folder / f).write_bytes(bytes(3073 * 2))
    (folder / "data_batch_3.bin").write_bytes(bytes(3073 * 2 - 100))
    with pytest.raises(DataError, match="data_batch_3.bin: 6046 bytes is not a whole number"):
        load_dataset(cfg.data, 0)


def _image_tree(root, classes=("cat", "dog"), per_class=6, size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")


def test_image_folder_streams_from_disk(tmp_path):
    from PIL import Image

    from sltc.loaders import data_for

    _image_tree(tmp_path)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "test/dog/big.png")
    cfg = from_dict({"data": {"name": "folder", "root": str(tmp_path), "val_size": 2,
                              "batch_size": 4, "workers": 1}})
    data = load_dataset(cfg.data, 0)
    assert data.classes == 2 and data.input_shape == (3, 10, 12)
    assert len(data.test) == 13 and data.test.batch(12, 13).shape == (1, 3, 10, 12)  # resized
    first = np.asarray(Image.open(sorted((tmp_path / "test/cat").iterdir())[0]))
    assert np.array_equal(data.test.batch(0, 1)[0], first.transpose(2, 0, 1))
    batches = data_for(cfg, data, "cpu")
    seen = [y for _, y in batches.train.epoch(0, 0)]
    assert sum(len(y) for y in seen) == len(data.train) == 10
    x, _ = next(iter(batches.test))
    assert x.dtype.is_floating_point and float(x.max()) <= 1.0


def test_image_folder_run_warns_only_of_its_capped_val_size(tmp_path):
    """A run on an image folder through its DataLoader workers raises no torch or numpy
    warning (torch takes each image's array as it is), and the one warning it gives says
    that data.val_size was cut to half the training images."""
    _image_tree(tmp_path / "tree")
    proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "run", "--json",
                "--set", "data.name=folder", "--set", f"data.root={tmp_path / 'tree'}",
                "--set", "data.workers=2", "--set", "train.epochs=2", "--set",
                "gates.target_sparsity=null", env={"PYTHONWARNINGS": "default"}, check=True)
    said = proc.stderr.strip().splitlines()
    assert said == ["warning: data.val_size 256 is more than half the 12 training images of "
                    "folder; validating on 6 of them; set data.val_size to at most 6"], said
    rows = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2


def test_image_folder_errors_are_one_line(tmp_path):
    cfg = from_dict({"data": {"name": "folder", "root": str(tmp_path)}})
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_dataset(cfg.data, 0)
    _image_tree(tmp_path / "tree")
    (tmp_path / "tree/train/cat/broken.png").write_bytes(b"not an image")
    cfg = from_dict({"data": {"name": "folder", "root": str(tmp_path / "tree")}})
    with pytest.raises(DataError, match="broken.png: not a readable PNG or JPEG"):
        load_dataset(cfg.data, 0)  # before the first step


def test_synthetic_shape_and_augmentation():
    import torch

    from sltc.loaders import augment

    cfg = from_dict({"data": {"name": "synthetic", "synthetic_shape": [3, 32, 32],
                              "synthetic_size": 64, "val_size": 8}})
    data = load_dataset(cfg.data, 0)
    assert data.input_shape == (3, 32, 32) and data.test.images.shape[1:] == (3, 32, 32)
    x = torch.rand(16, 3, 8, 8)
    torch.manual_seed(0)
    a = augment(x, ("crop", "flip"))
    torch.manual_seed(0)
    assert torch.equal(a, augment(x, ("crop", "flip")))  # torch's RNG, seeded per epoch
    assert a.shape == x.shape and not torch.equal(a, x)
    torch.manual_seed(1)
    flipped = augment(x, ("flip",))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flipped, x, strict=True))
    torch.manual_seed(2)
    cropped = augment(x, ("crop",))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for out, source in zip(cropped, padded, strict=True):  # every crop is a window of the padded image
        assert any(torch.equal(out, source[:, dy:dy + 8, dx:dx + 8])
                   for dy in range(9) for dx in range(9))
    assert float(cropped.min()) == 0.0  # and some window reaches into the zero padding


def test_a_worker_error_reaches_the_user_as_one_line(tmp_path):
    import torch

    from sltc.loaders import FolderImages, LoaderBatches

    _image_tree(tmp_path)
    cfg = from_dict({"data": {"name": "folder", "root": str(tmp_path)}})
    split = load_dataset(cfg.data, 0).test
    (split.paths[3]).write_bytes(b"damaged")  # after the dataset was scanned
    loader = torch.utils.data.DataLoader(FolderImages(split), batch_size=4, num_workers=1)
    with pytest.raises(DataError) as caught:
        list(LoaderBatches(loader, "cpu"))
    assert str(caught.value) == f"{split.paths[3]}: not a readable PNG or JPEG image; remove " \
                                "or replace it"


def test_missing_and_broken_data_are_one_line_errors_in_the_cli(tmp_path):
    from tests.helpers import sltc

    cases = [("data.name=cifar10", f"data.root={tmp_path}", "cifar-10-binary.tar.gz"),
             ("data.name=folder", f"data.root={tmp_path}", "train not found")]
    for *sets, needle in cases:
        proc = sltc("discover", "examples/synthetic.yaml", "--out", tmp_path / "run",
                    *[a for s in sets for a in ("--set", s)])
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert line.startswith("sltc: error:") and needle in line
