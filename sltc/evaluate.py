"""Scoring torch models: devices, tensors, accuracy (a ticket is scored by its graph:
``sltc.runtime.validate.evaluate``)."""

from __future__ import annotations

import torch

from .format.errors import SltcError


def resolve_device(device: str, world=None) -> torch.device:
    """``auto``, ``cpu`` or ``cuda``; under torchrun on CUDA, this rank's GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise SltcError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SltcError("--device cuda: this torch build sees no CUDA device; use --device cpu")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", world.local_rank if world is not None else 0)


@torch.no_grad()
def accuracy(model, batches, on_batch=lambda n: None) -> float:
    """Top-1 accuracy over ``(x, y)`` batches with the model in eval mode (deterministic
    gates); NaN for no examples. ``on_batch(n)`` after each batch of ``n`` images."""
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
        on_batch(len(y))
    return correct / total if total else float("nan")
