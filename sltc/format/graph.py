"""A network as the engines see it: ONNX nodes over numpy constants. Numpy and onnx only.

``Graph.from_onnx`` reads a checked ONNX model (a ticket's filled skeleton, an ONNX export;
``check.check_model`` first); ``folded`` evaluates every node whose inputs are all constants
once; ``run`` executes the nodes with ``ops.OPS``, any of them replaceable per node (the
``csr`` engine's sparse products); ``to_onnx`` writes the graph back, dense or with sparse
weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .check import Bounds, check_model, last_use
from .errors import GraphError
from .ops import NEVER_FOLDED, OPS, Node, sparse_to_dense

IR_VERSION = 8


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


@dataclass
class Graph:
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    input_name: str
    output_name: str
    input_shape: list[int]
    classes: int
    opset: int
    bounds: Bounds
    masked: frozenset[str] = field(default_factory=frozenset)  # gated weights, by tensor name

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto, tensors: dict | None = None,
                  masked=frozenset(), bounds: Bounds | None = None) -> Graph:
        """Read ``model`` (checked now, unless ``bounds`` says it was); placeholders
        (``data_location = EXTERNAL``) come from ``tensors``."""
        bounds = bounds or check_model(model)
        tensors = tensors or {}
        g = model.graph
        constants = {}
        for t in g.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                if t.name not in tensors:
                    raise GraphError(f"the graph's tensor {t.name!r} has no data")
                constants[t.name] = tensors[t.name]
            else:
                constants[t.name] = numpy_helper.to_array(t)
        for t in g.sparse_initializer:
            constants[t.values.name] = sparse_to_dense(t)
        nodes = []
        for proto in g.node:
            node = Node.read(proto)
            if proto.op_type == "Constant":
                constants[proto.output[0]] = OPS["Constant"](node)
            else:
                nodes.append(node)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        return cls(nodes, constants, bounds.input_name, g.output[0].name,
                   list(bounds.input_shape), bounds.classes, opset, bounds, frozenset(masked))

    @classmethod
    def from_ticket(cls, ticket) -> Graph:
        """A ticket's skeleton filled with its masked weights, drawn tensors and statistics."""
        return cls.from_onnx(ticket.skeleton, ticket.graph_tensors(), ticket.masked_tensors(),
                             ticket.bounds)

    # --- analysis ---------------------------------------------------------------------------

    def op_types(self) -> set[str]:
        return {n.op for n in self.nodes}

    def consumers(self) -> dict[str, list[int]]:
        """Value name -> indices of the nodes that read it."""
        out: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in node.inputs:
                out.setdefault(name, []).append(i)
        return out

    # --- execution --------------------------------------------------------------------------

    def folded(self) -> Graph:
        """Nodes whose inputs are all constants evaluated once (e.g. a weight's Transpose),
        but for ``NEVER_FOLDED`` ops; a constant goes once no node after it reads it."""
        constants, nodes, masked = dict(self.constants), [], set(self.masked)
        last = last_use([node.inputs for node in self.nodes])
        last[self.output_name] = len(self.nodes)
        kept = set()  # what the nodes left to run read
        with np.errstate(all="ignore"):
            for i, node in enumerate(self.nodes):
                if node.op in NEVER_FOLDED or not all(not name or name in constants
                                              for name in node.inputs):
                    nodes.append(node)
                    kept.update(node.inputs)
                    continue
                args = [constants[name] if name else None for name in node.inputs]
                for name, value in zip(node.outputs, _as_tuple(_apply(node, None, args)),
                                       strict=False):
                    constants[name] = np.require(value, requirements="C")  # a transpose: a copy
                if masked.intersection(node.inputs):  # e.g. a gated weight's Transpose
                    masked.update(node.outputs)
                for name in node.inputs:
                    if last.get(name, -1) <= i and name not in kept:
                        constants.pop(name, None)
        used = {name for node in nodes for name in node.inputs} | {self.output_name}
        return replace(self, nodes=nodes, masked=frozenset(masked & used),
                       constants={k: v for k, v in constants.items() if k in used})

    def run(self, x: np.ndarray, overrides: dict | None = None, shapes: dict | None = None,
            dtypes: dict | None = None) -> np.ndarray:
        """Execute every node in order, once the graph's bounds hold at this batch size;
        ``overrides`` maps a node name to a function of its inputs that replaces ``OPS``.
        Values are freed after their last use; ``shapes`` and ``dtypes``, when given,
        receive the shape and dtype of every value computed. A node that fails is a
        ``GraphError`` naming it."""
        self.bounds.batch(len(x))
        env = dict(self.constants)
        env[self.input_name] = np.asarray(x, dtype=np.float32)
        run_node = node_runner(overrides)

        def call(i, node, args):
            result = run_node(i, node, args)
            for name, value in zip(node.outputs, result, strict=False):
                if name and shapes is not None:
                    shapes[name] = np.shape(value)
                if name and dtypes is not None:
                    dtypes[name] = np.asarray(value).dtype
            return result

        if getattr(self, "_frees", None) is None:
            self._frees = last_reads([n.inputs for n in self.nodes],
                                     {*self.constants, self.output_name})
        with np.errstate(all="ignore"):
            execute(self.nodes, env, call, self._frees)
        return np.asarray(env[self.output_name], dtype=np.float32)

    # --- ONNX out ---------------------------------------------------------------------------

    def to_onnx(self, sparse: bool = False, metadata: dict | None = None) -> onnx.ModelProto:
        """The graph as an ONNX model; ``sparse``: each gated weight as a ``Constant`` with a
        ``sparse_value`` (int64 linear indices, which the full checker accepts)."""
        nodes, inits = [], []
        for name, array in self.constants.items():
            array = np.asarray(array)
            if sparse and name in self.masked:
                idx = np.flatnonzero(array).astype(np.int64)
                values = numpy_helper.from_array(array.ravel()[idx], f"{name}.values")
                indices = numpy_helper.from_array(idx, f"{name}.indices")
                tensor = helper.make_sparse_tensor(values, indices, list(array.shape))
                nodes.append(helper.make_node("Constant", [], [name], name=f"{name}.const",
                                              sparse_value=tensor))
            else:
                inits.append(numpy_helper.from_array(array, name))
        nodes += [node.proto for node in self.nodes]
        graph = helper.make_graph(
            nodes, "sltc",
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT,
                                           ["N", *self.input_shape])],
            [helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT,
                                           ["N", self.classes])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="sltc")
        model.ir_version = IR_VERSION
        helper.set_model_props(model, {k: str(v) for k, v in (metadata or {}).items()})
        return model


