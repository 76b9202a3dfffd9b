"""Between torch models and tickets: freeze a model into a ticket, rebuild one from it.

The network's structure goes into the ticket once, as a skeleton traced by torch's
own ONNX exporter from the plain (masked) twin of the gated model.
"""

from __future__ import annotations

import io
import math
import warnings

import onnx
import torch
from torch import nn

from . import config as config_mod
from . import skeleton
from .errors import SltcError, TicketError
from .layers import gated_layers, tensor_rule, to_plain
from .models import build_model
from .seeding import NORMAL_STD
from .ticket import Ticket

OPSET = 17


def trace_skeleton(model: nn.Module, masks: dict, input_shape, regenerable: set[str]) -> onnx.ModelProto:
    """The skeleton of ``model``: its ONNX graph (torch's TorchScript-based exporter, no
    constant folding, so every tensor keeps its qualified name) with the tensors named in
    ``regenerable`` turned into placeholders."""
    plain = to_plain(model, masks).cpu().eval()
    x = torch.full((2, *input_shape), 0.5)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(plain, (x,), buf, dynamo=False, export_params=True,
                              do_constant_folding=False, opset_version=OPSET,
                              input_names=[skeleton.INPUT], output_names=[skeleton.OUTPUT],
                              dynamic_axes={skeleton.INPUT: {0: "N"}, skeleton.OUTPUT: {0: "N"}},
                              training=torch.onnx.TrainingMode.EVAL)
    except Exception as e:  # noqa: BLE001 - any exporter failure: the network is not exportable
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SltcError(f"torch's ONNX exporter cannot trace this network ({first}); use "
                        "standard torch ops in forward()") from None
    model_proto = onnx.load_from_string(buf.getvalue())
    model_proto.producer_name, model_proto.producer_version = "sltc", ""
    return skeleton.strip(model_proto, regenerable)


def ticket_from_model(model, masks: dict, config, data, test_accuracy: float) -> Ticket:
    """Freeze ``model`` with ``masks`` into a ticket (gate-shaped masks are stored)."""
    layers, gate_masks = [], {}
    for m in gated_layers(model):
        mask = masks[m.name].cpu().numpy()
        gate_masks[m.name] = mask if m.granularity != "neuron" else mask.reshape(
            mask.shape[0], -1)[:, 0].copy()
        layers.append({**m.spec(), "tensor": f"{m.name}.weight"})
    rules = list(tensor_rule(model))
    tensors = [{"name": r.name, "shape": list(t.shape), "init": "normal", "std": NORMAL_STD}
               for r, t in rules if r.kind == "normal"]
    # copies: the ticket owns its statistics (the model's buffers change after freezing)
    extras = {r.name: t.detach().cpu().numpy().copy() for r, t in rules
              if r.kind == "statistic"}
    regenerable = {s["tensor"] for s in layers} | {t["name"] for t in tensors} | set(extras)
    graph = trace_skeleton(model, masks, data.input_shape, regenerable)
    ticket = Ticket(config.seed, layers, gate_masks, extras, tensors=tensors, skeleton=graph)
    ticket.meta = {
        "config": config.to_dict(),
        "input_shape": list(data.input_shape),
        "classes": data.classes,
        "preprocessing": {"input": "float32 pixels scaled to [0, 1]", "mean": data.mean,
                          "std": data.std},
        "method": config.gates.method,
        "sparsity": ticket.sparsity(),
        "test_accuracy": None if math.isnan(test_accuracy) else test_accuracy,  # no test set
    }
    return ticket


def model_from_ticket(ticket: Ticket) -> nn.Module:
    """A torch model running exactly the ticket's masked network (eval mode)."""
    meta = ticket.meta
    try:
        config = config_mod.from_dict(meta["config"], "ticket")
        pre = meta["preprocessing"]
        model = build_model(config, meta["input_shape"], meta["classes"], pre["mean"], pre["std"])
    except Exception as e:  # noqa: BLE001 - any failure here means a ticket we cannot rebuild
        raise TicketError(f"cannot rebuild the torch model from the ticket's config ({e})") from None
    state = {k: torch.from_numpy(v) for k, v in ticket.extras.items()}
    for name, buf in model.named_buffers():
        if name in state:
            buf.copy_(state[name])
    built = {m.name: list(m.weight.shape) for m in gated_layers(model)}
    table = {s["name"]: list(s["shape"]) for s in ticket.layers}
    if built != table:
        name = next(iter(sorted(n for n in built.keys() | table.keys()
                                if built.get(n) != table.get(n))))
        raise TicketError(f"the ticket's config builds layer {name!r} as {built.get(name)} but "
                          f"its layer table says {table.get(name)}; the ticket is inconsistent")
    for m in gated_layers(model):
        m.fixed_mask = torch.from_numpy(ticket.weight_mask(m.name).copy()).float()
    return model.eval()
