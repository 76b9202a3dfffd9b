"""``--format onnx``: masks baked into plain MatMul / Conv weights; standard ops only.

Input ``input`` (float32 pixels in [0, 1], dynamic batch), output ``logits``;
normalisation inside the graph; seed, sparsity and the ticket's SHA-256 in
``metadata_props``. ``weights="sparse"`` stores each weight as a ``Constant``
with ``sparse_value`` (int64 linear indices), which the full checker accepts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sltc.runtime.graph import compact, materialise

from sltc.errors import SltcError
from sltc.io import atomic_write

from . import EXPORTERS

OPSET = 17
EXTERNAL_DATA_BYTES = 1_800_000_000  # above this, weights go to a side file (protobuf's 2 GB cap)


def _const(name: str, array: np.ndarray, sparse: bool, inits: list, nodes: list) -> str:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not sparse:
        inits.append(numpy_helper.from_array(array, name))
        return name
    idx = np.flatnonzero(array).astype(np.int64)
    values = numpy_helper.from_array(array.ravel()[idx], f"{name}.values")
    indices = numpy_helper.from_array(idx, f"{name}.indices")
    tensor = helper.make_sparse_tensor(values, indices, list(array.shape))
    nodes.append(helper.make_node("Constant", [], [name], name=f"{name}.const",
                                  sparse_value=tensor))
    return name


def build_model(ops: list[dict], input_shape, classes: int, sparse: bool,
                metadata: dict) -> onnx.ModelProto:
    nodes, inits, x = [], [], "input"
    for i, op in enumerate(ops):
        kind, y = op["op"], f"t{i}_{op['op']}"
        if kind == "normalize":
            m = _const(f"t{i}.mean", np.array(op["mean"]), False, inits, nodes)
            s = _const(f"t{i}.std", np.array(op["std"]), False, inits, nodes)
            nodes.append(helper.make_node("Sub", [x, m], [f"{y}_c"]))
            nodes.append(helper.make_node("Div", [f"{y}_c", s], [y]))
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [y], axis=1))
        elif kind == "linear":
            w = _const(f"{op['name']}.weight_t", op["weight"].T, sparse, inits, nodes)
            nodes.append(helper.make_node("MatMul", [x, w], [y], name=op["name"]))
        elif kind == "conv2d":
            w = _const(f"{op['name']}.weight", op["weight"], sparse, inits, nodes)
            p = op["padding"]
            nodes.append(helper.make_node("Conv", [x, w], [y], name=op["name"],
                                          pads=[p, p, p, p], kernel_shape=list(op["weight"].shape[2:])))
        elif kind == "batchnorm":
            c = len(op["mean"])
            args = [_const(f"{op['name']}.{k}", v, False, inits, nodes) for k, v in
                    (("scale", np.ones(c)), ("bias", np.zeros(c)), ("mean", op["mean"]),
                     ("var", op["var"]))]
            nodes.append(helper.make_node("BatchNormalization", [x, *args], [y], name=op["name"],
                                          epsilon=float(op["eps"])))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif kind == "maxpool":
            k = op["kernel"]
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[k, k]))
        x = y
    nodes.append(helper.make_node("Identity", [x], ["logits"]))
    graph = helper.make_graph(
        nodes, "sltc_ticket",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sltc", producer_version="0.1.0")
    model.ir_version = 8
    helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    return model


def parity(model_path: str, ticket, data_root=None, batch: int = 512) -> dict:
    """onnxruntime against the torch model rebuilt from the ticket, on real test images."""
    import torch
    from sltc.runtime._ort import session

    from sltc.data import recorded_test_set
    from sltc.rebuild import model_from_ticket

    data = ticket.meta["config"]["data"]
    test = recorded_test_set(data, ticket.meta["config"]["seed"], data_root)
    x = test.images[:batch].astype(np.float32) / 255.0
    with torch.no_grad():
        expected = model_from_ticket(ticket)(torch.from_numpy(x)).numpy()
    sess, _ = session(model_path, "cpu")
    got = sess.run(["logits"], {"input": x})[0]
    return {"max_abs_diff": float(np.abs(got - expected).max()),
            "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
            "checked_inputs": len(x)}


def ticket_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@EXPORTERS.register("onnx")
def export_onnx(ticket, source, output, *, weights: str = "dense", compact_units: bool = False,
                check: bool = True, data_root=None, tolerance: float = 1e-4, **_) -> dict:
    if weights not in ("dense", "sparse"):
        raise SltcError(f"--weights {weights!r}: choose dense or sparse")
    meta = ticket.meta
    ops = materialise(meta["graph"], ticket.weight, ticket.extras)
    if compact_units:
        ops = compact(ops, meta["input_shape"])
    props = {"sltc.seed": ticket.seed, "sltc.sparsity": meta["sparsity"],
             "sltc.ticket_sha256": ticket_sha256(source), "sltc.method": meta["method"],
             "sltc.compact": compact_units, "sltc.weights": weights,
             "sltc.test_accuracy": meta.get("test_accuracy"),
             "sltc.data": json.dumps(meta["config"]["data"], sort_keys=True)}
    model = build_model(ops, meta["input_shape"], meta["classes"], weights == "sparse", props)
    external = model.ByteSize() > EXTERNAL_DATA_BYTES
    report = {"format": "onnx", "output": str(output), "weights": weights, "opset": OPSET,
              "compact": compact_units, "external_data": external}

    def write(tmp: str) -> None:
        onnx.save_model(model, tmp, save_as_external_data=external,
                        location=f"{Path(output).name}.data" if external else None)
        onnx.checker.check_model(tmp, full_check=True)
        if check:
            report.update(parity(tmp, ticket, data_root))
            if report["max_abs_diff"] > tolerance or report["top1_agreement"] < 1.0:
                raise SltcError(f"parity check failed: max |onnx - torch| = "
                                f"{report['max_abs_diff']:.3g}, top-1 agreement "
                                f"{report['top1_agreement']:.4f}; no file written")

    atomic_write(output, write)
    report["file_bytes"] = Path(output).stat().st_size
    return report
