"""Batches on the device for training and evaluation: float32 pixels in [0, 1] and labels.

``SplitBatches`` serves an in-memory split (uint8 on the device, scaled per batch);
``LoaderBatches`` wraps a torch ``DataLoader`` (an image folder streamed from disk with
workers, or a user's own loaders). Training order comes from the portable generator,
``(seed, "train/order/epoch<e>")``, so a run and its resumed twin see the same batches.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import Dataset, Split
from .distributed import World, share
from .format.errors import SltcError
from .format.seeding import permutation

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


def portable_batches(n: int, batch_size: int, seed: int, epoch: int, world: World,
                     device=None):
    """Index tensors (on ``device``) of an epoch's batches in the portable order, ``(seed,
    "train/order/epoch<e>")``; under several processes, this rank's share of each."""
    order = torch.from_numpy(permutation(seed, f"train/order/epoch{epoch}", n)).to(device)
    for i in range(math.ceil(n / batch_size)):
        yield share(order[i * batch_size:(i + 1) * batch_size], world)


class SplitBatches:
    """An in-memory split, held as uint8 on the device."""

    def __init__(self, split: Split, batch_size: int, device, augment_with=()):
        self.x = torch.from_numpy(np.require(split.images, requirements=["C", "W"])).to(device)
        self.y = torch.from_numpy(split.labels).to(device)
        self.batch_size, self.augment = batch_size, tuple(augment_with)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def _scaled(self, idx) -> torch.Tensor:
        return self.x[idx].to(torch.float32) / 255.0

    def epoch(self, seed: int, epoch: int, world: World = World()):
        """The epoch's batches in the portable order, augmented; under several processes,
        this rank's share of each global batch."""
        for idx in portable_batches(len(self.y), self.batch_size, seed, epoch, world,
                                    self.y.device):
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

    def count(self, limit: int, on_batch=lambda: None) -> int:
        """The batches of one pass, at most ``limit``, counted by reading them (for a
        loader without a length)."""
        return sum(on_batch() or 1 for _ in itertools.islice(self.loader, limit))

    def _moved(self, batches, train: bool):
        try:
            for x, y in batches:
                x = x.to(self.device, non_blocking=True)
                x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.float()
                yield (augment(x, self.augment) if train and self.augment else x), \
                    y.to(self.device, non_blocking=True).long()
        except SltcError as e:  # a worker's error arrives with its traceback: keep the last line
            raise type(e)(str(e).strip().splitlines()[-1].split("Error: ", 1)[-1]) from None

    def epoch(self, seed: int, epoch: int, world: World = World()):
        sampler = getattr(self.loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif world.size > 1:
            raise SltcError("DataLoaders given in Python run in one process; start without "
                            "torchrun, or use data.name: folder")
        return self._moved(self.loader, train=True)

    def __iter__(self):
        return self._moved(self.loader, train=False)


class PortableBatches(torch.utils.data.Sampler):
    """Batches of indices in each epoch's portable order (``SplitBatches``'), this rank's
    share of each global batch: a ``batch_sampler`` for a ``DataLoader``."""

    def __init__(self, n: int, batch_size: int, seed: int, world: World = World()):
        self.n, self.batch_size, self.seed, self.world, self.epoch = n, batch_size, seed, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for idx in portable_batches(self.n, self.batch_size, self.seed, self.epoch, self.world):
            yield idx.tolist()

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


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


def training_batches(split, batch_size: int, device, cfg, seed: int, world: World):
    """A training split in each epoch's portable order, augmented as configured."""
    if isinstance(split, Split):
        return SplitBatches(split, batch_size, device, cfg.augment)
    loader = torch.utils.data.DataLoader(
        FolderImages(split), batch_sampler=PortableBatches(len(split), batch_size, seed, world),
        num_workers=cfg.workers, pin_memory=torch.device(device).type == "cuda")
    return LoaderBatches(loader, device, cfg.augment)


def evaluation_batches(split, device, workers: int = 0):
    """Any split (in memory, or an image folder read by ``workers``) in order, in batches
    of ``EVAL_BATCH``."""
    if isinstance(split, Split):
        return SplitBatches(split, EVAL_BATCH, device)
    loader = torch.utils.data.DataLoader(FolderImages(split), batch_size=EVAL_BATCH,
                                         num_workers=workers,
                                         pin_memory=torch.device(device).type == "cuda")
    return LoaderBatches(loader, device)


def data_for(config, dataset: Dataset, device, world: World = World()) -> Data:
    """Batches of a configured dataset: training in ``data.batch_size`` (the global batch,
    shared by the ranks), evaluation in 1000s."""
    cfg = config.data
    return Data(training_batches(dataset.train, cfg.batch_size, device, cfg, config.seed, world),
                evaluation_batches(dataset.val, device, cfg.workers),
                evaluation_batches(dataset.test, device, cfg.workers),
                dataset.input_shape, dataset.classes, dataset.mean, dataset.std)
