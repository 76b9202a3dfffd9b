"""The ONNX ops sltc runs, one short function each: ``OPS[op_type](node, *inputs)``.

This is the one list of ops in sltc, and the allowlist of every graph it loads: a node
whose op is not here, or that breaks its op's rules (inputs, outputs, attributes and their
values, input ranks; ``check.py`` applies them), is refused before anything runs,
whichever engine would run it. Semantics follow the ONNX operator specification (opsets 13
to 21, the forms torch's exporter writes at opset 17); ``attrs`` holds a node's attributes as
Python values. Floating point stays float32 throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper
from scipy.special import erf

from .limits import MAX_NODE_VALUES, MAX_RANK, MAX_SIDE

# the element types a graph may hold: numpy's own, no strings, no 8-bit or 4-bit floats
DTYPES = frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BOOL,
                    TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
                    TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64})


@dataclass(frozen=True)
class Attr:
    """What one attribute of an op may be: its ONNX type and a test of its value."""

    kind: int  # AttributeProto.INT, FLOAT, STRING, INTS, FLOATS, TENSOR, SPARSE_TENSOR
    says: str  # the rule, for the error message
    test: Callable = lambda value: True


def integer(low: int, high: int) -> Attr:
    return Attr(AttributeProto.INT, str(low) if low == high else f"an integer in [{low}, {high}]",
                lambda v: low <= v <= high)


def choice(*values: str) -> Attr:
    return Attr(AttributeProto.STRING, " or ".join(values), lambda v: v in values)


def integers(length: int | None, low: int, high: int) -> Attr:
    count = "" if length is None else f"{length} "
    return Attr(AttributeProto.INTS, f"{count}integers in [{low}, {high}]",
                lambda v: (length is None or len(v) == length) and all(low <= x <= high for x in v))


NUMBER = Attr(AttributeProto.FLOAT, "a finite number", math.isfinite)
NUMBERS = Attr(AttributeProto.FLOATS, "finite numbers", lambda v: all(map(math.isfinite, v)))
FLAG = integer(0, 1)
AXIS = integer(-MAX_RANK, MAX_RANK)
AXES = integers(None, -MAX_RANK, MAX_RANK)
ANY_INT = Attr(AttributeProto.INT, "an integer")
INTS = Attr(AttributeProto.INTS, "integers")
TENSOR = Attr(AttributeProto.TENSOR, "a tensor")
SCALAR = Attr(AttributeProto.TENSOR, "a tensor of one element",
              lambda v: int(np.prod(v.dims)) == 1)
SPARSE = Attr(AttributeProto.SPARSE_TENSOR, "a sparse tensor")
DTYPE = Attr(AttributeProto.INT, "a numeric or bool element type", lambda v: v in DTYPES)
WINDOW = {"auto_pad": choice("NOTSET", "VALID"), "kernel_shape": integers(2, 1, MAX_SIDE),
          "strides": integers(2, 1, MAX_SIDE), "dilations": integers(2, 1, MAX_SIDE),
          "pads": integers(4, 0, MAX_SIDE)}  # 2-D windows: Conv and the pools
MANY = (1, MAX_NODE_VALUES)


@dataclass(frozen=True)
class Op:
    """One entry of the table: the numpy function and the rules a node of it must meet."""

    fn: Callable
    inputs: tuple[int, int] = (1, 1)  # fewest and most inputs (an empty name counts)
    outputs: tuple[int, int] = (1, 1)
    attrs: dict = field(default_factory=dict)  # name -> Attr; any other attribute is refused
    ranks: dict = field(default_factory=dict)  # input index -> the rank it must have
    scalars: tuple[int, ...] = ()  # inputs that must hold one element (a per-tensor zero point)
    rule: Callable | None = None  # (input dtypes, known input values or None) -> what breaks it

    def __call__(self, node, *inputs):
        return self.fn(node, *inputs)


OPS: dict[str, Op] = {}


@dataclass
class Node:
    """A node as the ops see it: its attributes as Python values."""

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

    @classmethod
    def read(cls, proto: onnx.NodeProto) -> Node:
        """A node of a checked graph (its tensors in place)."""
        return cls(proto.op_type, proto.name, list(proto.input), list(proto.output),
                   {a.name: attr_value(a) for a in proto.attribute}, proto)

    def label(self) -> str:
        return f"node {self.name or self.outputs[0]!r} ({self.op})"


LAYERS = ("MatMul", "Gemm", "Conv")  # the products by a weight: a network's layers
NEVER_FOLDED = frozenset({"DequantizeLinear"})  # an int8 weight stays int8 for onnxruntime


def layer_inputs(node: Node) -> tuple[str | None, str | None]:
    """The value names of a layer's weight and bias: its second input (MatMul's (in, out),
    Gemm's (out, in) under ``transB`` else (in, out), Conv's (out, in, kh, kw)) and its third
    where named (Gemm's C, Conv's B; else None); (None, None) for a node of another op."""
    if node.op not in LAYERS:
        return None, None
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    return node.inputs[1], bias


def sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices)
    dense = np.zeros(int(np.prod(sparse.dims)), dtype=values.dtype)
    if indices.ndim == 2:  # coordinates, one row per value
        indices = np.ravel_multi_index(indices.T, tuple(sparse.dims))
    dense[indices] = values
    return dense.reshape(tuple(sparse.dims))


def attr_value(a: onnx.AttributeProto):
    if a.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(a.t)
    if a.type == AttributeProto.SPARSE_TENSOR:
        return sparse_to_dense(a.sparse_tensor)
    value = helper.get_attribute_value(a)
    return value.decode() if isinstance(value, bytes) else value


def op(*names: str, **rules):
    def add(fn):
        for name in names:
            OPS[name] = Op(fn, **rules)
        return fn

    return add


def _attr(node, key, default=None):
    return node.attrs.get(key, default)


def _axes(axes, ndim: int) -> list[int]:
    return [int(a) % ndim for a in np.asarray(axes).ravel()]


def _integer_divisor(dtypes, values) -> str | None:
    """Integer ``Div`` needs a constant divisor with every element positive: a zero (or -1
    under the smallest integer) stops a C runtime with SIGFPE."""
    if np.issubdtype(dtypes[0], np.integer) and (values[1] is None or not np.all(values[1] > 0)):
        return "an integer Div needs a constant divisor whose every element is positive"
    return None


# --- elementwise ------------------------------------------------------------------------------


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating towards zero, as ONNX defines it."""
    q = np.floor_divide(a, b)
    return q + ((np.remainder(a, b) != 0) & ((a < 0) != (b < 0)))


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal,
           "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
           "GreaterOrEqual": np.greater_equal, "And": np.logical_and, "Or": np.logical_or}
