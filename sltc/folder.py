"""An image-folder dataset: ``root/train/<class>/*.png|jpg`` and ``root/test/<class>/...``.

Images stay on disk: a split is a list of files, read with Pillow a batch at a time
(the training loop streams them through a torch ``DataLoader`` with workers). Every
image is resized to ``image_size`` (None: the size of the first training image) and
converted to the first image's mode (RGB or greyscale). Only regular files are listed,
and each one's header is read when the folder is scanned (about 25 us an image), so a
file that is not an image or would decode to more pixels than Pillow allows is named
before the first step.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .format.errors import DataError

SUFFIXES = (".png", ".jpg", ".jpeg")
STATS_IMAGES = 2000  # training images read for the normalisation mean and std,
STATS_BYTES = 1 << 24  # at most this many pixels of them (the std holds 8 bytes a pixel)


def _open(path: Path):
    """The image at ``path``, opened lazily; one over Pillow's pixel limit (a decompression
    bomb: a small file that inflates to gigabytes) is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = str(e).split(",")[0].strip().rstrip(".")  # Pillow's "Image size (N pixels) ..."
        raise DataError(f"{path}: {found} (a decompression bomb?); remove the image or "
                        "shrink it") from None
    except ValueError as e:  # Pillow's own limits: a text chunk that inflates too far
        raise DataError(f"{path}: {str(e)[:200]} (a decompression bomb?); remove the image or "
                        "replace it") from None
    except (OSError, UnidentifiedImageError):
        raise DataError(f"{path}: not a readable PNG or JPEG image; remove or replace it") from None


@dataclass(frozen=True)
class FolderSplit:
    paths: list[Path]
    labels: np.ndarray  # int64
    classes: list[str]
    size: tuple[int, int]  # (height, width)
    mode: str  # "L" or "RGB"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, *self.size)

    def take(self, index: np.ndarray) -> FolderSplit:
        return FolderSplit([self.paths[i] for i in index], self.labels[index], self.classes,
                           self.size, self.mode)

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 (C, H, W)."""
        path = self.paths[i]
        try:
            with _open(path) as image:
                image = image.convert(self.mode)
                if image.size != self.size[::-1]:
                    image = image.resize(self.size[::-1])
                pixels = np.array(image, dtype=np.uint8)  # writable: torch takes it as is
        except (OSError, ValueError):
            raise DataError(f"{path}: the image data is damaged; remove or replace it") from None
        return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    def batch(self, start: int, stop: int) -> np.ndarray:
        return np.stack([self.load(i) for i in range(start, min(stop, len(self)))])

    def sample(self, count: int) -> np.ndarray:
        """Up to ``count`` images spread evenly over the split (for the mean and std), at
        most ``STATS_IMAGES`` and ``STATS_BYTES`` of pixels (at least one image)."""
        count = min(count, len(self), STATS_IMAGES, max(1, STATS_BYTES // math.prod(self.shape)))
        return np.stack([self.load(i) for i in np.linspace(0, len(self) - 1, count).astype(int)])


def _scan(folder: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    if not folder.is_dir():
        raise DataError(f"{folder} not found; an image folder needs train/ and test/, each with "
                        "one sub-folder per class")
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not found:
        raise DataError(f"{folder} has no class folders; put each class's images in its own "
                        "sub-folder")
    if classes is not None and found != classes:
        raise DataError(f"{folder}: classes {found} differ from the training set's {classes}")
    paths, labels = [], []
    for label, name in enumerate(found):
        files = sorted(p for p in (folder / name).iterdir()  # regular files: no FIFO, no device
                       if p.suffix.lower() in SUFFIXES and p.is_file())
        for path in files:  # every header read before the first step: damage, bombs
            _open(path).close()
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{folder}: no .png or .jpg images in its class folders")
    return paths, labels, found


def load_folder(root: str | None, which: str, image_size=None) -> FolderSplit:
    if not root:
        raise DataError("data.name folder needs data.root, the folder holding train/ and test/")
    train = _scan(Path(root) / "train", None)
    paths, labels, classes = train if which == "train" else _scan(Path(root) / which, train[2])
    with _open(train[0][0]) as first:  # the first training image sets the mode and size
        mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
        size = tuple(image_size) if image_size else (first.height, first.width)
    return FolderSplit(paths, np.array(labels, dtype=np.int64), classes, size, mode)
