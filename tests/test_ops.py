"""The numpy executor's ops against onnxruntime, one single-node graph at a time."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sltc.format.ops import OPS, Node
from sltc.runtime.quantize import cpu_int8_kernels, saturates

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(0)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _i(*values):
    return np.array(values, dtype=np.int64)


def _q(dtype, *values):
    return np.array(values, dtype=dtype)


# (op, input arrays (the first is the graph input, the rest constants), attributes)
CASES = [
    ("Conv", [_f(2, 4, 9, 7), _f(6, 4, 3, 3), _f(6)], {"strides": [2, 1], "pads": [1, 0, 2, 1]}),
    ("Conv", [_f(1, 8, 10, 10), _f(8, 2, 3, 3)], {"group": 4, "dilations": [2, 2], "pads": [2] * 4}),
    ("Conv", [_f(3, 6, 5, 5), _f(6, 1, 3, 3)], {"group": 6, "pads": [1] * 4}),
    ("Conv", [_f(2, 3, 6, 6), _f(5, 3, 1, 1)], {}),
    ("MaxPool", [_f(2, 3, 7, 7)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}),
    ("MaxPool", [_f(1, 2, 7, 6)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", [_f(2, 3, 7, 7)], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4}),
    ("AveragePool", [_f(2, 3, 7, 7)], {"kernel_shape": [3, 3], "pads": [1] * 4,
                                       "count_include_pad": 1}),
    ("GlobalAveragePool", [_f(2, 5, 4, 3)], {}),
    ("Gemm", [_f(4, 6), _f(5, 6), _f(5)], {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    ("Gemm", [_f(6, 4), _f(6, 5)], {"transA": 1}),
    ("MatMul", [_f(2, 3, 4, 6), _f(6, 5)], {}),
    ("MatMul", [_f(2, 3, 4, 6), _f(2, 3, 6, 2)], {}),
    ("BatchNormalization", [_f(2, 3, 4, 4), _f(3), _f(3), _f(3), np.abs(_f(3)) + 0.1],
     {"epsilon": 1e-3}),
    ("LayerNormalization", [_f(2, 5, 8), _f(8), _f(8)], {"axis": -1, "epsilon": 1e-5}),
    ("LayerNormalization", [_f(2, 5, 8), _f(5, 8)], {"axis": 1}),
    ("Softmax", [_f(2, 3, 7)], {"axis": -1}),
    ("Softmax", [_f(2, 3, 7)], {"axis": 1}),
    ("Erf", [_f(3, 4)], {}),
    ("Gelu", [_f(3, 4)], {"_opset": 20}),
    ("Gelu", [_f(3, 4)], {"_opset": 20, "approximate": "tanh"}),
    ("Sigmoid", [_f(3, 4)], {}),
    ("Relu", [_f(3, 4)], {}),
    ("LeakyRelu", [_f(3, 4)], {"alpha": 0.2}),
    ("Sqrt", [np.abs(_f(3, 4))], {}),
    ("Pow", [np.abs(_f(3, 4)), np.array(2.0, np.float32)], {}),
    ("Div", [_f(3, 4), _f(4)], {}),
    ("Where", [_f(3, 4) > 0, _f(3, 4), _f(4)], {}),
    ("Flatten", [_f(2, 3, 4, 5)], {"axis": 2}),
    ("Reshape", [_f(2, 3, 4), _i(0, -1)], {}),
    ("Transpose", [_f(2, 3, 4)], {"perm": [2, 0, 1]}),
    ("Gather", [_f(5, 4), _i(3, 0)], {"axis": 0}),
    ("Gather", [_f(2, 5, 4), np.array(1, np.int64)], {"axis": 1}),
    ("Unsqueeze", [_f(2, 3), _i(0, -1)], {}),
    ("Squeeze", [_f(2, 1, 3, 1), _i(1)], {}),
    ("Concat", [_f(2, 3), _f(2, 5)], {"axis": 1}),
    ("Slice", [_f(6, 7), _i(1, -1), _i(5, 0), _i(0, 1), _i(2, -2)], {}),
    ("Slice", [_f(6, 7), _i(-1), _i(-(2**63) + 1), _i(0), _i(-1)], {}),  # torch's reverse
    ("Split", [_f(6, 4), _i(2, 4)], {"axis": 0, "_outputs": 2}),
    ("Expand", [_f(3, 1), _i(2, 3, 4)], {}),
    ("Tile", [_f(2, 3), _i(2, 1)], {}),
    ("ReduceMean", [_f(2, 3, 4)], {"axes": [1, 2], "keepdims": 0}),
    ("ReduceSum", [_f(2, 3, 4), _i(-1)], {"keepdims": 1}),
    ("Pad", [_f(2, 3), _i(1, 0, 0, 2)], {}),
    ("Clip", [_f(3, 4), np.array(-0.5, np.float32), np.array(0.5, np.float32)], {}),
    ("Max", [_f(3, 4), _f(4)], {}),
    ("Cast", [_f(3, 4)], {"to": TensorProto.INT64}),
    ("Equal", [_i(1, 2, 3), _i(1, 0, 3)], {}),
    ("Shape", [_f(2, 3, 4)], {"start": 1}),
    ("Range", [np.array(1, np.int64), np.array(9, np.int64), np.array(3, np.int64)], {}),
    ("QuantizeLinear", [_f(4, 3, 5) * 3, np.float32(0.03), np.uint8(128)], {}),
    ("QuantizeLinear", [_f(4, 3, 5) * 3, _q(np.float32, 0.02, 0.05, 0.1), _q(np.int8, 0, 1, -2)],
     {"axis": 1}),
    ("DequantizeLinear", [RNG.integers(-128, 128, (4, 3, 5)).astype(np.int8),
                          _q(np.float32, 0.02, 0.05, 0.1), _q(np.int8, 0, 1, -2)], {"axis": 1}),
    ("DequantizeLinear", [RNG.integers(-999, 999, 7).astype(np.int32), np.float32(0.01)], {}),
    ("DynamicQuantizeLinear", [_f(4, 6) * 3], {"_outputs": 3}),
    ("MatMulInteger", [RNG.integers(0, 256, (5, 7)).astype(np.uint8),  # 7-bit weights: exact
                       RNG.integers(-64, 65, (7, 4)).astype(np.int8), np.uint8(3),  # everywhere
                       _q(np.int8, 0, 1, -1, 2)], {}),
    ("ConvInteger", [RNG.integers(0, 256, (2, 3, 7, 7)).astype(np.uint8),
                     RNG.integers(-128, 128, (4, 3, 3, 3)).astype(np.int8), np.uint8(7)],
     {"pads": [1] * 4, "strides": [2, 2]}),
]


def _model(op, arrays, attrs):
    attrs = dict(attrs)
    opset, outputs = attrs.pop("_opset", 17), attrs.pop("_outputs", 1)
    x, consts = arrays[0], arrays[1:]
    names = ["x"] + [f"c{i}" for i in range(len(consts))]
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, names, outs, name="node", **attrs)
    dtype = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [node], "case", [helper.make_tensor_value_info("x", dtype, list(x.shape))],
        [onnx.ValueInfoProto(name=o) for o in outs],
        [numpy_helper.from_array(c, n) for c, n in zip(consts, names[1:], strict=True)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op,arrays,attrs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_matches_onnxruntime(op, arrays, attrs):
    model = _model(op, arrays, attrs)
    wants = ort.InferenceSession(model.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {"x": arrays[0]})
    proto = model.graph.node[0]
    node = Node.read(proto)
    got = OPS[op](node, *arrays)
    for g, want in zip(got if isinstance(got, tuple) else (got,), wants, strict=False):
        assert g.shape == want.shape and g.dtype == want.dtype
        assert np.allclose(g, want, rtol=1e-5, atol=1e-5)


def _saturating_matmul_integer(a, b, a_zero_point, b_zero_point) -> np.ndarray:
    """onnxruntime's uint8 x int8 product on x86 without VNNI: ``vpmaddubsw`` adds the raw
    products of each pair of columns (k, k + 1) into 16 bits with saturation, then the
    zero points are taken out in 32 bits."""
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    k = a.shape[1]
    pairs = np.pad(a64, ((0, 0), (0, k % 2)))[:, :, None] * np.pad(b64, ((0, k % 2), (0, 0)))
    raw = np.clip(pairs[:, 0::2] + pairs[:, 1::2], -(2**15), 2**15 - 1).sum(1)
    za, zb = int(a_zero_point), np.broadcast_to(b_zero_point.astype(np.int64), (b.shape[1],))
    return (raw - za * b64.sum(0) - zb * a64.sum(1)[:, None] + k * za * zb).astype(np.int32)


@pytest.mark.parametrize("case", range(20))
def test_full_range_matmul_integer_on_this_cpu(case):
    """With int8 weights past [-64, 64], onnxruntime computes MatMulInteger exactly where
    the CPU has 32-bit int8 sums, and as ``_saturating_matmul_integer`` (bit for bit) where
    it does not (``quantize.SATURATING``): the difference the runtime warns of. The op
    table always computes the exact product that ONNX defines."""
    rng = np.random.default_rng(case)
    m, k, n = rng.integers(1, 24, 3)
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    za, zb = np.uint8(rng.integers(0, 256)), rng.integers(-128, 128, n).astype(np.int8)
    model = _model("MatMulInteger", [a, b, za, zb], {})
    got, = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": a})
    exact = OPS["MatMulInteger"](Node.read(model.graph.node[0]), a, b, za, zb)
    assert np.array_equal(exact, (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb))
    kernels = cpu_int8_kernels()
    if kernels in ("sse", "unknown"):  # assumed to saturate, never measured
        pytest.skip(f"this CPU's int8 path is {kernels}")
    if saturates(kernels):
        assert np.array_equal(got, _saturating_matmul_integer(a, b, za, zb))
    else:
        assert np.array_equal(got, exact)


def test_every_op_in_the_table_is_tested():
    tested = {c[0] for c in CASES} | {"Constant"}  # test_constant_matches_onnxruntime
    assumed = {"Add", "Sub", "Mul", "Identity", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
               "And", "Or", "Not", "Exp", "Log", "Neg", "Abs", "Tanh", "Floor", "Ceil",
               "Reciprocal", "Min", "Sum", "Mean", "ReduceMax", "ReduceMin", "GlobalMaxPool",
               "Size", "ConstantOfShape", "Dropout"}  # same code path as a tested op
    assert set(OPS) - tested - assumed == set()


def test_integer_division_truncates_towards_zero():
    model = _model("Div", [_i(7, -7, 7, -7), _i(2, 2, -2, -2)], {})
    node = Node.read(model.graph.node[0])
    assert OPS["Div"](node, _i(7, -7, 7, -7), _i(2, 2, -2, -2)).tolist() == [3, -3, -3, 3]


@pytest.mark.parametrize("attrs", [
    {"value": numpy_helper.from_array(_f(2, 3), "v")}, {"value_float": 0.25},
    {"value_floats": [1.5, -2.0]}, {"value_int": 7}, {"value_ints": [3, -1]},
    {"sparse_value": helper.make_sparse_tensor(numpy_helper.from_array(_f(2), "v"),
                                               numpy_helper.from_array(_i(1, 4), "i"), [2, 3])},
], ids=lambda a: next(iter(a)))
def test_constant_matches_onnxruntime(attrs):
    node = helper.make_node("Constant", [], ["y"], name="c", **attrs)
    graph = helper.make_graph([node], "c", [], [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    want, = ort.InferenceSession(model.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {})
    if "sparse_value" in attrs:  # onnxruntime hands a sparse tensor back as it is
        want = ort.SparseTensor(want)
        dense = np.zeros(want.dense_shape(), want.values().dtype)
        dense.flat[want.as_coo_view().indices()] = want.values()
        want = dense
    got = OPS["Constant"](Node.read(node))
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_folding_frees_constants_but_keeps_what_running_nodes_read():
    """A weight read by a node that runs (a MatMul on the input) and last by one folded
    away (its Transpose): the folded graph keeps it, frees the rest, and computes what
    onnxruntime computes."""
    from sltc.format.graph import Graph

    w = numpy_helper.from_array(_f(4, 3), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]),
             helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
             helper.make_node("Relu", ["wt"], ["r"]),
             helper.make_node("MatMul", ["a", "r"], ["y"])]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", 1, ["N", 4])],
                              [helper.make_tensor_value_info("y", 1, ["N", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = _f(2, 4)
    want, = ort.InferenceSession(model.SerializeToString(),
                                 providers=["CPUExecutionProvider"]).run(None, {"x": x})
    folded = Graph.from_onnx(model).folded()
    assert set(folded.constants) == {"w", "r"}
    assert np.allclose(folded.run(x), want, atol=1e-6)
