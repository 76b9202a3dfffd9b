"""``sltc eval``: a ticket rebuilt into torch and scored on its dataset's test set."""

from __future__ import annotations

from pathlib import Path

from .data import recorded_test_set
from .ticket import Ticket


def evaluate_ticket(path: str | Path, data_root: str | None = None, device: str = "auto") -> dict:
    from .discover import accuracy, resolve_device, to_tensors
    from .rebuild import model_from_ticket

    ticket = Ticket.load(path)
    dev = resolve_device(device)
    model = model_from_ticket(ticket).to(dev)
    data = ticket.meta["config"]["data"]
    test = recorded_test_set(data, ticket.meta["config"]["seed"], data_root)
    x, y = to_tensors(test, dev)
    return {"test_accuracy": accuracy(model, x, y), "recorded_accuracy":
            ticket.meta.get("test_accuracy"), "sparsity": ticket.sparsity(), "examples": len(y)}
