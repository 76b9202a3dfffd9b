"""Format 1.0 tickets: their op list (``meta.graph``) turned into a skeleton.

Version 1.0 described the network as a list of seven op kinds instead of an ONNX
graph. This reader keeps those tickets loading; nothing writes op lists any more.
"""

from __future__ import annotations

import reprlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import TicketError
from .limits import MAX_SIDE, number_in
from .records import STD_RANGE
from .skeleton import INPUT, OUTPUT, placeholder

OPSET = 17
FIELDS = {"normalize": ("mean", "std"), "flatten": (), "linear": ("name",),
          "conv2d": ("name", "padding"), "batchnorm": ("name", "eps"), "relu": (),
          "maxpool": ("kernel",)}  # each op's fields besides ``op``: these, no more


def _between(low: float, high: float):
    return lambda v: type(v) is not bool and number_in(v, low, high)


def _integer(low: int, high: int):
    return lambda v: type(v) is int and low <= v <= high


VALUES = {  # each field's rule, and how a message says it
    "mean": (_between(-1e6, 1e6), "a number in [-1e6, 1e6]"),
    "std": (_between(*STD_RANGE), "a number in [1e-12, 1e6]"),
    "eps": (_between(1e-12, 1e6), "a number in [1e-12, 1e6]"),
    "name": (lambda v: isinstance(v, str), "a layer name"),
    "padding": (_integer(0, MAX_SIDE), f"an integer in [0, {MAX_SIDE}]"),
    "kernel": (_integer(1, MAX_SIDE), f"an integer in [1, {MAX_SIDE}]")}


def _check_op(op, i: int) -> None:
    """One 1.0 op against format.md section 2.5: a known kind with exactly its fields, each
    within its rule (``VALUES``)."""
    kind = op.get("op") if isinstance(op, dict) else None
    if kind not in FIELDS:
        raise TicketError(f"format 1.0 graph: op {i} is not one of {', '.join(FIELDS)}")
    if set(op) != {"op", *FIELDS[kind]}:
        raise TicketError(f"format 1.0 graph: op {i} ({kind}) has the fields "
                          f"{sorted(set(op) - {'op'})}; it takes {list(FIELDS[kind])}")
    for key in FIELDS[kind]:
        test, says = VALUES[key]
        if not test(op[key]):
            raise TicketError(f"format 1.0 graph: op {i} ({kind}): {key} "
                              f"{reprlib.repr(op[key])} is not {says}")


def _op_nodes(op: dict, i: int, x: str, y: str, shapes: dict, inits: list) -> list:
    """The ONNX nodes of one 1.0 op reading ``x`` and writing ``y``."""
    kind = op["op"]
    if kind == "normalize":
        for key in ("mean", "std"):
            inits.append(numpy_helper.from_array(np.array(op[key], np.float32), f"op{i}.{key}"))
        return [helper.make_node("Sub", [x, f"op{i}.mean"], [f"{y}.centred"]),
                helper.make_node("Div", [f"{y}.centred", f"op{i}.std"], [y])]
    if kind == "flatten":
        return [helper.make_node("Flatten", [x], [y], axis=1)]
    if kind in ("linear", "conv2d"):
        weight = f"{op['name']}.weight"
        inits.append(placeholder(weight, shapes[op["name"]]))
        if kind == "linear":
            return [helper.make_node("Gemm", [x, weight], [y], name=op["name"], transB=1)]
        p, kernel = int(op["padding"]), list(shapes[op["name"]][2:])
        return [helper.make_node("Conv", [x, weight], [y], name=op["name"], pads=[p] * 4,
                                 kernel_shape=kernel)]
    if kind == "batchnorm":
        name = op["name"]
        c = shapes[f"{name}.running_mean"][0]
        inits += [numpy_helper.from_array(np.ones(c, np.float32), f"{name}.scale"),
                  numpy_helper.from_array(np.zeros(c, np.float32), f"{name}.shift"),
                  placeholder(f"{name}.running_mean", (c,)),
                  placeholder(f"{name}.running_var", (c,))]
        inputs = [x, f"{name}.scale", f"{name}.shift", f"{name}.running_mean",
                  f"{name}.running_var"]
        return [helper.make_node("BatchNormalization", inputs, [y], name=name,
                                 epsilon=float(op["eps"]))]
    if kind == "relu":
        return [helper.make_node("Relu", [x], [y])]
    if kind == "maxpool":
        k = int(op["kernel"])
        return [helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[k, k])]
    raise TicketError(f"format 1.0 graph: unknown op {kind!r}")


def skeleton_from_ops(ops: list[dict], shapes: dict, input_shape, classes: int) -> onnx.ModelProto:
    """The skeleton of a 1.0 op list; ``shapes`` maps layer names and extras to shapes."""
    nodes, inits, x = [], [], INPUT
    if not isinstance(ops, list):
        raise TicketError("format 1.0 graph: meta.graph must be a list of ops")
    try:
        for i, op in enumerate(ops):
            _check_op(op, i)
            y = f"op{i}.{op['op']}"
            nodes += _op_nodes(op, i, x, y, shapes, inits)
            x = y
    except (KeyError, TypeError, ValueError) as e:
        raise TicketError(f"format 1.0 graph: broken op ({type(e).__name__}: {e})") from None
    nodes.append(helper.make_node("Identity", [x], [OUTPUT]))
    graph = helper.make_graph(
        nodes, "sltc",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sltc")
    model.ir_version = 8
    return model
