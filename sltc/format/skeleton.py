"""The skeleton: a network's ONNX graph without its regenerable tensors.

Each tensor the ticket regenerates or stores outside the graph (layer weights,
tensors drawn by name, normalisation statistics) is a *placeholder*: an
initializer with its name, type and dims whose data lives outside the protobuf
(``data_location = EXTERNAL``, ``location = "sltc"``). Everything else (the nodes,
constant tensors) is the graph itself. ``docs/format.md`` section 2.4 is the
specification. Numpy and onnx only: the runtime reads skeletons too.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .errors import TicketError
from .limits import MAX_SKELETON_BYTES

ENCODING = "zlib"
LOCATION = "sltc"
INPUT, OUTPUT = "input", "logits"


def is_placeholder(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL and [
        (e.key, e.value) for e in tensor.external_data] == [("location", LOCATION)]


def placeholders(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every placeholder initializer."""
    return {t.name: tuple(t.dims) for t in model.graph.initializer if is_placeholder(t)}


def placeholder(name: str, shape, data_type: int = TensorProto.FLOAT) -> TensorProto:
    tensor = TensorProto(name=name, data_type=data_type, dims=list(shape),
                         data_location=TensorProto.EXTERNAL)
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", LOCATION
    return tensor


def strip(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """Turn the initializers named in ``names`` into placeholders (in place); drop what a
    reader does not need (doc strings, value_info, metadata)."""
    for tensor in model.graph.initializer:
        if tensor.name in names:
            tensor.CopyFrom(placeholder(tensor.name, tensor.dims, tensor.data_type))
    for node in model.graph.node:
        node.doc_string = ""
    model.graph.ClearField("value_info")
    model.ClearField("metadata_props")
    model.doc_string = model.graph.doc_string = ""
    return model


def fill(model: onnx.ModelProto, tensors: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with each placeholder replaced by its array."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        if is_placeholder(tensor):
            array = np.asarray(tensors[tensor.name])
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    return out


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def encode(raw: bytes) -> bytes:
    return zlib.compress(raw, 9)


def decode(payload: bytes, size: int) -> bytes:
    """Inflate a skeleton payload to exactly ``size`` bytes, never more than the cap."""
    if not 0 < size <= MAX_SKELETON_BYTES:
        raise TicketError(f"skeleton size {size} is outside (0, {MAX_SKELETON_BYTES}]")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, size + 1)
    except zlib.error:
        raise TicketError("skeleton: not a valid zlib stream") from None
    if len(raw) != size or not inflater.eof or inflater.unused_data:
        raise TicketError(f"skeleton: inflates to a size other than the declared {size} bytes")
    return raw


def parse(raw: bytes) -> onnx.ModelProto:
    """Parse and check the skeleton's interface names: one input ``input``, one output
    ``logits`` (the graph itself is checked by ``sltc.format.check``)."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise TicketError("skeleton: not a valid ONNX model") from None
    graph = model.graph
    if [i.name for i in graph.input] != [INPUT] or [o.name for o in graph.output] != [OUTPUT]:
        raise TicketError(f"skeleton: the graph must have the single input {INPUT!r} and the "
                          f"single output {OUTPUT!r}")
    return model


def check_sources(model: onnx.ModelProto, sources: dict[str, tuple[int, ...]]) -> None:
    """Every placeholder is filled by exactly one source of the same shape."""
    for name, dims in placeholders(model).items():
        if name not in sources:
            raise TicketError(f"skeleton: placeholder {name!r} has no tensor in the ticket")
        if tuple(sources[name]) != dims:
            raise TicketError(f"skeleton: placeholder {name!r} has shape {list(dims)} but the "
                              f"ticket's tensor has shape {list(sources[name])}")