_UNARY = {"Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Neg": np.negative, "Abs": np.abs,
          "Tanh": np.tanh, "Not": np.logical_not, "Floor": np.floor, "Ceil": np.ceil,
          "Reciprocal": np.reciprocal, "Erf": erf, "Identity": lambda x: x}


@op(*_BINARY, inputs=(2, 2))
def binary(node, a, b):
    return _BINARY[node.op](a, b)


@op(*_UNARY)
def unary(node, x):
    return _UNARY[node.op](x).astype(x.dtype, copy=False)


@op("Div", inputs=(2, 2), rule=_integer_divisor)
def div(node, a, b):
    return _int_div(a, b) if np.issubdtype(a.dtype, np.integer) else a / b


@op("Pow", inputs=(2, 2))
def pow_(node, a, b):
    return np.power(a, b.astype(a.dtype, copy=False))


@op("Max", "Min", "Sum", "Mean", inputs=MANY)
def variadic(node, *xs):
    if node.op == "Mean":
        return sum(xs[1:], xs[0]) / np.asarray(len(xs), xs[0].dtype)
    fn = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}[node.op]
    out = xs[0]
    for x in xs[1:]:
        out = fn(out, x)
    return out


@op("Where", inputs=(3, 3))
def where(node, cond, a, b):
    return np.where(cond, a, b)


@op("Relu")
def relu(node, x):
    return np.maximum(x, np.zeros((), x.dtype))


@op("LeakyRelu", attrs={"alpha": NUMBER})
def leaky_relu(node, x):
    return np.where(x >= 0, x, x * np.asarray(_attr(node, "alpha", 0.01), x.dtype))


