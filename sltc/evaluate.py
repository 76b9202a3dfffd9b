"""Scoring torch models: devices, tensors, accuracy; ``sltc eval`` of a ticket rebuilt in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import Split, recorded_test_set
from .errors import SltcError
from .ticket import Ticket


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SltcError("--device cuda: this torch build sees no CUDA device; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise SltcError(f"--device {device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def to_tensors(split: Split, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.array(split.images)).to(device=device, dtype=torch.float32) / 255.0
    return x, torch.from_numpy(split.labels).to(device)


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy with the model in eval mode (deterministic gates)."""
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(y), batch))
    return correct / len(y)


def evaluate_ticket(path: str | Path, data_root: str | None = None, device: str = "auto") -> dict:
    from .rebuild import model_from_ticket

    ticket = Ticket.load(path)
    dev = resolve_device(device)
    model = model_from_ticket(ticket).to(dev)
    data = ticket.meta["config"]["data"]
    test = recorded_test_set(data, ticket.meta["config"]["seed"], data_root)
    x, y = to_tensors(test, dev)
    return {"test_accuracy": accuracy(model, x, y), "recorded_accuracy":
            ticket.meta.get("test_accuracy"), "sparsity": ticket.sparsity(), "examples": len(y)}
