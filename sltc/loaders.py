"""Batches on the device for training and evaluation: float32 pixels in [0, 1] and labels.

``SplitBatches`` serves an in-memory split (uint8 on the device, scaled per batch);
``LoaderBatches`` wraps a torch ``DataLoader`` (an image folder streamed from disk with
workers, or a user's own loaders). Training order comes from the portable generator,
``(seed, "train/order/epoch<e>")``, so a run and its resumed twin see the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, Split
from .errors import SltcError
from .seeding import permutation

EVAL_BATCH = 1000
CROP_PAD = 4


def augment(x: torch.Tensor, kinds) -> torch.Tensor:
    """Random crop after zero padding by 4 and horizontal flip, per image, from torch's RNG
    (seeded per epoch by the trainer)."""
    b, _, h, w = x.shape
    if "flip" in kinds:
        flip = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if "crop" in kinds:
        padded = F.pad(x, (CROP_PAD,) * 4).permute(0, 2, 3, 1)
        dy, dx = (torch.randint(0, 2 * CROP_PAD + 1, (b,), device=x.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    return x.contiguous()


class SplitBatches:
    """An in-memory split, held as uint8 on the device."""

    def __init__(self, split: Split, batch_size: int, device, augment_with=()):
        self.x = torch.from_numpy(np.ascontiguousarray(split.images)).to(device)
        self.y = torch.from_numpy(split.labels).to(device)
        self.batch_size, self.augment = batch_size, tuple(augment_with)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def _scaled(self, idx) -> torch.Tensor:
        return self.x[idx].to(torch.float32) / 255.0

    def epoch(self, seed: int, epoch: int):
        """The epoch's batches in the portable order, augmented."""
        order = torch.from_numpy(permutation(seed, f"train/order/epoch{epoch}", len(self.y)))
        order = order.to(self.y.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self._scaled(idx)
            yield (augment(x, self.augment) if self.augment else x), self.y[idx]

    def __iter__(self):
        for i in range(0, len(self.y), self.batch_size):
            yield self._scaled(slice(i, i + self.batch_size)), self.y[i:i + self.batch_size]


class LoaderBatches:
    """A torch ``DataLoader`` of ``(x, y)``: batches moved to the device (``x`` as float32)."""

    def __init__(self, loader, device, augment_with=()):
        self.loader, self.device, self.augment = loader, device, tuple(augment_with)

    def __len__(self) -> int:
        return len(self.loader)

    def _moved(self, batches, train: bool):
        try:
            for x, y in batches:
                x = x.to(self.device, non_blocking=True)
                x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.float()
                yield (augment(x, self.augment) if train and self.augment else x), \
                    y.to(self.device, non_blocking=True)
        except SltcError as e:  # a worker's error arrives with its traceback: keep the last line
            raise type(e)(str(e).strip().splitlines()[-1].split("Error: ", 1)[-1]) from None

    def epoch(self, seed: int, epoch: int):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return self._moved(self.loader, train=True)

    def __iter__(self):
        return self._moved(self.loader, train=False)


class PortableOrder(torch.utils.data.Sampler):
    """Each epoch's order from the portable generator, as ``SplitBatches`` uses."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(permutation(self.seed, f"train/order/epoch{self.epoch}", self.n).tolist())

    def __len__(self) -> int:
        return self.n


class FolderImages(torch.utils.data.Dataset):
    """A ``FolderSplit`` as a torch dataset of uint8 images."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.split.load(i)), int(self.split.labels[i])


@dataclass
class Data:
    """What a run trains and evaluates on, and what the ticket records about it."""

    train: object  # SplitBatches or LoaderBatches
    val: object
    test: object
    input_shape: tuple[int, ...]
    classes: int
    mean: float
    std: float


def _batches(split, batch_size: int, device, cfg, seed: int, train: bool):
    if isinstance(split, Split):
        return SplitBatches(split, batch_size, device, cfg.augment if train else ())
    loader = torch.utils.data.DataLoader(
        FolderImages(split), batch_size=batch_size, num_workers=cfg.workers,
        sampler=PortableOrder(len(split), seed) if train else None,
        pin_memory=torch.device(device).type == "cuda", persistent_workers=False)
    return LoaderBatches(loader, device, cfg.augment if train else ())


def data_for(config, dataset: Dataset, device) -> Data:
    """Batches of a configured dataset: training in ``data.batch_size``, evaluation in 1000s."""
    cfg = config.data
    return Data(_batches(dataset.train, cfg.batch_size, device, cfg, config.seed, True),
                _batches(dataset.val, EVAL_BATCH, device, cfg, config.seed, False),
                _batches(dataset.test, EVAL_BATCH, device, cfg, config.seed, False),
                dataset.input_shape, dataset.classes, dataset.mean, dataset.std)
