"""The one check of every graph sltc loads (a ticket's skeleton, a CSR export's, an ONNX
file), whole, before a weight is made or an op runs: ``docs/format.md`` section 2.6 states
the rules. Numpy and onnx only.

``check_model`` reads the model's structure (opsets, nodes against the op table of
``ops.py``, tensors and where their data lives), then infers every value's shape and type at
batch 1 and 2 with the declared input: onnx's own inference for each node, with the values
of small tensors (shape arithmetic) computed by the op table as it goes, so that every
dimension is a number. It returns the graph's ``Bounds``, which check each further batch
size before the graph runs at it.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from .errors import GraphError
from .limits import (
    MAX_GRAPH_BYTES,
    MAX_GRAPH_NODES,
    MAX_GRAPH_VALUES,
    MAX_GRAPH_WORK,
    MAX_NODE_VALUES,
    MAX_RANK,
    MAX_SIDE,
    MAX_VALUE_ELEMENTS,
    MEMORY_ENV,
)
from .ops import DTYPES, NEVER_FOLDED, OPS, Node
from .skeleton import LOCATION, is_placeholder

OPSETS = (13, 21)  # the default domain's versions whose ops the table follows
DOMAINS = ("", "ai.onnx")
SMALL = 1 << 12  # values of at most this many elements are computed while inferring,
SMALL_WORK = 1 << 16  # by nodes of at most this much work (shape arithmetic)
# The cost model (format.md section 2.6, rule 8), measured on numpy's dense engine, the
# slowest, by benchmarks/graph_costs.py: a unit costs 0.2 to 15 ns (a float Add's visit; a
# 3x3 MaxPool's, numpy's batched 2x2 MatMul's), a BLAS multiply-add 0.04 ns (a float64 one
# for an integer product 0.2 ns), a node about 20 us however small.
MACS_PER_VISIT = 64  # a product's multiply-adds cost one element visit per 64
NODE_WORK = 1 << 10  # a node's own cost, in element visits
# temporaries the size of the output that numpy's function for the op holds while it runs,
# the output aside (measured with tracemalloc): sigmoid's 1 + exp(-x), Gelu's erf terms,
# softmax's exponentials
SCRATCH = {"Sigmoid": 1, "Gelu": 2, "Softmax": 1, "LayerNormalization": 2, "MaxPool": 1,
           "AveragePool": 2, "DequantizeLinear": 1}
# copies of the weights handed to onnxruntime or OpenVINO that each engine (and the ONNX
# export, with its parity check) holds beside the graph's own at their most: measured, see
# tests/test_attack.py::test_the_largest_accepted_graphs_keep_the_promise (openvino: about
# two per compiled batch size, two kept, beside its reader's copy)
WEIGHT_COPIES = {"dense": 0, "csr": 8, "ort": 3, "openvino": 6, "export": 2}
LIGHTER = {"csr": "use engine 'ort' or 'dense'", "ort": "use engine 'dense'",
           "openvino": "use engine 'ort' or 'dense'"}
ATTRIBUTE_KINDS = {AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING,
                   AttributeProto.INTS, AttributeProto.FLOATS, AttributeProto.TENSOR,
                   AttributeProto.SPARSE_TENSOR}
EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}


def _itemsize(dtype: int) -> int:
    return np.dtype(helper.tensor_dtype_to_np_dtype(dtype)).itemsize


def _name(node: onnx.NodeProto) -> str:
    label = node.name or (node.output[0] if node.output else "")
    return f"node {label!r} ({node.op_type})"


def _dims(dims, what: str, limit: int | None = MAX_VALUE_ELEMENTS) -> tuple[int, ...]:
    dims = tuple(int(d) for d in dims)
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise GraphError(f"{what} has dims {list(dims)[:MAX_RANK + 1]}: at most {MAX_RANK} "
                         "dimensions, none negative")
    if limit is not None and math.prod(dims) > limit:
        raise GraphError(f"{what} holds {math.prod(dims):,} numbers, over sltc's limit of "
                         f"{limit:,} for one value")
    return dims


# --- tensors and where their data lives --------------------------------------------------------

_FIELDS = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
           TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
           TensorProto.UINT64: "uint64_data"}  # every other type: int32_data


def _inline(t: onnx.TensorProto, count: int, what: str) -> None:
    """An inline tensor's data holds exactly ``count`` elements."""
    if t.HasField("raw_data"):
        ok = len(t.raw_data) == count * _itemsize(t.data_type)
    else:
        ok = len(getattr(t, _FIELDS.get(t.data_type, "int32_data"))) == count
    if not ok:
        raise GraphError(f"{what}: its data does not hold the {count:,} numbers its dims say")


