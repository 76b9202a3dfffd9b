"""A network as the engines see it: ONNX nodes over numpy constants. Numpy and onnx only.

``Graph.from_onnx`` reads any ONNX model (a ticket's filled skeleton, an ONNX export);
``folded`` evaluates every node whose inputs are all constants once; ``run`` executes
the nodes with ``ops.OPS``, any of them replaceable per node (the ``csr`` engine's
sparse products); ``to_onnx`` writes the graph back, dense or with sparse weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sltc.errors import SltcError
from sltc.limits import MAX_SIDE

from .ops import OPS

IR_VERSION = 8


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    proto: onnx.NodeProto | None = None

    @classmethod
    def make(cls, op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> Node:
        """A new node (for graph rewrites), with its ONNX proto."""
        proto = helper.make_node(op, inputs, outputs, name=name, **attrs)
        return cls(op, name, inputs, outputs, attrs, proto)


def _sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices)
    dense = np.zeros(int(np.prod(sparse.dims)), dtype=values.dtype)
    if indices.ndim == 2:  # coordinates, one row per value
        indices = np.ravel_multi_index(indices.T, tuple(sparse.dims))
    dense[indices] = values
    return dense.reshape(tuple(sparse.dims))


def _attr_value(a: onnx.AttributeProto):
    if a.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type == onnx.AttributeProto.SPARSE_TENSOR:
        return _sparse_to_dense(a.sparse_tensor)
    value = helper.get_attribute_value(a)
    return value.decode() if isinstance(value, bytes) else value


def _constant_value(attrs: dict) -> np.ndarray:
    for key, dtype in (("value", None), ("sparse_value", None), ("value_float", np.float32),
                       ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise SltcError(f"Constant node with unsupported attributes {sorted(attrs)}")


@dataclass
class Graph:
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    input_name: str
    output_name: str
    input_shape: list[int]
    classes: int
    opset: int
    masked: frozenset[str] = field(default_factory=frozenset)  # gated weights, by tensor name

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto, tensors: dict | None = None,
                  masked=frozenset()) -> Graph:
        """Read ``model``; placeholders (``data_location = EXTERNAL``) come from ``tensors``."""
        tensors = tensors or {}
        g = model.graph
        constants = {}
        for t in g.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                if t.name not in tensors:
                    raise SltcError(f"the graph's tensor {t.name!r} has no data")
                constants[t.name] = tensors[t.name]
            else:
                constants[t.name] = numpy_helper.to_array(t)
        for t in g.sparse_initializer:
            constants[t.values.name] = _sparse_to_dense(t)
        nodes = []
        for proto in g.node:
            attrs = {a.name: _attr_value(a) for a in proto.attribute}
            if proto.op_type == "Constant":
                constants[proto.output[0]] = _constant_value(attrs)
                continue
            nodes.append(Node(proto.op_type, proto.name, list(proto.input), list(proto.output),
                              attrs, proto))
        inputs = [i for i in g.input if i.name not in constants]
        if len(inputs) != 1 or len(g.output) != 1:
            raise SltcError("the graph must have exactly one input and one output")
        in_dims = inputs[0].type.tensor_type.shape.dim
        out_dims = g.output[0].type.tensor_type.shape.dim
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
        graph = cls(nodes, constants, inputs[0].name, g.output[0].name,
                    [d.dim_value for d in in_dims[1:]], out_dims[-1].dim_value if out_dims else 0,
                    opset, frozenset(masked))
        graph.check()
        return graph

    def check(self) -> None:
        """Every node reads only values defined before it, and the output is written."""
        defined = {self.input_name, "", *self.constants}
        for node in self.nodes:
            missing = [i for i in node.inputs if i not in defined]
            if missing:
                raise SltcError(f"node {node.name or node.op!r} reads {missing[0]!r}, which "
                                "nothing before it defines")
            defined.update(node.outputs)
        if self.output_name not in defined:
            raise SltcError(f"no node writes the graph's output {self.output_name!r}")

    def check_classifier(self) -> None:
        """What a deployable model's graph must also be: a batch of fixed-shape images in,
        a fixed number of class scores out."""
        if not 1 <= len(self.input_shape) <= 3 or not all(0 < d <= MAX_SIDE
                                                          for d in self.input_shape):
            raise SltcError(f"the graph's input must have a fixed shape (N, C, H, W) or (N, "
                            f"D), got N x {self.input_shape}")
        if not self.classes > 0:
            raise SltcError("the graph's output must have a fixed number of classes")

    @classmethod
    def from_ticket(cls, ticket) -> Graph:
        """A ticket's skeleton filled with its masked weights, drawn tensors and statistics."""
        return cls.from_onnx(ticket.skeleton, ticket.graph_tensors(), ticket.masked_tensors())

    # --- analysis ---------------------------------------------------------------------------

    def op_types(self) -> set[str]:
        return {n.op for n in self.nodes}

    def check_ops(self, engine: str) -> None:
        missing = sorted(self.op_types() - set(OPS))
        if missing:
            raise SltcError(f"engine {engine!r} cannot run ONNX op {missing[0]!r} (used by this "
                            "model); use --engine ort")

    def consumers(self) -> dict[str, list[int]]:
        """Value name -> indices of the nodes that read it."""
        out: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in node.inputs:
                out.setdefault(name, []).append(i)
        return out

    # --- execution --------------------------------------------------------------------------

    def folded(self) -> Graph:
        """Nodes whose inputs are all constants evaluated once (e.g. a weight's Transpose)."""
        constants, nodes, masked = dict(self.constants), [], set(self.masked)
        for node in self.nodes:
            if all(not name or name in constants for name in node.inputs):
                args = [constants[name] if name else None for name in node.inputs]
                for name, value in zip(node.outputs, _as_tuple(OPS[node.op](node, *args)),
                                       strict=False):
                    constants[name] = np.require(value, requirements="C")  # a transpose: a copy
                if masked.intersection(node.inputs):  # e.g. a gated weight's Transpose
                    masked.update(node.outputs)
            else:
                nodes.append(node)
        used = {name for node in nodes for name in node.inputs} | {self.output_name}
        return replace(self, nodes=nodes, masked=frozenset(masked & used),
                       constants={k: v for k, v in constants.items() if k in used})

    def run(self, x: np.ndarray, overrides: dict | None = None, shapes: dict | None = None,
            dtypes: dict | None = None) -> np.ndarray:
        """Execute every node in order; ``overrides`` maps a node name to a function of its
        inputs that replaces ``OPS``. Values are freed after their last use; ``shapes`` and
        ``dtypes``, when given, receive the shape and dtype of every value computed."""
        overrides = overrides or {}
        env = dict(self.constants)
        env[self.input_name] = np.asarray(x, dtype=np.float32)
        last = self._last_use()
        for i, node in enumerate(self.nodes):
            args = [env[name] if name else None for name in node.inputs]
            fn = overrides.get(node.name)
            result = fn(*args) if fn is not None else OPS[node.op](node, *args)
            for name, value in zip(node.outputs, _as_tuple(result), strict=False):
                if name:
                    env[name] = value
                    if shapes is not None:
                        shapes[name] = np.shape(value)
                    if dtypes is not None:
                        dtypes[name] = np.asarray(value).dtype
            for name in last.get(i, ()):
                env.pop(name, None)
        return np.asarray(env[self.output_name], dtype=np.float32)

    def _last_use(self) -> dict[int, list[str]]:
        if getattr(self, "_last", None) is None:
            last: dict[str, int] = {}
            for i, node in enumerate(self.nodes):
                for name in node.inputs:
                    if name and name not in self.constants:
                        last[name] = i
            last.pop(self.output_name, None)
            self._last = {}
            for name, i in last.items():
                self._last.setdefault(i, []).append(name)
        return self._last

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


def _as_tuple(result) -> tuple:
    return result if isinstance(result, tuple) else (result,)
