"""Load a deployable model: a ticket, a CSR export or an ONNX export, each as a ``Graph``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sltc.format import csrfile, skeleton
from sltc.format.check import check_model
from sltc.format.csrfile import SKELETON_KEY, CsrLayer
from sltc.format.errors import SltcError
from sltc.format.graph import Graph
from sltc.format.limits import MAX_ONNX_BYTES, regular_size, require_regular
from sltc.format.records import ModelMeta
from sltc.format.seeding import generate_normal, generate_weight

from .quantize import MODES

PRECISIONS = ("fp32", *MODES)


@dataclass
class Deployable:
    """What the engines run: the network as a ``Graph`` with its weights in place."""

    path: Path
    kind: str  # "ticket", "csr" or "onnx"
    meta: ModelMeta
    graph: Graph
    load_s: float = 0.0
    precision: str = "fp32"  # an ONNX export's sltc.quantize: int8 or int8-dynamic

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
    from sltc.format.ticket import Ticket

    ticket = Ticket.load(path)
    return Deployable(path, "ticket", ticket.model_meta(), Graph.from_ticket(ticket))


def _csr_weight(tensors: dict, layer: CsrLayer, seed: int) -> np.ndarray:
    """The dense masked weight of one layer of a (validated) CSR export."""
    spec = layer.spec
    rows, cols = spec.shape[0], spec.numel // spec.shape[0]
    if layer.values == "stored":
        dense_values = tensors[f"{spec.name}.values"]
    else:
        dense_values = generate_weight(seed, spec.name, spec.shape, spec.init, spec.fan_in,
                                       spec.gain)
    if layer.storage == "dense":
        return dense_values.reshape(spec.shape)
    indptr, indices = tensors[f"{spec.name}.indptr"], tensors[f"{spec.name}.indices"]
    mask = np.zeros((rows, cols), dtype=bool)
    mask[np.repeat(np.arange(rows), np.diff(indptr)), indices] = True
    w = np.zeros((rows, cols), dtype=np.float32)
    if layer.values == "stored":
        w[mask] = dense_values
    else:
        w[mask] = dense_values.reshape(rows, cols)[mask]
    return w.reshape(spec.shape)


def _from_csr(path: Path) -> Deployable:
    try:
        manifest, tensors = csrfile.read(path)
        raw = skeleton.decode(tensors[SKELETON_KEY].tobytes(), manifest.skeleton_size)
        model = skeleton.parse(raw)
        sources = manifest.sources
        sources.update((name, tensors[name].shape) for name in manifest.extras)
        skeleton.check_sources(model, sources)
        bounds = check_model(model, manifest.meta.input_shape, manifest.meta.classes)
    except SltcError as e:
        raise SltcError(f"{path}: {e}") from None
    seed = manifest.seed
    arrays = {x.spec.tensor: _csr_weight(tensors, x, seed) for x in manifest.layers}
    arrays.update((t.name, generate_normal(seed, t.name, t.shape, t.std))
                  for t in manifest.tensors)
    arrays.update((name, tensors[name]) for name in manifest.extras)
    graph = Graph.from_onnx(model, arrays, {x.spec.tensor for x in manifest.layers
                                            if x.storage == "csr"}, bounds)
    return Deployable(path, "csr", manifest.meta, graph)


def _onnx_meta(path: Path, model, graph: Graph) -> ModelMeta:
    """The model entries from an ONNX export's ``sltc.*`` metadata (absent: unknown)."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        sparsity = float(props.get("sltc.sparsity", "nan"))
        accuracy = props.get("sltc.test_accuracy")
        accuracy = None if accuracy in (None, "None") else float(accuracy)
        data = json.loads(props["sltc.data"]) if "sltc.data" in props else None
        seed = int(props.get("sltc.seed", 0))
    except (ValueError, RecursionError):
        raise SltcError(f"{path}: damaged sltc.* metadata; re-export the model from its "
                        "ticket") from None
    if accuracy is not None and not 0 <= accuracy <= 1 or not isinstance(data, (dict, type(None))):
        raise SltcError(f"{path}: damaged sltc.* metadata; re-export the model from its ticket")
    return ModelMeta(tuple(graph.input_shape), graph.classes, sparsity, accuracy, data, seed)


def _from_onnx(path: Path) -> Deployable:
    """An ONNX file, its external data (if any) read from its own folder only."""
    import onnx

    regular_size(path, MAX_ONNX_BYTES, "ONNX model")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise SltcError(f"{path}: not a readable ONNX file ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]})") from None
    try:
        graph = Graph.from_onnx(model, bounds=check_model(model, folder=path.parent))
    except SltcError as e:
        raise SltcError(f"{path}: {e}") from None
    return Deployable(path, "onnx", _onnx_meta(path, model, graph), graph,
                      precision=_precision(path, model))


def _precision(path: Path, model) -> str:
    props = {p.key: p.value for p in model.metadata_props}
    precision = props.get("sltc.quantize", "fp32")
    if precision not in PRECISIONS:
        raise SltcError(f"{path}: damaged sltc.* metadata (sltc.quantize {precision[:40]!r}, "
                        f"not one of {', '.join(PRECISIONS)}); re-export the model from its ticket")
    return precision


def load(path: str | Path, kind: str | None = None) -> Deployable:
    """The model in ``path``: a ticket, CSR or ONNX file by its suffix, or as ``kind`` says
    (a staged file without its suffix)."""
    path = Path(path)
    require_regular(path, "model")
    tic = time.perf_counter()
    model = {"ticket": _from_ticket, "csr": _from_csr, "onnx": _from_onnx}[kind or kind_of(path)](path)
    model.load_s = time.perf_counter() - tic
    return model