def _tensor(t: onnx.TensorProto, what: str, external: list) -> tuple[int, tuple[int, ...]]:
    """A dense tensor's type and dims, its data checked or, if external, queued."""
    if t.data_type not in DTYPES:
        raise GraphError(f"{what}: element type {helper.tensor_dtype_to_string(t.data_type)} "
                         "is not one sltc runs (numbers and bools only)")
    dims = _dims(t.dims, what)
    if t.data_location == TensorProto.EXTERNAL:
        external.append((t, what))
    else:
        _inline(t, math.prod(dims), what)
    return t.data_type, dims


def _sparse(s: onnx.SparseTensorProto, what: str, external: list) -> tuple[int, tuple[int, ...]]:
    dtype, _ = _tensor(s.values, f"{what} values", external)
    _tensor(s.indices, f"{what} indices", external)
    dims = _dims(s.dims, what)
    if len(s.values.dims) != 1 or s.indices.data_type != TensorProto.INT64 or list(
            s.indices.dims) not in ([s.values.dims[0]], [s.values.dims[0], len(dims)]):
        raise GraphError(f"{what}: a sparse tensor needs 1-D values and int64 indices, one "
                         "(linear) or one per dimension for each value")
    return dtype, dims


def check_sparse(s: onnx.SparseTensorProto, what: str) -> None:
    """Every index of a sparse tensor (data in place) lies inside its dims."""
    dims = tuple(s.dims)
    indices = numpy_helper.to_array(s.indices)
    bound = math.prod(dims) if indices.ndim == 1 else np.asarray(dims)
    if indices.size and (indices.min() < 0 or (indices >= bound).any()):
        raise GraphError(f"{what}: an index lies outside its dims {list(dims)}")


def _external_path(folder: Path, entries: dict, what: str) -> Path:
    location = entries.get("location", "")
    parts = Path(location).parts
    if not location or os.path.isabs(location) or ".." in parts or "\\" in location or \
            "\0" in location:
        raise GraphError(f"{what}: external data {location!r} must be a file in the model's "
                         "folder, named relative to it")
    path = folder / location
    real, home = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, home]) != home:
        raise GraphError(f"{what}: external data {location!r} leads out of the model's folder")
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise GraphError(f"{what}: external data {location!r}: no such file in the model's "
                         "folder") from None
    if not stat.S_ISREG(mode):
        raise GraphError(f"{what}: external data {location!r} is not a regular file")
    return Path(real)


def _read_external(t: onnx.TensorProto, folder: Path | None, what: str) -> None:
    """Put the external data of ``t`` in place: only from a regular file inside ``folder``
    (the ONNX file's own), exactly the bytes its dims need."""
    entries = {e.key: e.value for e in t.external_data}
    if folder is None:
        raise GraphError(f"{what}: external data is not allowed in a skeleton (only its "
                         "placeholders); the tensor must be in the graph")
    if entries.get("location") == LOCATION or set(entries) - EXTERNAL_KEYS:
        raise GraphError(f"{what}: a placeholder or an unknown external data key in an ONNX "
                         "file; export the model from its ticket")
    path = _external_path(folder, entries, what)
    need = math.prod(t.dims) * _itemsize(t.data_type)
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries.get("length", need))
    except ValueError:
        raise GraphError(f"{what}: external data offset and length must be integers") from None
    if offset < 0 or length != need or offset + need > path.stat().st_size:
        raise GraphError(f"{what}: external data must hold its {need} bytes from offset "
                         f"{offset} inside {entries['location']!r}")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(need)
    if len(data) != need:
        raise GraphError(f"{what}: external data {entries['location']!r} changed while read")
    del t.external_data[:]
    t.data_location = TensorProto.DEFAULT
    t.raw_data = data