@op("Sigmoid")
def sigmoid(node, x):
    return (1 / (1 + np.exp(-x))).astype(x.dtype)


@op("Gelu", attrs={"approximate": choice("none", "tanh")})
def gelu(node, x):
    if _attr(node, "approximate", "none") == "tanh":
        return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))).astype(x.dtype)
    return (0.5 * x * (1 + erf(x / math.sqrt(2)))).astype(x.dtype)


@op("Clip", inputs=(1, 3))
def clip(node, x, low=None, high=None):
    return np.clip(x, low, high)


@op("Softmax", attrs={"axis": AXIS})
def softmax(node, x):
    axis = _attr(node, "axis", -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@op("Cast", attrs={"to": DTYPE})
def cast(node, x):
    return x.astype(helper.tensor_dtype_to_np_dtype(_attr(node, "to")))


@op("Constant", inputs=(0, 0), attrs={
    "value": TENSOR, "sparse_value": SPARSE, "value_float": NUMBER, "value_floats": NUMBERS,
    "value_int": ANY_INT, "value_ints": INTS})
def constant(node):
    for key, dtype in (("value", None), ("sparse_value", None), ("value_float", np.float32),
                       ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in node.attrs:
            return np.asarray(node.attrs[key], dtype=dtype)
    raise ValueError(f"Constant {node.name!r} has none of the value attributes")


@op("Dropout", inputs=(1, 2), outputs=(1, 2), attrs={"seed": ANY_INT})
def dropout(node, x, *_):
    return x, np.ones(x.shape, dtype=bool)


# --- normalisation ----------------------------------------------------------------------------


@op("BatchNormalization", inputs=(5, 5),
    attrs={"epsilon": NUMBER, "momentum": NUMBER, "training_mode": integer(0, 0)})
def batch_norm(node, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    eps = np.asarray(_attr(node, "epsilon", 1e-5), x.dtype)
    inv = scale / np.sqrt(var + eps)
    return (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)


@op("LayerNormalization", inputs=(2, 3), outputs=(1, 3),
    attrs={"axis": AXIS, "epsilon": NUMBER, "stash_type": integer(1, 1)})
def layer_norm(node, x, scale, bias=None):
    axis = _attr(node, "axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + np.asarray(_attr(node, "epsilon", 1e-5), x.dtype))
    y = centred * inv * scale
    return (y if bias is None else y + bias), mean, inv


@op("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", inputs=(1, 2),
    attrs={"axes": AXES, "keepdims": FLAG, "noop_with_empty_axes": FLAG})
def reduce(node, x, axes=None):
    axes = axes if axes is not None else _attr(node, "axes")
    keep = bool(_attr(node, "keepdims", 1))
    if axes is None or len(np.asarray(axes)) == 0:
        if _attr(node, "noop_with_empty_axes", 0):
            return x
        axes = range(x.ndim)
    fn = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max,
          "ReduceMin": np.min}[node.op]
    return fn(x, axis=tuple(_axes(list(axes), x.ndim)), keepdims=keep).astype(x.dtype, copy=False)


# --- products ---------------------------------------------------------------------------------


@op("MatMul", inputs=(2, 2))
def matmul(node, a, b):
    return np.matmul(a, b)


@op("Gemm", inputs=(2, 3),
    attrs={"transA": FLAG, "transB": FLAG, "alpha": NUMBER, "beta": NUMBER})
def gemm(node, a, b, c=None):
    a = a.T if _attr(node, "transA", 0) else a
    b = b.T if _attr(node, "transB", 0) else b
    y = a @ b
    alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if c is not None:
        y = y + (c if beta == 1.0 else c * np.asarray(beta, y.dtype))
    return y


def conv_geometry(node, x_shape, w_shape) -> dict:
    """Strides, dilations, pads and output size of a 2-D ``Conv`` (explicit pads only)."""
    if _attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ValueError(f"Conv {node.name!r}: auto_pad {_attr(node, 'auto_pad')} is not supported")
    if len(w_shape) != 4:
        raise ValueError(f"Conv {node.name!r}: only 2-D convolutions are supported")
    kh, kw = w_shape[2:]
    sh, sw = _attr(node, "strides", [1, 1])
    dh, dw = _attr(node, "dilations", [1, 1])
    pads = _attr(node, "pads", [0, 0, 0, 0])
    h, w = x_shape[2] + pads[0] + pads[2], x_shape[3] + pads[1] + pads[3]
    return {"kernel": (kh, kw), "strides": (sh, sw), "dilations": (dh, dw), "pads": pads,
            "out": ((h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1)}


def im2col(x: np.ndarray, g: dict, pad_value: float = 0.0) -> np.ndarray:
    """(N, C, H, W) -> a (N, Ho, Wo, C, kh, kw) view of the padded input's patches."""
    t, left, b, r = g["pads"]
    if any(g["pads"]):
        x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=pad_value)
    n, c = x.shape[:2]
    s = x.strides
    (sh, sw), (dh, dw), (ho, wo) = g["strides"], g["dilations"], g["out"]
    return np.lib.stride_tricks.as_strided(
        x, (n, ho, wo, c, *g["kernel"]), (s[0], s[2] * sh, s[3] * sw, s[1], s[2] * dh, s[3] * dw),
        writeable=False)


def conv_columns(x: np.ndarray, g: dict, group: int) -> np.ndarray:
    """im2col rows: (N*Ho*Wo, C*kh*kw), or (group, N*Ho*Wo, C/group*kh*kw) when grouped."""
    patches = im2col(x, g)
    rows = patches.shape[0] * patches.shape[1] * patches.shape[2]
    if group == 1:
        return patches.reshape(rows, -1)
    return patches.reshape(rows, group, -1).transpose(1, 0, 2)


def conv_output(y: np.ndarray, x_shape, g: dict, bias=None) -> np.ndarray:
    """(N*Ho*Wo, M) products -> (N, M, Ho, Wo), plus the bias."""
    y = y.reshape(x_shape[0], *g["out"], -1).transpose(0, 3, 1, 2)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


@op("Conv", inputs=(2, 3), attrs={**WINDOW, "group": integer(1, MAX_SIDE)},
    ranks={0: 4, 1: 4})
def conv(node, x, w, b=None):
    g = conv_geometry(node, x.shape, w.shape)
    group = _attr(node, "group", 1)
    cols = conv_columns(x, g, group)
    if group == 1:
        y = cols @ w.reshape(len(w), -1).T
    else:
        wg = w.reshape(group, len(w) // group, -1).transpose(0, 2, 1)
        y = np.matmul(cols, wg).transpose(1, 0, 2).reshape(cols.shape[1], -1)
    return conv_output(y, x.shape, g, b)


def _pool_geometry(node, x):
    k = _attr(node, "kernel_shape")
    pads = _attr(node, "pads", [0] * 2 * len(k))
    strides = _attr(node, "strides", [1] * len(k))
    dil = _attr(node, "dilations", [1] * len(k))
    if len(k) != 2:
        raise ValueError(f"{node.op} {node.name!r}: only 2-D pooling is supported")
    size = [x.shape[2 + i] + pads[i] + pads[i + 2] - dil[i] * (k[i] - 1) - 1 for i in range(2)]
    rnd = math.ceil if _attr(node, "ceil_mode", 0) else math.floor
    out = [int(rnd(size[i] / strides[i])) + 1 for i in range(2)]
    # ceil_mode: a window may start in the padding on the right; widen it there
    extra = [max(0, (out[i] - 1) * strides[i] - size[i]) for i in range(2)]
    g = {"kernel": tuple(k), "strides": tuple(strides), "dilations": tuple(dil), "out": out,
         "pads": [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]}
    return g


@op("MaxPool", attrs={**WINDOW, "ceil_mode": FLAG, "storage_order": integer(0, 0)},
    ranks={0: 4})
def max_pool(node, x):
    g = _pool_geometry(node, x)
    return im2col(x, g, -np.inf).max(axis=(4, 5)).transpose(0, 3, 1, 2).astype(x.dtype)


@op("AveragePool", attrs={**WINDOW, "ceil_mode": FLAG, "count_include_pad": FLAG},
    ranks={0: 4})
def average_pool(node, x):
    g = _pool_geometry(node, x)
    total = im2col(x, g).sum(axis=(4, 5)).transpose(0, 3, 1, 2)
    if _attr(node, "count_include_pad", 0):
        return (total / np.float32(g["kernel"][0] * g["kernel"][1])).astype(x.dtype)
    ones = np.ones((1, 1, *x.shape[2:]), x.dtype)
    count = im2col(ones, g).sum(axis=(4, 5)).transpose(0, 3, 1, 2)
    return (total / count).astype(x.dtype)


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node, x):
    fn = np.mean if node.op == "GlobalAveragePool" else np.max
    return fn(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False)


# --- quantisation -----------------------------------------------------------------------------
# an int8 export's ops (onnxruntime.quantization writes them): static QDQ pairs around float
# ops, or dynamic DynamicQuantizeLinear + MatMulInteger / ConvInteger; integer sums are
# computed in float64, exact for any sum under 2**53

_RANGES = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max)
           for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32)}


