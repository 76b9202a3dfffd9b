"""Between torch models and tickets: freeze a model into a ticket, rebuild one from it."""

from __future__ import annotations

import torch
from torch import nn

from . import config as config_mod
from .errors import TicketError
from .layers import GatedConv2d, GatedLinear, gated_layers
from .models import Normalize
from .ticket import Ticket


def graph_of(model: nn.Sequential) -> list[dict]:
    """The layer graph in order, for runtimes that do not import torch."""
    ops = []
    for name, m in model.named_children():
        if isinstance(m, Normalize):
            ops.append({"op": "normalize", "mean": m.mean, "std": m.std})
        elif isinstance(m, nn.Flatten):
            ops.append({"op": "flatten"})
        elif isinstance(m, GatedLinear):
            ops.append({"op": "linear", "name": m.name})
        elif isinstance(m, GatedConv2d):
            ops.append({"op": "conv2d", "name": m.name, "padding": m.padding})
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            ops.append({"op": "batchnorm", "name": name, "eps": m.eps})
        elif isinstance(m, nn.ReLU):
            ops.append({"op": "relu"})
        elif isinstance(m, nn.MaxPool2d):
            ops.append({"op": "maxpool", "kernel": int(m.kernel_size)})
        else:
            raise TypeError(f"layer {name} ({type(m).__name__}) has no graph op")
    return ops


def _bn_extras(model: nn.Module) -> dict:
    return {f"{name}.{stat}": getattr(m, stat).detach().cpu().numpy()
            for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for stat in ("running_mean", "running_var")}


def ticket_from_model(model, masks: dict, config, dataset, test_accuracy: float) -> Ticket:
    """Freeze ``model`` with ``masks`` into a ticket (gate-shaped masks are stored)."""
    layers, gate_masks = [], {}
    for m in gated_layers(model):
        mask = masks[m.name].cpu().numpy()
        gate_masks[m.name] = mask if m.granularity != "neuron" else mask.reshape(
            mask.shape[0], -1)[:, 0].copy()
        layers.append(m.spec())
    ticket = Ticket(config.seed, layers, gate_masks, _bn_extras(model))
    ticket.meta = {
        "config": config.to_dict(),
        "input_shape": list(dataset.input_shape),
        "classes": dataset.classes,
        "preprocessing": {"input": "float32 pixels scaled to [0, 1]", "mean": dataset.mean,
                          "std": dataset.std},
        "graph": graph_of(model),
        "method": config.gates.method,
        "sparsity": ticket.sparsity(),
        "test_accuracy": test_accuracy,
    }
    return ticket


def model_from_ticket(ticket: Ticket) -> nn.Module:
    """A torch model running exactly the ticket's masked network (eval mode)."""
    from .discover import build_model

    meta = ticket.meta
    try:
        config = config_mod.from_dict(meta["config"], "ticket")
        pre = meta["preprocessing"]
        model = build_model(config, meta["input_shape"], meta["classes"], pre["mean"], pre["std"])
    except Exception as e:  # noqa: BLE001 - any failure here means a ticket we cannot rebuild
        raise TicketError(f"cannot rebuild the model from the ticket's config ({e})") from None
    state = {k: torch.from_numpy(v) for k, v in ticket.extras.items()}
    for name, buf in model.named_buffers():
        if name in state:
            buf.copy_(state[name])
    for m in gated_layers(model):
        if m.name not in ticket.masks:
            raise TicketError(f"the ticket has no mask for layer {m.name!r}")
        m.fixed_mask = torch.from_numpy(ticket.weight_mask(m.name).copy()).float()
    return model.eval()
