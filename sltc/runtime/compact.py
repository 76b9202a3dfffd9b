"""``--compact``: drop the units and channels a ticket pruned whole; outputs are unchanged.

Works on chains (every node reads the previous one's output and constants) of linear
layers, convolutions, ReLU, max-pooling and flattening, with scalar normalisation
before the first layer. Anything else is refused with the node that stops it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sltc.format.errors import SltcError
from sltc.format.graph import Graph
from sltc.format.ops import LAYERS, layer_inputs

PASS_THROUGH = ("Relu", "MaxPool", "Identity")
REFUSE = "--compact works on chains of linear/conv layers, ReLU, max-pooling and flatten"


def _chain_input(graph: Graph, node) -> str:
    live = [name for name in node.inputs if name and name not in graph.constants]
    if len(live) != 1:
        raise SltcError(f"{REFUSE}; node {node.name or node.op!r} ({node.op}) has "
                        f"{len(live)} inputs that are not constants; export without --compact")
    return live[0]


def _layer(graph: Graph, node, keep, last: bool) -> tuple[dict, np.ndarray]:
    """New constants for one layer reading channels ``keep``; returns them and its kept outputs."""
    c = graph.constants
    weight, bias_name = layer_inputs(node)
    w = c[weight]
    if node.op == "MatMul":  # w: (in, out)
        rows = w[keep] if keep is not None else w
        out = np.arange(w.shape[1]) if last else np.flatnonzero(np.abs(rows).sum(0))
        out = out if len(out) else np.arange(1)  # one (all-zero) unit keeps the graph valid
        return {weight: np.ascontiguousarray(rows[:, out])}, out
    if node.op == "Gemm" and (node.attrs.get("transA", 0) or not node.attrs.get("transB", 0)):
        raise SltcError(f"{REFUSE}; Gemm {node.name!r} is not x @ W.T; export without --compact")
    if node.op == "Conv" and node.attrs.get("group", 1) != 1:
        raise SltcError(f"{REFUSE}; Conv {node.name!r} is grouped; export without --compact")
    cols = w[:, keep] if keep is not None else w  # w: (out, in, ...)
    out = np.arange(w.shape[0]) if last else np.flatnonzero(
        np.abs(cols.reshape(len(w), -1)).sum(1))
    out = out if len(out) else np.arange(1)
    new = {weight: np.ascontiguousarray(cols[out])}
    if bias_name is not None:
        bias = c[bias_name]
        if not last and np.any(bias[np.setdiff1d(np.arange(len(bias)), out)]):
            raise SltcError(f"{REFUSE}; layer {node.name!r} has a non-zero bias on a pruned unit; "
                            "export without --compact")
        new[bias_name] = bias[out]
    return new, out


def compact(graph: Graph) -> Graph:
    """``graph`` (folded) with pruned units and channels removed from its layers."""
    graph = graph.folded()
    shapes: dict = {}
    graph.run(np.zeros((1, *graph.input_shape), np.float32), shapes=shapes)
    last_layer = max((i for i, n in enumerate(graph.nodes) if n.op in LAYERS), default=-1)
    constants, keep, current = dict(graph.constants), None, graph.input_name
    for i, node in enumerate(graph.nodes):
        if _chain_input(graph, node) != current:
            raise SltcError(f"{REFUSE}; node {node.name or node.op!r} branches off the chain")
        if node.op in LAYERS:
            new, keep = _layer(graph, node, keep, i == last_layer)
            constants.update(new)
        elif node.op == "Flatten" and keep is not None:
            c, *rest = shapes[node.inputs[0]][1:]
            per = int(np.prod(rest)) if rest else 1
            keep = (keep[:, None] * per + np.arange(per)[None, :]).ravel()
        elif node.op in ("Sub", "Div", "Mul", "Add") and keep is None and all(
                graph.constants[n].size == 1 for n in node.inputs if n in graph.constants):
            pass  # scalar normalisation before the first layer
        elif node.op not in PASS_THROUGH + ("Flatten",):
            raise SltcError(f"{REFUSE}; node {node.name or node.op!r} ({node.op}) stops it; "
                            "export without --compact")
        current = node.outputs[0]
    return replace(graph, constants=constants)