def _along(v: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A per-tensor (scalar) or per-axis (1-D) scale or zero point, shaped to broadcast
    along ``axis`` of ``x``."""
    v = np.asarray(v)
    if v.ndim == 0:
        return v
    shape = [1] * x.ndim
    shape[axis % x.ndim] = v.size
    return v.reshape(shape)


def _quantized_type(dtypes, values) -> str | None:
    """Integer values of 8 to 32 bits only (what the quantisation ops run on here)."""
    known = [d for d in dtypes if d is not None and np.issubdtype(d, np.integer)]
    if any(d not in _RANGES for d in known):
        return "quantised values must be int8, uint8, int16, uint16 or int32"
    return None


QUANT = {"axis": AXIS, "block_size": integer(0, 0)}
QUANTIZED = Attr(AttributeProto.INT, "int8, uint8, int16, uint16 or int32", lambda v: v in {
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32})


@op("QuantizeLinear", inputs=(2, 3), attrs={**QUANT, "saturate": FLAG, "output_dtype": QUANTIZED},
    rule=_quantized_type)
def quantize_linear(node, x, scale, zero_point=None):
    axis = _attr(node, "axis", 1)
    dtype = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    if "output_dtype" in node.attrs and zero_point is None:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(node.attrs["output_dtype"]))
    zp = 0 if zero_point is None else _along(zero_point, x, axis).astype(np.float32)
    low, high = _RANGES[dtype]
    y = np.rint(x / _along(scale, x, axis)) + zp  # ties to even, as ONNX rounds
    return np.clip(y, low, high).astype(dtype)


@op("DequantizeLinear", inputs=(2, 3), attrs=QUANT, rule=_quantized_type)
def dequantize_linear(node, x, scale, zero_point=None):
    axis = _attr(node, "axis", 1)
    zp = 0 if zero_point is None else _along(zero_point, x, axis).astype(np.float32)
    return ((x.astype(np.float32) - zp) * _along(scale, x, axis)).astype(scale.dtype)


@op("DynamicQuantizeLinear", outputs=(3, 3))
def dynamic_quantize_linear(node, x):
    low, high = min(float(x.min(initial=0)), 0.0), max(float(x.max(initial=0)), 0.0)
    scale = np.float32((high - low) / 255)
    if scale == 0:
        return np.zeros(x.shape, np.uint8), scale, np.uint8(0)
    zero_point = np.uint8(np.clip(np.rint(-low / scale), 0, 255))
    y = np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)
    return y, scale, zero_point


def _centred(x: np.ndarray, zero_point, axis: int) -> np.ndarray:
    return x.astype(np.float64) - (0 if zero_point is None else
                                   _along(zero_point, x, axis).astype(np.float64))


@op("MatMulInteger", inputs=(2, 4), rule=_quantized_type, scalars=(2,))
def matmul_integer(node, a, b, a_zero_point=None, b_zero_point=None):
    return np.matmul(_centred(a, a_zero_point, -2), _centred(b, b_zero_point, -1)).astype(np.int32)


@op("ConvInteger", inputs=(2, 4), attrs={**WINDOW, "group": integer(1, MAX_SIDE)},
    ranks={0: 4, 1: 4}, rule=_quantized_type, scalars=(2,))
def conv_integer(node, x, w, x_zero_point=None, w_zero_point=None):
    return conv(node, _centred(x, x_zero_point, 1), _centred(w, w_zero_point, 0)).astype(np.int32)


# --- shapes -----------------------------------------------------------------------------------


@op("Flatten", attrs={"axis": AXIS})
def flatten(node, x):
    axis = _attr(node, "axis", 1) % max(x.ndim, 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


@op("Reshape", inputs=(2, 2), attrs={"allowzero": FLAG})
def reshape(node, x, shape):
    shape = [int(v) for v in shape]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


@op("Transpose", attrs={"perm": integers(None, 0, MAX_RANK - 1)})
def transpose(node, x):
    return np.transpose(x, _attr(node, "perm"))


@op("Shape", attrs={"start": AXIS, "end": AXIS})
def shape(node, x):
    dims = x.shape[_attr(node, "start", 0):_attr(node, "end", None)]
    return np.array(dims, dtype=np.int64)


@op("Size")
def size(node, x):
    return np.array(x.size, dtype=np.int64)


@op("Gather", inputs=(2, 2), attrs={"axis": AXIS})
def gather(node, x, indices):
    return np.take(x, indices, axis=_attr(node, "axis", 0))


@op("Unsqueeze", inputs=(1, 2), attrs={"axes": AXES})
def unsqueeze(node, x, axes=None):
    axes = axes if axes is not None else _attr(node, "axes")
    return np.expand_dims(x, tuple(_axes(axes, x.ndim + len(np.asarray(axes).ravel()))))


@op("Squeeze", inputs=(1, 2), attrs={"axes": AXES})
def squeeze(node, x, axes=None):
    axes = axes if axes is not None else _attr(node, "axes")
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, tuple(_axes(axes, x.ndim)))


@op("Concat", inputs=MANY, attrs={"axis": AXIS})
def concat(node, *xs):
    return np.concatenate(xs, axis=_attr(node, "axis"))


@op("Split", inputs=(1, 2), outputs=MANY,
    attrs={"axis": AXIS, "split": INTS, "num_outputs": integer(1, MAX_NODE_VALUES)})
def split(node, x, sizes=None):
    axis = _attr(node, "axis", 0) % x.ndim
    if sizes is None:
        sizes = _attr(node, "split")
    if sizes is None:
        parts = _attr(node, "num_outputs", len(node.outputs))
        chunk = -(-x.shape[axis] // parts)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@op("Slice", inputs=(3, 5))
def slice_(node, x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else _axes(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        start, stop, step = slice(int(s), int(e), int(st)).indices(x.shape[a])
        index[a] = slice(start, None if stop < 0 else stop, step)  # -1: past the front
    return x[tuple(index)]


@op("Expand", inputs=(2, 2))
def expand(node, x, shape):
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(int(v) for v in shape)))


@op("Tile", inputs=(2, 2))
def tile(node, x, repeats):
    return np.tile(x, [int(r) for r in repeats])


@op("ConstantOfShape", attrs={"value": SCALAR})
def constant_of_shape(node, shape):
    value = _attr(node, "value")
    value = np.zeros(1, np.float32) if value is None else value
    return np.full([int(v) for v in shape], value.ravel()[0], dtype=value.dtype)


@op("Range", inputs=(3, 3))
def range_(node, start, limit, delta):
    return np.arange(start, limit, delta, dtype=np.asarray(start).dtype)


@op("Pad", inputs=(2, 4), attrs={"mode": choice("constant")})
def pad(node, x, pads, value=None, axes=None):
    if _attr(node, "mode", "constant") != "constant":
        raise ValueError(f"Pad {node.name!r}: only mode 'constant' is supported")
    axes = range(x.ndim) if axes is None else _axes(axes, x.ndim)
    widths = [(0, 0)] * x.ndim
    half = len(pads) // 2
    for i, a in enumerate(axes):
        widths[a] = (int(pads[i]), int(pads[i + half]))
    fill = 0 if value is None or np.asarray(value).size == 0 else np.asarray(value).ravel()[0]
    return np.pad(x, widths, constant_values=fill)