# --- structure ---------------------------------------------------------------------------------

def _opset(model: onnx.ModelProto) -> int:
    if model.functions or model.training_info:
        raise GraphError("the model holds functions or training graphs; sltc runs plain graphs")
    for entry in model.opset_import:
        if entry.domain not in DOMAINS:
            raise GraphError(f"the model imports the op domain {entry.domain!r}; only standard "
                             "ONNX ops are allowed")
    versions = [e.version for e in model.opset_import if e.domain in DOMAINS]
    if len(versions) != 1 or not OPSETS[0] <= versions[0] <= OPSETS[1]:
        raise GraphError(f"the model's opset {versions} is not one of {OPSETS[0]} to "
                         f"{OPSETS[1]}; export it at opset 17")
    return versions[0]


def _node(node: onnx.NodeProto, external: list) -> None:
    """``node`` against its entry of the op table: domain, op, counts, attributes."""
    if node.domain not in DOMAINS:
        raise GraphError(f"{_name(node)} is in the domain {node.domain!r}; only standard ONNX "
                         "ops are allowed")
    rules = OPS.get(node.op_type)
    if rules is None:
        raise GraphError(f"{_name(node)}: op {node.op_type} is not one sltc runs (docs/format.md "
                         "section 2.6 lists them; no control flow)")
    for what, count, (low, high) in (("inputs", len(node.input), rules.inputs),
                                     ("outputs", len(node.output), rules.outputs)):
        if not low <= count <= min(high, MAX_NODE_VALUES):
            raise GraphError(f"{_name(node)} has {count} {what}; {node.op_type} takes "
                             f"{low} to {min(high, MAX_NODE_VALUES)}")
    for a in node.attribute:
        rule = rules.attrs.get(a.name)
        if a.ref_attr_name or a.type not in ATTRIBUTE_KINDS or rule is None:
            raise GraphError(f"{_name(node)}: attribute {a.name!r} is not one sltc runs for "
                             f"{node.op_type}")
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if a.type != rule.kind or not rule.test(value):
            raise GraphError(f"{_name(node)}: attribute {a.name!r} must be {rule.says}")
        if a.type == AttributeProto.TENSOR:
            _tensor(a.t, f"{_name(node)} attribute {a.name!r}", external)
        elif a.type == AttributeProto.SPARSE_TENSOR:
            _sparse(a.sparse_tensor, f"{_name(node)} attribute {a.name!r}", external)


def _unique(names: list[str]) -> None:
    """No two initializers (sparse ones included) share a name: which would fill it?"""
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise GraphError(f"two initializers are named {twice!r}; each name is one tensor")