def execute(steps, env: dict, call, frees: list[list[str]] | None = None) -> dict:
    """The one executor of graphs, segments and plans. Each step in order (anything with
    ``inputs`` and ``outputs``, lists of value names) reads its inputs' values from ``env``
    (an empty name: None); ``call(i, step, args)`` returns its outputs, stored in ``env`` by
    name (an empty name: dropped); after step ``i``, the values named in ``frees[i]`` go."""
    for i, step in enumerate(steps):
        args = [env[name] if name else None for name in step.inputs]
        for name, value in zip(step.outputs, call(i, step, args), strict=False):
            if name:
                env[name] = value
        for name in frees[i] if frees else ():
            env.pop(name, None)
    return env


def last_reads(reads: list[list[str]], keep=frozenset()) -> list[list[str]]:
    """For each step (the value names it reads, in order), the values it is the last to
    read, less those in ``keep``: what ``execute`` frees after it."""
    frees: list[list[str]] = [[] for _ in reads]
    for name, i in last_use(reads).items():
        if name not in keep:
            frees[i].append(name)
    return frees


def node_runner(overrides: dict | None = None):
    """``execute``'s ``call`` for ONNX nodes: the op table's function, or the one
    ``overrides`` names for the node; its outputs as a tuple, any failure a ``GraphError``
    naming the node."""
    overrides = overrides or {}
    return lambda i, node, args: _as_tuple(_apply(node, overrides.get(node.name), args))


def _apply(node: Node, fn, args: list):
    """``fn(*args)``, or the op table's function for ``node``; any failure as one line
    naming the node."""
    try:
        return fn(*args) if fn is not None else OPS[node.op](node, *args)
    except Exception as e:  # noqa: BLE001 - numpy refusing the values: the graph's doing
        raise GraphError(f"{node.label()} fails at run time ({_first_line(e)})") from None


def _as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)
