"""Between torch models and tickets: freeze a model into a ticket, rebuild one from it.

The network's structure goes into the ticket once, as a skeleton traced by torch's
own ONNX exporter from the plain (masked) twin of the gated model; that graph is what the
ticket computes. A torch model and a skeleton that meet (at freezing, at a rebuild) are
compared on a probe input, and a mismatch is refused.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from . import config as config_mod
from .format import skeleton
from .format.errors import ConfigError, SltcError, TicketError
from .format.limits import MAX_SKELETON_BYTES
from .format.records import DrawnTensor, LayerSpec
from .format.seeding import NORMAL_STD
from .format.ticket import Ticket, check_skeleton
from .layers import gate, gated_layers, tensor_rule, to_plain
from .models import PYTHON_PREFIX, build_model

OPSET = 17
PROBE_TOLERANCE = 1e-4  # of the largest logit: float32 sums in another order, nothing more


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
    layers, gate_masks = {}, {}
    for m in gated_layers(model):
        mask = masks[m.name].cpu().numpy()
        gate_masks[m.name] = mask if m.granularity != "neuron" else mask.reshape(
            mask.shape[0], -1)[:, 0].copy()
        layers[m.name] = LayerSpec.from_json({**m.spec(), "tensor": f"{m.name}.weight"})
    rules = list(tensor_rule(model))
    tensors = [DrawnTensor(r.name, tuple(t.shape), NORMAL_STD) for r, t in rules
               if r.kind == "normal"]
    # copies: the ticket owns its statistics (the model's buffers change after freezing)
    extras = {r.name: t.detach().cpu().numpy().copy() for r, t in rules
              if r.kind == "statistic"}
    regenerable = {s.tensor for s in layers.values()} | {t.name for t in tensors} | set(extras)
    graph = trace_skeleton(model, masks, data.input_shape, regenerable)
    size = len(skeleton.serialize(graph))
    if size > MAX_SKELETON_BYTES:
        raise SltcError(f"this network cannot be a ticket: its graph and the tensors it keeps "
                        f"(its own parameters and buffers) take {size:,} bytes, over the "
                        f"{MAX_SKELETON_BYTES:,} a ticket's skeleton may hold; make them smaller")
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
    try:
        ticket.bounds = check_skeleton(graph, ticket.model_meta())
        check_probe(model, ticket)
    except TicketError as e:
        raise SltcError(f"this network cannot be a ticket: {e}") from None
    return ticket


def _restore_fixed(model: nn.Module, graph: onnx.ModelProto) -> None:
    """The network's own parameters (``fixed`` by ``tensor_rule``: a layer scale, a position
    embedding it built) as the ticket stored them in its skeleton, not as this build of the
    network made them (a constructor that draws from torch's generator differs each time)."""
    stored = {t.name: t for t in graph.graph.initializer if not skeleton.is_placeholder(t)}
    with torch.no_grad():
        for rule, tensor in tensor_rule(model):
            if rule.kind == "fixed" and isinstance(tensor, nn.Parameter) and rule.name in stored:
                value = onnx.numpy_helper.to_array(stored[rule.name])
                if value.shape == tuple(tensor.shape):
                    tensor.copy_(torch.from_numpy(value.copy()))


def check_probe(model: nn.Module, ticket: Ticket) -> None:
    """``model`` (in eval mode, as the ticket would run) against the ticket's skeleton in
    sltc's numpy engine, on two uniform random images: the logits must agree."""
    from .format.graph import Graph

    x = np.random.default_rng(0).random((2, *ticket.model_meta().input_shape), dtype=np.float32)
    want = Graph.from_ticket(ticket).run(x)
    device = next(model.parameters(), torch.zeros(())).device
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(x).to(device)).float().cpu().numpy()
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else math.inf
    if not diff <= PROBE_TOLERANCE * max(float(np.abs(want).max()), 1e-12):
        raise TicketError(f"the torch model and the ticket's skeleton compute different logits "
                          f"on a probe input (max difference {diff:.3g}); the ticket's graph is "
                          "the network, and this model is not it")


def model_from_ticket(ticket: Ticket, model: nn.Module | None = None) -> nn.Module:
    """A torch model running exactly the ticket's masked network (eval mode), for what needs
    torch modules. A registry network is built from ``meta.config``; a user's own
    (``model.arch: python:...``) is never imported on a ticket's say-so: pass ``model``, the
    plain module, which is gated here. Either is refused unless it computes what the
    ticket's skeleton computes on a probe input."""
    info = ticket.record()
    try:
        config = config_mod.from_dict(info.config, "ticket")  # imports no code it names
    except ConfigError as e:
        raise TicketError(f"cannot rebuild the torch model from the ticket's config ({e})") from None
    arch = config.model.arch
    if arch.startswith(PYTHON_PREFIX) and model is None:
        raise TicketError(f"the ticket's network is a user's own ({arch}) and sltc imports no "
                          "code a ticket names: pass the module, model_from_ticket(ticket, "
                          "model=MyNet(...))")
    try:
        m = info.model
        model = gate(model, config) if model is not None else build_model(
            config, m.input_shape, m.classes, m.preprocessing["mean"], m.preprocessing["std"],
            training=False)[1]
    except Exception as e:  # noqa: BLE001 - any failure here means a ticket we cannot rebuild
        raise TicketError(f"cannot rebuild the torch model from the ticket's config ({e})") from None
    state = {k: torch.from_numpy(v) for k, v in ticket.extras.items()}
    for name, buf in model.named_buffers():
        if name in state:
            buf.copy_(state[name])
    _restore_fixed(model, ticket.skeleton)
    built = {m.name: list(m.weight.shape) for m in gated_layers(model)}
    table = {s.name: list(s.shape) for s in ticket.layers.values()}
    if built != table:
        name = next(iter(sorted(n for n in built.keys() | table.keys()
                                if built.get(n) != table.get(n))))
        raise TicketError(f"the ticket's config builds layer {name!r} as {built.get(name)} but "
                          f"its layer table says {table.get(name)}; the ticket is inconsistent")
    for m in gated_layers(model):
        m.fixed_mask = torch.from_numpy(ticket.weight_mask(m.name).copy()).float()
    check_probe(model, ticket)
    return model.eval()