def _interface(model: onnx.ModelProto, sources: set[str], skeleton: bool
               ) -> tuple[onnx.ValueInfoProto, int]:
    """The one input (float32, any batch, a fixed image shape) and one output, declared
    float32 (N, classes) in a ``skeleton`` (a ticket's, a CSR export's: a file that says its
    classes), and so where declared at all in an ONNX file."""
    g = model.graph
    inputs = [i for i in g.input if i.name not in sources]
    if len(inputs) != 1 or len(g.output) != 1:
        raise GraphError("the graph must have exactly one input and one output")
    x, y = inputs[0], g.output[0]
    t = x.type.tensor_type
    dims = list(t.shape.dim)
    if t.elem_type != TensorProto.FLOAT or not 2 <= len(dims) <= 4 or dims[0].HasField(
            "dim_value") or not all(d.HasField("dim_value") and 0 < d.dim_value <= MAX_SIDE
                                    for d in dims[1:]):
        raise GraphError(f"the graph's input {x.name!r} must be float32 (N, C, H, W), (N, H, W) "
                         "or (N, D): a free batch dimension, then fixed sizes up to "
                         f"{MAX_SIDE}")
    out = y.type.tensor_type
    classes = 0
    if skeleton and not out.HasField("shape"):
        raise GraphError(f"a skeleton declares its output {y.name!r}: float32 (N, classes)")
    if out.elem_type not in (TensorProto.UNDEFINED, TensorProto.FLOAT):
        raise GraphError(f"the graph's output {y.name!r} must be declared float32")
    if out.HasField("shape"):
        dims_out = list(out.shape.dim)
        if len(dims_out) != 2 or dims_out[0].HasField("dim_value") or not dims_out[
                1].HasField("dim_value"):
            raise GraphError(f"the graph's output {y.name!r} must be declared (N, classes)")
        classes = dims_out[1].dim_value
    if y.name == x.name or y.name in sources:
        raise GraphError(f"no node writes the graph's output {y.name!r}")
    if not any(x.name in node.input for node in g.node):
        raise GraphError(f"the graph's input {x.name!r} is never read")
    return x, classes


# --- inference ---------------------------------------------------------------------------------

