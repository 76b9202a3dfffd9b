"""Hostile tickets, CSR exports and ONNX files with valid checksums: the graphs of
``tests/test_attack.py``. Every builder returns an ONNX model with the skeleton's interface
(``input`` float32 [N, 1, 28, 28] in, ``logits`` float32 [N, 10] out, unless it attacks
the interface), so one model is written as a ticket's skeleton, a CSR export's skeleton and
an ONNX file alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors import safe_open
from safetensors.numpy import save_file

from sltc.format import skeleton
from sltc.format.ticket import Ticket

BIG = 1 << 40  # elements no machine holds
SECRET = b"user secret: never in an export\n"
MARK_MODULE = "sltc_attack_mark"  # leaves a mark file when imported (test_attack writes it)


def vi(name: str, dims, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


def const(name: str, value, dtype=None) -> onnx.NodeProto:
    array = np.asarray(value, dtype=dtype)
    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(array, name))


def model(nodes, inits=(), *, sparse=(), inputs=None, outputs=None, opsets=None,
          functions=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "attack", inputs or [vi("input", ["N", 1, 28, 28])],
                              outputs or [vi("logits", ["N", 10])], list(inits),
                              sparse_initializer=list(sparse))
    m = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 17)],
                          functions=list(functions))
    m.ir_version = 8
    return m


def head(extra: str | None = None) -> tuple[list, list]:
    """``logits = Flatten(input) @ W`` (+ the sum of ``extra``, so that the attack is on the
    path to the output, not dead code)."""
    w = numpy_helper.from_array(np.full((784, 10), 0.01, np.float32), "head.w")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "head.w"], ["scores" if extra else "logits"],
                              name="head")]
    if extra:
        nodes += [helper.make_node("ReduceSum", [extra], ["extra.sum"], name="extra.sum",
                                   keepdims=0),
                  helper.make_node("Add", ["scores", "extra.sum"], ["logits"], name="attach")]
    return nodes, [w]


def attached(*nodes, inits=(), extra="bomb", **kw) -> onnx.ModelProto:
    """``nodes`` computing ``extra``, added to a working classifier head."""
    h, w = head(extra)
    return model([*nodes, *h], [*w, *inits], **kw)


def _int64(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


# --- control flow -----------------------------------------------------------------------------

def _loop_body() -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [vi("i", [], TensorProto.INT64), vi("cond_in", [], TensorProto.BOOL), vi("v_in", [])],
        [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [])],
        [numpy_helper.from_array(np.float32(1), "one")])


def loop_forever():
    return attached(const("trips", np.iinfo(np.int64).max, np.int64), const("go", True, bool),
                    const("v0", 0.0, np.float32),
                    helper.make_node("Loop", ["trips", "go", "v0"], ["bomb"], name="loop",
                                     body=_loop_body()))


def loop_from_input():
    return attached(helper.make_node("ReduceSum", ["input"], ["s"], name="s", keepdims=0),
                    const("scale", 1e12, np.float32),
                    helper.make_node("Mul", ["s", "scale"], ["t"], name="t"),
                    helper.make_node("Cast", ["t"], ["trips"], name="trips", to=TensorProto.INT64),
                    const("go", True, bool), const("v0", 0.0, np.float32),
                    helper.make_node("Loop", ["trips", "go", "v0"], ["bomb"], name="loop",
                                     body=_loop_body()))


def if_branch():
    branch = helper.make_graph([const("out", 1.0, np.float32)], "branch", [], [vi("out", [])])
    return attached(helper.make_node("ReduceSum", ["input"], ["s"], name="s", keepdims=0),
                    const("zero", 0.0, np.float32),
                    helper.make_node("Greater", ["s", "zero"], ["c"], name="c"),
                    helper.make_node("If", ["c"], ["bomb"], name="if", then_branch=branch,
                                     else_branch=branch))


def scan():
    body = helper.make_graph([helper.make_node("Add", ["acc", "x"], ["acc_out"]),
                              helper.make_node("Identity", ["acc_out"], ["y"])], "body",
                             [vi("acc", [28]), vi("x", [28])], [vi("acc_out", [28]), vi("y", [28])])
    return attached(helper.make_node("Flatten", ["input"], ["rows"], name="rows", axis=3),
                    helper.make_node("Reshape", ["rows", "shape"], ["seq"], name="seq"),
                    const("acc0", np.zeros(28), np.float32),
                    helper.make_node("Scan", ["acc0", "seq"], ["last", "bomb"], name="scan",
                                     body=body, num_scan_inputs=1),
                    inits=[_int64("shape", [-1, 28])])


# --- shape and size bombs ---------------------------------------------------------------------

def expand():
    return attached(const("one", 1.0, np.float32),
                    helper.make_node("Expand", ["one", "shape"], ["bomb"], name="expand"),
                    inits=[_int64("shape", [1 << 20, 1 << 20])])


def constant_of_shape():
    return attached(helper.make_node("ConstantOfShape", ["shape"], ["bomb"], name="fill",
                                     value=numpy_helper.from_array(np.ones(1, np.float32))),
                    inits=[_int64("shape", [BIG])])


def tile():
    return attached(helper.make_node("Tile", ["input", "repeats"], ["bomb"], name="tile"),
                    inits=[_int64("repeats", [1, 1, 1 << 17, 1 << 17])])


def pad():
    return attached(helper.make_node("Pad", ["input", "pads"], ["bomb"], name="pad"),
                    inits=[_int64("pads", [0, 0, 1 << 20, 1 << 20, 0, 0, 1 << 20, 1 << 20])])


def resize():
    return attached(helper.make_node("Resize", ["input", "", "scales"], ["bomb"], name="resize"),
                    inits=[numpy_helper.from_array(np.array([1, 1, 1 << 12, 1 << 12], np.float32),
                                                   "scales")])


def range_():
    return attached(const("start", 0.0, np.float32), const("limit", float(BIG), np.float32),
                    const("delta", 1.0, np.float32),
                    helper.make_node("Range", ["start", "limit", "delta"], ["bomb"], name="range"))


def reshape():
    return attached(helper.make_node("Reshape", ["input", "shape"], ["bomb"], name="reshape"),
                    inits=[_int64("shape", [BIG, -1])])


def sparse_initializer():
    values = numpy_helper.from_array(np.ones(1, np.float32), "bomb")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "bomb.indices")
    return attached(sparse=[helper.make_sparse_tensor(values, indices, [1 << 20, 1 << 20])])


def sparse_constant():
    values = numpy_helper.from_array(np.ones(1, np.float32), "v")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "i")
    return attached(helper.make_node("Constant", [], ["bomb"], name="sparse",
                                     sparse_value=helper.make_sparse_tensor(values, indices, [BIG])))


def _batch_size():
    return [helper.make_node("Shape", ["input"], ["shape"], name="shape"),
            helper.make_node("Gather", ["shape", "zero"], ["n"], name="n", axis=0)]


def batch_threshold():
    """Harmless at batch 1, 2**40 numbers from batch 2 on: 1 + (N / 2) * 2**40."""
    return attached(*_batch_size(),
                    helper.make_node("Div", ["n", "two"], ["half"], name="half"),
                    helper.make_node("Mul", ["half", "big"], ["grown"], name="grown"),
                    helper.make_node("Add", ["grown", "one"], ["count"], name="count"),
                    helper.make_node("Unsqueeze", ["count", "zero1"], ["dims"], name="dims"),
                    helper.make_node("ConstantOfShape", ["dims"], ["bomb"], name="fill"),
                    inits=[_int64("zero", 0), _int64("two", 2), _int64("big", BIG),
                           _int64("one", 1), _int64("zero1", [0])])


def batch_squared():
    """N x (N * 2**16) numbers: grows with the square of the batch."""
    return attached(*_batch_size(),
                    helper.make_node("Mul", ["n", "wide"], ["cols"], name="cols"),
                    helper.make_node("Unsqueeze", ["n", "zero1"], ["rows1"], name="rows1"),
                    helper.make_node("Unsqueeze", ["cols", "zero1"], ["cols1"], name="cols1"),
                    helper.make_node("Concat", ["rows1", "cols1"], ["dims"], name="dims", axis=0),
                    helper.make_node("ConstantOfShape", ["dims"], ["bomb"], name="fill"),
                    inits=[_int64("zero", 0), _int64("wide", 1 << 16), _int64("zero1", [0])])


def work():
    """A product of (N, 4096, 4096) by (4096, 4096): 2**36 multiply-adds per image (2**30
    units of work, besides its element visits), from tensors that each fit the limits."""
    return attached(const("one", 1.0, np.float32),
                    helper.make_node("Expand", ["one", "shape"], ["big"], name="expand"),
                    helper.make_node("ConstantOfShape", ["square"], ["w"], name="w",
                                     value=numpy_helper.from_array(np.ones(1, np.float32))),
                    helper.make_node("MatMul", ["big", "w"], ["bomb"], name="product"),
                    inits=[_int64("shape", [1, 4096, 4096]), _int64("square", [4096, 4096])])


def many_bytes():
    """Twelve values of 2**27 float32 (512 MiB) each, all alive at once: each fits, together
    they do not."""
    nodes = [helper.make_node("ConstantOfShape", ["dims"], ["v0"], name="v0",
                              value=numpy_helper.from_array(np.ones(1, np.float32)))]
    for i in range(1, 12):
        nodes.append(helper.make_node("Add", [f"v{i - 1}", "v0"], [f"v{i}"], name=f"v{i}"))
    nodes.append(helper.make_node("Sum", [f"v{i}" for i in range(12)], ["bomb"], name="sum"))
    return attached(*nodes, inits=[_int64("dims", [1 << 27])])


# --- foreign ops and domains ------------------------------------------------------------------

def selu():
    return attached(helper.make_node("Selu", ["input"], ["bomb"], name="selu"))


def nonzero():
    return attached(helper.make_node("NonZero", ["input"], ["idx"], name="nonzero"),
                    helper.make_node("Cast", ["idx"], ["bomb"], name="cast", to=TensorProto.FLOAT))


def custom_domain():
    return attached(helper.make_node("FusedGemm", ["input", "input"], ["bomb"], name="fused",
                                     domain="com.microsoft"),
                    opsets=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def local_function():
    body = [helper.make_node("Relu", ["x"], ["y"])]
    fn = helper.make_function("local", "Bomb", ["x"], ["y"], body,
                              [helper.make_opsetid("", 17)])
    return attached(helper.make_node("Bomb", ["input"], ["bomb"], name="call", domain="local"),
                    opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                    functions=[fn])


def old_opset():
    return attached(helper.make_node("Softmax", ["input"], ["bomb"], name="softmax"),
                    opsets=[helper.make_opsetid("", 9)])


def string_cast():
    return attached(helper.make_node("Cast", ["input"], ["text"], name="text",
                                     to=TensorProto.STRING),
                    helper.make_node("Cast", ["text"], ["bomb"], name="back", to=TensorProto.FLOAT))


def integer_division_by_zero():
    """Integers divided by zero: SIGFPE in a C++ runtime."""
    return attached(helper.make_node("Cast", ["input"], ["ints"], name="ints", to=TensorProto.INT64),
                    helper.make_node("Div", ["ints", "zero"], ["q"], name="divide"),
                    helper.make_node("Cast", ["q"], ["bomb"], name="back", to=TensorProto.FLOAT),
                    inits=[_int64("zero", 0)])


# --- integer products -------------------------------------------------------------------------

def _as_uint8(name: str, source: str = "input") -> list:
    """``source`` (pixels in [0, 1]) as uint8 in [0, 255], named ``name``."""
    return [const(f"{name}.scale", 255.0, np.float32),
            helper.make_node("Mul", [source, f"{name}.scale"], [f"{name}.wide"], name=f"{name}.wide"),
            helper.make_node("Cast", [f"{name}.wide"], [name], name=name, to=TensorProto.UINT8)]


def conv_integer_channel_zero_point():
    """A ConvInteger whose input zero point has one value per channel (ONNX: a scalar)."""
    return attached(helper.make_node("Concat", ["input", "input"], ["two"], name="two", axis=1),
                    *_as_uint8("x", "two"),
                    helper.make_node("ConvInteger", ["x", "w", "x.zero"], ["y"], name="conv"),
                    helper.make_node("Cast", ["y"], ["bomb"], name="back", to=TensorProto.FLOAT),
                    inits=[numpy_helper.from_array(np.ones((1, 2, 3, 3), np.int8), "w"),
                           numpy_helper.from_array(np.array([0, 7], np.uint8), "x.zero")])


# --- the largest graphs each bound accepts (sized by ``largest``) -----------------------------

def _fill(name: str, dims, value=1.0, dtype=np.float32) -> list:
    """``name``: a value of ``dims`` made by ConstantOfShape (a few bytes in the file)."""
    return [const(f"{name}.dims", list(dims), np.int64),
            helper.make_node("ConstantOfShape", [f"{name}.dims"], [name], name=name,
                             value=numpy_helper.from_array(np.array([value], dtype)))]


def values_alive(size: int):
    """Two float32 values of ``size`` elements alive at once (constant: folded once)."""
    return attached(*_fill("v", [size]), helper.make_node("Add", ["v", "v"], ["bomb"], name="twice"))


def weights_handed(width: int):
    """A product by a (784, ``width``) weight made from nothing: the engines hand it to
    onnxruntime, which copies it."""
    return attached(*_fill("w", [784, width], 0.001),
                    helper.make_node("Flatten", ["input"], ["pixels"], name="pixels"),
                    helper.make_node("MatMul", ["pixels", "w"], ["bomb"], name="product"))


def integer_product(rows: int):
    """A MatMulInteger of (``rows``, 256) uint8 by (256, 256) int8: numpy computes it in
    float64."""
    return attached(*_fill("a", [rows, 256], 3, np.uint8), *_fill("b", [256, 256], 5, np.int8),
                    helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="product"),
                    helper.make_node("Cast", ["y"], ["bomb"], name="back", to=TensorProto.FLOAT))


def pools(count: int):
    """``count`` 3x3 max pools of (1, 64, 256, 256): the slowest work per unit numpy does."""
    nodes = _fill("p0", [1, 64, 256, 256])
    for i in range(count):
        nodes.append(helper.make_node("MaxPool", [f"p{i}"], [f"p{i + 1}"], name=f"pool{i}",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Identity", [f"p{count}"], ["bomb"], name="last"))
    return attached(*nodes)


def integer_products(count: int, side: int):
    """``count`` MatMulInteger of ``side`` x ``side`` by ``side`` x ``side``, each summed
    as it is made."""
    nodes = [*_fill("a", [side, side], 3, np.uint8), *_fill("b", [side, side], 5, np.int8)]
    for i in range(count):
        nodes += [helper.make_node("MatMulInteger", ["a", "b"], [f"y{i}"], name=f"product{i}"),
                  helper.make_node("Cast", [f"y{i}"], [f"c{i}"], name=f"back{i}",
                                   to=TensorProto.FLOAT),
                  helper.make_node("ReduceSum", [f"c{i}"], [f"f{i}"], name=f"sum{i}",
                                   keepdims=0)]
    nodes.append(helper.make_node("Sum", [f"f{i}" for i in range(count)], ["bomb"], name="sum"))
    return attached(*nodes)


def wide_sums(count: int, inputs: int = 1024):
    """``count`` Sum nodes of ``inputs`` inputs each (a scalar): values for the check to read."""
    nodes = [const("s0", 1.0, np.float32)]
    for i in range(count):
        nodes.append(helper.make_node("Sum", [f"s{i}"] * inputs, [f"s{i + 1}"], name=f"sum{i}"))
    nodes.append(helper.make_node("Identity", [f"s{count}"], ["bomb"], name="last"))
    return attached(*nodes)


def largest(build, accepted, low: int = 1, high: int = 1 << 40) -> tuple[int, onnx.ModelProto]:
    """The largest size in [low, high) whose ``build(size)`` ``accepted`` says yes to (a
    bisection), and that graph."""
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(build(middle)) else (low, middle)
    return low, build(low)


# --- external data ----------------------------------------------------------------------------

def _external(tensor: onnx.TensorProto, location: str, length: int | None = None,
              offset: int = 0) -> onnx.TensorProto:
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def external_constant(location: str = "secret.bin"):
    """A Constant node whose tensor is read from ``location``: 8 float32 (32 bytes)."""
    tensor = _external(numpy_helper.from_array(np.zeros(8, np.float32), "leak"), location, 32)
    return attached(helper.make_node("Constant", [], ["bomb"], name="leak", value=tensor))


def external_initializer(location: str = "secret.bin", length: int | None = 32, offset: int = 0,
                         count: int = 8):
    tensor = _external(numpy_helper.from_array(np.zeros(count, np.float32), "bomb"), location,
                       length, offset)
    return attached(inits=[tensor])


# --- interface --------------------------------------------------------------------------------

def input_784():
    """Declares input (N, 784) for a ticket of 1 x 28 x 28 images."""
    w = numpy_helper.from_array(np.full((784, 10), 0.01, np.float32), "head.w")
    return model([helper.make_node("MatMul", ["input", "head.w"], ["logits"], name="head")], [w],
                 inputs=[vi("input", ["N", 784])])


def five_classes():
    w = numpy_helper.from_array(np.full((784, 5), 0.01, np.float32), "head.w")
    return model([helper.make_node("Flatten", ["input"], ["flat"], name="flatten"),
                  helper.make_node("MatMul", ["flat", "head.w"], ["logits"], name="head")], [w],
                 outputs=[vi("logits", ["N", 5])])


def declared_ten_computes_five():
    m = five_classes()
    m.graph.output[0].CopyFrom(vi("logits", ["N", 10]))
    return m


def unread_input():
    return model([const("c", np.zeros((1, 10)), np.float32),
                  helper.make_node("Identity", ["c"], ["logits"], name="out")])


def double_input():
    m = model(*head())
    m.graph.input[0].CopyFrom(vi("input", ["N", 1, 28, 28], TensorProto.DOUBLE))
    return m


def rank3_output():
    nodes, inits = head()
    nodes[-1].output[0] = "scores"
    nodes.append(helper.make_node("Unsqueeze", ["scores", "axis"], ["logits"], name="rank3"))
    return model(nodes, [*inits, _int64("axis", [2])], outputs=[vi("logits", ["N", 10, 1])])


def fixed_batch():
    m = model(*head())
    m.graph.input[0].CopyFrom(vi("input", [1, 1, 28, 28]))
    return m


def gather_out_of_range():
    """Passes every check and fails at run time: an index past the ten classes."""
    nodes, inits = head()
    nodes[-1].output[0] = "scores"
    nodes.append(helper.make_node("Gather", ["scores", "index"], ["logits"], name="pick", axis=1))
    return model(nodes, [*inits, _int64("index", [100, 1, 2, 3, 4, 5, 6, 7, 8, 9])])


# --- node count -------------------------------------------------------------------------------

def many_nodes(count: int = 200_000):
    nodes, inits = head("x0")
    chain = [helper.make_node("Relu", [f"x{i}"], [f"x{i + 1}"]) for i in range(count)]
    nodes[2].input[0] = f"x{count}"
    return model([const("x0", 1.0, np.float32), *chain, *nodes], inits)


def wide_node(count: int = 100_000):
    return attached(helper.make_node("Sum", ["input"] * count, ["bomb"], name="sum"))


# --- writing them -----------------------------------------------------------------------------

def write_ticket(good: Path, dest: Path, graph: onnx.ModelProto, arch: str | None = None) -> Path:
    """The valid ticket ``good`` with ``graph`` as its skeleton (``arch``: its recorded
    ``model.arch``); every length and checksum right."""
    ticket = Ticket.load(good)
    ticket.skeleton = graph
    if arch is not None:
        ticket.meta["config"]["model"] = {**ticket.meta["config"]["model"], "arch": arch}
    dest.write_bytes(ticket.to_bytes())
    return dest


def write_csr(good: Path, dest: Path, graph: onnx.ModelProto) -> Path:
    """The valid CSR export ``good`` with ``graph`` as its skeleton."""
    with safe_open(str(good), "np") as f:
        manifest = json.loads(f.metadata()["sltc"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    raw = skeleton.serialize(graph)
    tensors["sltc.skeleton"] = np.frombuffer(skeleton.encode(raw), np.uint8)
    manifest["skeleton"]["size"] = len(raw)
    save_file(tensors, str(dest), metadata={"sltc": json.dumps(manifest)})
    return dest


def write_onnx(dest: Path, graph: onnx.ModelProto) -> Path:
    dest.write_bytes(graph.SerializeToString())
    return dest
