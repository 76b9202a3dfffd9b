"""One run over several processes, as torchrun starts them: gloo on CPU, nccl on CUDA.

Every rank holds the whole model and takes its share of every global batch (see
``share``); gate gradients are summed over ranks after each rank weighted its loss by
its share of the batch, so a step is the single-process step up to float summation
order. BatchNorm running statistics are taken from rank 0 at the end of each epoch.
Rank 0 alone writes metrics, checkpoints and the ticket.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .format.errors import SltcError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensors) -> None:
        """Sum each tensor over the ranks, in place."""
        if self.size > 1:
            for t in tensors:
                dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def broadcast_(self, tensors) -> None:
        """Rank 0's values of each tensor on every rank, in place."""
        if self.size > 1:
            for t in tensors:
                dist.broadcast(t, src=0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def share(indices: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's part of one global batch: every ``size``-th index from ``rank``."""
    return indices[world.rank::world.size]


def init(device: str) -> World:
    """The world torchrun describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``), or one process; values torchrun would not set are a ``SltcError``."""
    size = _env_int("WORLD_SIZE", 1, 1)
    if size == 1:
        return World()
    if "RANK" not in os.environ:
        raise SltcError(f"WORLD_SIZE={size} but RANK is not set: torchrun sets both; start "
                        "with torchrun --nproc_per_node N -m sltc discover ..., or unset "
                        "WORLD_SIZE to run in one process")
    rank, local_rank = _env_int("RANK", 0, 0, size - 1), _env_int("LOCAL_RANK", 0, 0, size - 1)
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if cuda else "gloo",
                                    timeout=datetime.timedelta(minutes=30))
        except (RuntimeError, ValueError) as e:
            raise SltcError(f"cannot join the torchrun group ({e}); start with torchrun "
                            "--nproc_per_node N -m sltc discover ...") from None
    return World(rank, size, local_rank)


MAX_WORLD = 1 << 16  # processes of one run


def _env_int(name: str, default: int, low: int, high: int = MAX_WORLD) -> int:
    """The environment variable ``name`` as an integer in ``[low, high]`` (``default`` where
    unset), or a ``SltcError`` naming it."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise SltcError(f"{name}={text[:40]!r}: expected an integer in [{low}, {high}] (torchrun "
                        "sets it); unset WORLD_SIZE, RANK and LOCAL_RANK to run in one "
                        "process, or start with torchrun")
    return value


def close(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
