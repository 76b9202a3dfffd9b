"""Scoring torch models: devices, tensors, accuracy; ``sltc eval`` of a ticket rebuilt in torch."""

from __future__ import annotations

from pathlib import Path

import torch

from .data import recorded_test_set
from .errors import SltcError
from .ticket import Ticket


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


def evaluate_ticket(path: str | Path, data_root: str | None = None, device: str = "auto",
                    progress=None) -> dict:
    from .loaders import evaluation_batches
    from .progress import QUIET
    from .rebuild import model_from_ticket

    ticket = Ticket.load(path)
    dev = resolve_device(device)
    model = model_from_ticket(ticket).to(dev)
    data = ticket.meta["config"]["data"]
    test = recorded_test_set(data, ticket.meta["config"]["seed"], data_root,
                             ticket.meta["input_shape"], ticket.meta["classes"])
    batches = evaluation_batches(test, dev)
    with (progress or QUIET).task("test set", len(batches)) as task:
        acc = accuracy(model, batches, lambda n: task.advance(images=n))
    return {"test_accuracy": acc, "recorded_accuracy":
            ticket.meta.get("test_accuracy"), "sparsity": ticket.sparsity(), "examples": len(test)}