@dataclass
class Bounds:
    """A checked graph: what inference needs, and its sizes at batch 1. ``batch(n)`` infers
    the graph again at batch ``n`` (once per size) and refuses it where a value would grow
    faster than the batch or the bytes alive at once would pass ``MAX_GRAPH_BYTES``: its
    values and each node's scratch, and an engine's own copies of the weights it hands to
    onnxruntime (``WEIGHT_COPIES``)."""

    nodes: list
    opset: list  # the model's opset_import
    version: int  # of the default domain
    sources: dict  # name -> (dtype, dims) of every initializer, placeholder and sparse tensor
    values: dict  # name -> the value of each small initializer
    input_name: str
    input_shape: tuple[int, ...]
    classes: int = 0
    elements: dict = field(default_factory=dict)  # value -> elements at batch 1
    peak: dict = field(default_factory=dict)  # batch -> bytes alive at once
    work: int = 0  # at batch 1
    handed: int = 0  # bytes of the constants (once folded) that the other nodes read

    def infer(self, batch: int) -> dict:
        """Name -> (dtype, dims) of every value at ``batch``; sums up bytes and work."""
        return _infer(self, batch)

    def held(self, n: int, engine: str = "dense") -> int:
        """Bytes alive at once at batch ``n`` (inferred) in ``engine``."""
        return self.peak[n] + WEIGHT_COPIES[engine] * self.handed

    def batch(self, n: int, engine: str = "dense") -> None:
        if n not in self.peak:
            self.infer(n)
        if self.held(n, engine) > MAX_GRAPH_BYTES:
            copies = f" (with engine {engine!r}'s copies of its {self.handed:,} bytes of " \
                f"weights)" if WEIGHT_COPIES[engine] else ""
            fix = "use a smaller batch" if n > 1 else LIGHTER.get(engine, "make the graph smaller")
            fix += f"; for a model you trust, raise {MEMORY_ENV} (e.g. {MEMORY_ENV}=4GiB)"
            raise GraphError(f"at batch {n} the graph holds {self.held(n, engine):,} bytes at "
                             f"once{copies}, over sltc's limit of {MAX_GRAPH_BYTES:,}; {fix}")

    def batch_for(self, largest: int, engine: str = "dense") -> int:
        """The largest batch up to ``largest`` whose bytes alive at once in ``engine`` fit
        ``MAX_GRAPH_BYTES`` (at least 1)."""
        if 2 not in self.peak:
            self.infer(2)
        per_image = max(self.peak[2] - self.peak[1], 1)
        fixed = max(self.held(1, engine) - per_image, 0)
        batch = int(min(largest, max(1, (MAX_GRAPH_BYTES - fixed) // per_image)))
        while batch > 1:  # the peak may grow faster at larger batches (another node's)
            if batch not in self.peak:
                self.infer(batch)
            held = self.held(batch, engine)
            if held <= MAX_GRAPH_BYTES:
                break
            batch = min(batch - 1, batch * MAX_GRAPH_BYTES // held)
        return max(batch, 1)


def _type(dtype: int, dims) -> onnx.TypeProto:
    return helper.make_tensor_type_proto(dtype, list(dims))


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _products(node, ins: list, outs: list) -> tuple[int, int]:
    """A product's multiply-adds, and the elements of its im2col columns (a convolution's
    input patches, copied out): (0, 0) for any other node."""
    out = sum(math.prod(d) for d in outs)
    op = node.op_type
    if op in ("MatMul", "MatMulInteger") and ins[0]:
        return out * ins[0][-1], 0
    if op == "Gemm" and len(ins[0]) == 2:
        return out * ins[0][0 if _attrs(node).get("transA") else 1], 0
    if op in ("Conv", "ConvInteger") and len(ins[1]) == 4 and ins[1][0]:
        macs = out * math.prod(ins[1][1:])
        return macs, macs * _attrs(node).get("group", 1) // ins[1][0]
    return 0, 0


def _work(node, ins: list, outs: list) -> int:
    """Element visits (the elements of its inputs and outputs, a convolution's columns, a
    pool's windows; ``Shape`` and ``Size``: their outputs), its multiply-adds over
    ``MACS_PER_VISIT``, and ``NODE_WORK``."""
    out = sum(math.prod(d) for d in outs)
    macs, columns = _products(node, ins, outs)
    if node.op_type in ("Shape", "Size"):  # read the shape, not the elements
        visits = out
    else:
        visits = out + sum(math.prod(d) for d in ins) + columns
    if node.op_type in ("MaxPool", "AveragePool"):
        visits += out * math.prod(_attrs(node).get("kernel_shape", [1]))
    return visits + -(-macs // MACS_PER_VISIT) + NODE_WORK


def _scratch(node, ins: list, outs: list, out_bytes: int) -> int:
    """Bytes numpy's function for the node holds while it runs, its inputs and outputs
    aside: an integer product's float64 copies of its inputs, columns and sum (float64
    keeps it exact and fast), a float convolution's columns and sum, a pool's padded input,
    ``SCRATCH``'s temporaries, ``DynamicQuantizeLinear``'s two float copies of its input."""
    op = node.op_type
    _, columns = _products(node, ins, outs)
    out = sum(math.prod(d) for d in outs)
    if op in ("MatMulInteger", "ConvInteger"):
        return 8 * (sum(math.prod(d) for d in ins[:2]) + columns + out)
    itemsize = out_bytes // max(out, 1)
    if op == "Conv":
        return itemsize * (columns + out)
    if op == "DynamicQuantizeLinear":
        return 2 * 4 * math.prod(ins[0])
    if op in ("MaxPool", "AveragePool") and ins and len(ins[0]) == 4:
        pads = _attrs(node).get("pads", [0, 0, 0, 0])
        padded = ins[0][0] * ins[0][1] * (ins[0][2] + pads[0] + pads[2]) * (
            ins[0][3] + pads[1] + pads[3])
        return itemsize * padded + SCRATCH[op] * out_bytes
    return SCRATCH.get(op, 0) * out_bytes


def _computed(node, known: dict, shapes: dict):
    """The node's outputs computed by the op table from known inputs (``Shape`` and
    ``Size`` from known shapes), or None."""
    if node.op_type in ("Shape", "Size"):
        args = [np.broadcast_to(np.zeros((), np.float32), shapes[node.input[0]][1])]
    elif all(not name or name in known for name in node.input):
        args = [known[name] if name else None for name in node.input]
    else:
        return None
    with np.errstate(all="ignore"):
        out = OPS[node.op_type](Node.read(node), *args)
    return out if isinstance(out, tuple) else (out,)


def last_use(reads: list[list[str]]) -> dict[str, int]:
    """The step that last reads each value, given the value names each step reads in order:
    the one rule by which the bounds, the executor and folding free a value."""
    last: dict[str, int] = {}
    for i, names in enumerate(reads):
        last.update((name, i) for name in names if name)
    return last


def _infer(bounds: Bounds, batch: int) -> dict:
    shapes = dict(bounds.sources)
    shapes[bounds.input_name] = (TensorProto.FLOAT, (batch, *bounds.input_shape))
    known = dict(bounds.values)
    last = last_use([list(node.input) for node in bounds.nodes])
    alive = peak = _bytes(shapes, shapes)
    work = 0
    fixed = set(bounds.sources)  # the values a folded graph holds as constants
    handed = set()  # ... and those of them that the other nodes read
    for i, node in enumerate(bounds.nodes):
        where = _name(node)
        inferred = _node_types(node, bounds, shapes, known, where)
        ins = [shapes[name][1] for name in node.input if name]
        _fold(node, fixed, handed)
        outs = _output_shapes(node, inferred, shapes, bounds, batch, where)
        out_bytes = _bytes(shapes, [n for n in node.output if n])
        alive += out_bytes
        _rules(node, shapes, known, where)
        cost = _work(node, ins, outs)
        work += cost
        peak = max(peak, alive + _scratch(node, ins, outs, out_bytes))
        alive -= _bytes(shapes, [n for n in set(node.input) | set(node.output) if n and
                                 last.get(n, -1) <= i and n not in bounds.sources and
                                 n != bounds.input_name])
        if cost <= SMALL_WORK and all(math.prod(d) <= SMALL for d in outs):
            _know(node, known, shapes, where)
    bounds.peak[batch] = peak
    if batch == 1:
        bounds.work = work
        bounds.handed = _bytes(shapes, handed)
    return shapes


def _bytes(shapes: dict, names) -> int:
    """The bytes of the values ``names``, at their types and shapes in ``shapes``."""
    return sum(math.prod(shapes[n][1]) * _itemsize(shapes[n][0]) for n in names)


def _node_types(node, bounds: Bounds, shapes: dict, known: dict, where: str) -> dict:
    """The node checked by onnx against its schema, and its outputs' types as onnx infers
    them from its inputs' (and from the values of those known)."""
    from onnx import defs, shape_inference

    missing = [name for name in node.input if name and name not in shapes]
    if missing:
        raise GraphError(f"{where} reads {missing[0]!r}, which nothing before it defines")
    try:
        schema = defs.get_schema(node.op_type, bounds.version, "")
        onnx.checker.check_node(node, _context(bounds.opset))
        types = {name: _type(*shapes[name]) for name in node.input if name}
        data = {name: numpy_helper.from_array(known[name], name) for name in node.input
                if name in known}
        return shape_inference.infer_node_outputs(schema, node, types, data,
                                                  opset_imports=bounds.opset)
    except Exception as e:  # noqa: BLE001 - onnx's checker and inference errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise GraphError(f"{where}: {first}") from None


def _fold(node, fixed: set, handed: set) -> None:
    """Folding's view of the node: its outputs join the constants (``fixed``) where it
    folds, else the constants it reads are handed to an engine (``handed``)."""
    if node.op_type not in NEVER_FOLDED and all(n in fixed for n in node.input if n):
        fixed.update(n for n in node.output if n)
    else:
        handed.update(n for n in node.input if n in fixed)


def _output_shapes(node, inferred: dict, shapes: dict, bounds: Bounds, batch: int,
                   where: str) -> list[tuple[int, ...]]:
    """Each output's inferred type and shape, recorded in ``shapes``: known before running,
    of a type the table knows, within the limits, and no faster than the batch grows."""
    outs = []
    for name in node.output:
        if not name:
            continue
        if name in shapes:
            raise GraphError(f"{where} writes {name!r}, which is already defined")
        t = inferred.get(name, onnx.TypeProto()).tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not t.HasField("shape") or None in dims or t.elem_type not in DTYPES:
            raise GraphError(f"{where}: the shape of {name!r} cannot be inferred before "
                             "running (a size that depends on the input's values?)")
        if batch == 1:
            dims = _dims(dims, f"{where} output {name!r}")
        elif math.prod(dims) > batch * bounds.elements[name]:
            raise GraphError(f"{where}: {name!r} grows faster than the batch: "
                             f"{math.prod(dims):,} numbers at batch {batch}, "
                             f"{bounds.elements[name]:,} at batch 1")
        shapes[name] = (t.elem_type, _dims(dims, f"{where} output {name!r}", None))
        outs.append(shapes[name][1])
    return outs


def _rules(node, shapes: dict, known: dict, where: str) -> None:
    rules = OPS[node.op_type]
    for index, rank in rules.ranks.items():
        if len(shapes[node.input[index]][1]) != rank:
            raise GraphError(f"{where}: input {index} must have rank {rank} (2-D windows only)")
    for index in rules.scalars:
        if index < len(node.input) and node.input[index] and \
                math.prod(shapes[node.input[index]][1]) != 1:
            raise GraphError(f"{where}: input {index} must hold one element (the input's zero "
                             "point is per tensor)")
    if rules.rule is not None:
        dtypes = [np.dtype(helper.tensor_dtype_to_np_dtype(shapes[n][0])) if n else None
                  for n in node.input]
        broken = rules.rule(dtypes, [known.get(n) for n in node.input])
        if broken:
            raise GraphError(f"{where}: {broken}")


def _know(node, known: dict, shapes: dict, where: str) -> None:
    """Record the node's small outputs, as the op table computes them; their shapes must be
    the ones inference gave."""
    try:
        out = _computed(node, known, shapes)
    except Exception as e:  # noqa: BLE001 - numpy refusing the constants
        raise GraphError(f"{where} fails on its constant inputs ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:200]})") from None
    if out is None:
        return
    for name, value in zip(node.output, out, strict=False):
        if name:
            value = np.asarray(value)
            if value.shape != shapes[name][1]:
                raise GraphError(f"{where} computes {name!r} with shape {list(value.shape)}, "
                                 f"not the {list(shapes[name][1])} ONNX gives it")
            known[name] = value.astype(helper.tensor_dtype_to_np_dtype(shapes[name][0]),
                                       copy=False)


def _context(opset) -> onnx.checker.C.CheckerContext:
    # onnx 1.23 has no public CheckerContext (nor DEFAULT_CONTEXT); check_node needs one
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = onnx.IR_VERSION
    ctx.opset_imports = {e.domain: e.version for e in opset}
    return ctx


# --- the whole check ---------------------------------------------------------------------------

def check_model(model: onnx.ModelProto, input_shape=None, classes: int | None = None,
                folder: Path | None = None) -> Bounds:
    """Every rule of ``docs/format.md`` section 2.6 on ``model``, or a ``GraphError`` naming
    the first one broken. ``input_shape`` and ``classes``: what the file's meta (a ticket's,
    a CSR manifest's) says the graph takes and gives. ``folder``: an ONNX file's own folder,
    the one place its external data may come from (it is read into the model here); without
    it, only placeholders (section 2.4) may be external."""
    g = model.graph
    opset = _opset(model)
    _check_size(g)
    sources = _sources(g, folder)
    x, declared = _interface(model, set(sources), classes is not None)
    shape = tuple(d.dim_value for d in x.type.tensor_type.shape.dim[1:])
    if input_shape is not None and list(shape) != list(input_shape):
        raise GraphError(f"the graph's input is N x {list(shape)} but the file says its input "
                         f"is N x {list(input_shape)}")
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer
              if t.name in sources and not is_placeholder(t) and math.prod(t.dims) <= SMALL}
    bounds = Bounds(list(g.node), list(model.opset_import), opset, sources, values, x.name,
                    shape)
    shapes = bounds.infer(1)
    bounds.elements = {name: math.prod(dims) for name, (_, dims) in shapes.items()}
    if g.output[0].name not in shapes:
        raise GraphError(f"no node writes the graph's output {g.output[0].name!r}")
    _check_costs(bounds)
    bounds.classes = _classes(shapes, g.output[0].name, declared, classes)
    bounds.batch(2)
    return bounds


def _check_size(g) -> None:
    """At most ``MAX_GRAPH_NODES`` nodes and ``MAX_GRAPH_VALUES`` node inputs and outputs."""
    if len(g.node) > MAX_GRAPH_NODES:
        raise GraphError(f"the graph has {len(g.node):,} nodes, over sltc's limit of "
                         f"{MAX_GRAPH_NODES:,}")
    references = sum(len(node.input) + len(node.output) for node in g.node)
    if references > MAX_GRAPH_VALUES:
        raise GraphError(f"the graph's nodes have {references:,} inputs and outputs together, "
                         f"over sltc's limit of {MAX_GRAPH_VALUES:,}")


def _sources(g, folder: Path | None) -> dict:
    """The type and shape of every initializer, sparse ones included, each checked, with
    external data read from ``folder`` (the only place it may come from) and sparse
    tensors checked once the bytes they claim are known to fit."""
    external: list = []
    sources = {}
    _unique([t.name for t in g.initializer] + [s.values.name for s in g.sparse_initializer])
    for t in g.initializer:
        what = f"initializer {t.name!r}"
        if is_placeholder(t) and folder is None:
            sources[t.name] = (t.data_type, _dims(t.dims, what))
            if t.data_type != TensorProto.FLOAT:
                raise GraphError(f"{what}: a placeholder is float32")
            continue
        sources[t.name] = _tensor(t, what, external)
    sparse = [(s, f"sparse initializer {s.values.name!r}") for s in g.sparse_initializer]
    for s, what in sparse:
        sources[s.values.name] = _sparse(s, what, external)
    for node in g.node:
        _node(node, external)
    if _bytes(sources, sources) > MAX_GRAPH_BYTES:
        raise GraphError(f"the graph's tensors hold more than {MAX_GRAPH_BYTES:,} bytes")
    for t, what in external:
        _read_external(t, folder, what)
    for s, what in sparse:
        check_sparse(s, what)
    for node in g.node:
        for a in node.attribute:
            if a.type == AttributeProto.SPARSE_TENSOR:
                check_sparse(a.sparse_tensor, f"{_name(node)} attribute {a.name!r}")
    return sources


def _check_costs(bounds: Bounds) -> None:
    """The bytes alive at once and the work for one image, within sltc's limits."""
    if bounds.peak[1] > MAX_GRAPH_BYTES:
        raise GraphError(f"the graph holds {bounds.peak[1]:,} bytes at once for one image, over "
                         f"sltc's limit of {MAX_GRAPH_BYTES:,}; for a model you trust, raise "
                         f"{MEMORY_ENV} (e.g. {MEMORY_ENV}=4GiB)")
    if bounds.work > MAX_GRAPH_WORK:
        raise GraphError(f"the graph takes {bounds.work:,} units of work per image (element "
                         f"visits, multiply-adds / {MACS_PER_VISIT}, {NODE_WORK:,} a node), "
                         f"over sltc's limit of {MAX_GRAPH_WORK:,}")


def _classes(shapes: dict, output: str, declared: int, classes: int | None) -> int:
    """The class count the graph's output gives for one image: float32 (1, classes), as
    declared (0: undeclared) and as the file says (``classes``, where given)."""
    out_type, out = shapes[output]
    found = out[-1] if len(out) == 2 and out[0] == 1 else 0
    if out_type != TensorProto.FLOAT or not found or declared not in (0, found):
        raise GraphError(f"the graph computes its output as {list(out)} "
                         f"({helper.tensor_dtype_to_string(out_type)}) for one image; it must "
                         f"be float32 (1, {declared or 'classes'})")
    if classes is not None and found != classes:
        raise GraphError(f"the graph computes {found} classes but the file says {classes}")
    return found
