"""Load a deployable model: a ticket, a CSR export or an ONNX export. Numpy only."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sltc.errors import SltcError
from sltc.seeding import generate_weight

from .graph import materialise


@dataclass
class Deployable:
    """What the engines run: the graph with weights (``ops``) or an ONNX file."""

    path: Path
    kind: str  # "ticket", "csr" or "onnx"
    meta: dict  # input_shape, classes, data, test_accuracy, sparsity
    ops: list[dict] | None = None  # graph ops with "weight" (dense, masked) attached
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # 2-D boolean, per layer
    load_s: float = 0.0

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".slt"):
        return "ticket"
    if name.endswith(".safetensors"):
        return "csr"
    if name.endswith(".onnx"):
        return "onnx"
    raise SltcError(f"{path}: unknown model type; pass a .slt ticket, a .csr.safetensors "
                    "or a .onnx export")


def _from_ticket(path: Path) -> Deployable:
    from sltc.ticket import Ticket

    ticket = Ticket.load(path)
    meta = {k: ticket.meta[k] for k in ("input_shape", "classes", "sparsity", "graph")}
    meta.update(test_accuracy=ticket.meta.get("test_accuracy"), data=ticket.meta["config"]["data"],
                seed=ticket.seed)
    masks = {s["name"]: ticket.weight_mask(s["name"]).reshape(s["shape"][0], -1)
             for s in ticket.layers}
    ops = materialise(ticket.meta["graph"], ticket.weight, ticket.extras)
    return Deployable(path, "ticket", meta, ops, masks)


def _csr_weight(tensors: dict, layer: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(dense masked weight, 2-D mask) of one layer of a CSR export."""
    name, shape = layer["name"], tuple(layer["shape"])
    rows = shape[0]
    cols = int(np.prod(shape[1:]))
    if layer["values"] == "stored":
        dense_values = tensors[f"{name}.values"]
    else:
        dense_values = generate_weight(seed, name, shape, layer["init"], layer["fan_in"],
                                       layer["gain"])
    if layer["storage"] == "dense":
        return dense_values.reshape(shape), np.ones((rows, cols), dtype=bool)
    indptr, indices = tensors[f"{name}.indptr"], tensors[f"{name}.indices"]
    if len(indptr) != rows + 1 or indptr[-1] != len(indices) or (
            len(indices) and (indices.min() < 0 or indices.max() >= cols)):
        raise SltcError(f"{name}: CSR arrays do not fit shape {list(shape)}; re-export")
    mask = np.zeros((rows, cols), dtype=bool)
    mask[np.repeat(np.arange(rows), np.diff(indptr)), indices] = True
    w = np.zeros((rows, cols), dtype=np.float32)
    if layer["values"] == "stored":
        w[mask] = dense_values
    else:
        w[mask] = dense_values.reshape(rows, cols)[mask]
    return w.reshape(shape), mask


def _from_csr(path: Path) -> Deployable:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        with safe_open(str(path), "np") as f:
            manifest = json.loads((f.metadata() or {})["sltc"])
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any read failure is a bad file
        raise SltcError(f"{path}: not an sltc CSR export ({e})") from None
    if manifest.get("format") != "sltc-csr" or manifest.get("version") != 1:
        raise SltcError(f"{path}: unsupported CSR export format; re-export with this sltc")
    weights, masks = {}, {}
    for layer in manifest["layers"]:
        weights[layer["name"]], masks[layer["name"]] = _csr_weight(tensors, layer, manifest["seed"])
    ops = materialise(manifest["graph"], weights.__getitem__, tensors)
    meta = {k: manifest[k] for k in ("input_shape", "classes", "sparsity", "graph",
                                     "test_accuracy", "data", "seed")}
    return Deployable(path, "csr", meta, ops, masks)


def _from_onnx(path: Path) -> Deployable:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise SltcError(f"{path}: not a readable ONNX file ({e})") from None
    props = {p.key: p.value for p in model.metadata_props}
    dims = model.graph.input[0].type.tensor_type.shape.dim
    out = model.graph.output[0].type.tensor_type.shape.dim
    meta = {"input_shape": [d.dim_value for d in dims[1:]], "classes": out[1].dim_value,
            "sparsity": float(props.get("sltc.sparsity", "nan")),
            "test_accuracy": float(props["sltc.test_accuracy"]) if "sltc.test_accuracy" in props
            else None, "data": json.loads(props["sltc.data"]) if "sltc.data" in props else None,
            "seed": int(props.get("sltc.seed", 0))}
    return Deployable(path, "onnx", meta)


def load(path: str | Path) -> Deployable:
    path = Path(path)
    if not path.is_file():
        raise SltcError(f"{path}: no such file")
    tic = time.perf_counter()
    model = {"ticket": _from_ticket, "csr": _from_csr, "onnx": _from_onnx}[kind_of(path)](path)
    model.load_s = time.perf_counter() - tic
    return model
