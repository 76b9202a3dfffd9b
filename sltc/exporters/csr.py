"""``--format csr``: CSR ``indptr`` / ``indices`` per gated layer, plus the skeleton, in safetensors.

Values are implied by the seed (``--values implied``, the default) or stored
(``--values stored``). The structure of the network travels as the ticket's encoded
skeleton in the uint8 tensor ``sltc.skeleton``; the JSON manifest in the metadata key
``sltc`` is specified in ``docs/format.md`` section 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from sltc.format import skeleton
from sltc.format.csrfile import CSR_VERSION, SKELETON_KEY
from sltc.format.errors import SltcError
from sltc.format.outputs import atomic_write
from sltc.format.records import LayerSpec
from sltc.format.seeding import GENERATOR, KEY_DERIVATION

from ._registry import EXPORTERS
from .onnx import ticket_sha256


def csr_arrays(mask2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``indptr`` and ``indices`` (int32) of a 2-D boolean mask."""
    indptr = np.concatenate([[0], np.cumsum(mask2d.sum(1))]).astype(np.int32)
    indices = np.nonzero(mask2d)[1].astype(np.int32)
    return indptr, indices


def _layer(ticket, spec: LayerSpec, values: str, tensors: dict) -> dict:
    """One layer's manifest entry; its arrays go into ``tensors``."""
    name, shape = spec.name, spec.shape
    entry = {**spec.to_json(), "storage": "csr" if spec.gated else "dense", "values": values}
    if entry["storage"] == "csr":
        mask2d = ticket.weight_mask(name).reshape(shape[0], -1)
        tensors[f"{name}.indptr"], tensors[f"{name}.indices"] = csr_arrays(mask2d)
        entry["nnz"] = int(mask2d.sum())
        if values == "stored":
            w = ticket.dense_weight(name).reshape(shape[0], -1)
            tensors[f"{name}.values"] = w[mask2d].astype(np.float32)
    elif values == "stored":  # the whole weight, flat (format.md section 3)
        tensors[f"{name}.values"] = ticket.dense_weight(name).astype(np.float32).reshape(-1)
    return entry


@EXPORTERS.register("csr")
def export_csr(ticket, source, output, *, values: str = "implied") -> dict:
    if values not in ("implied", "stored"):
        raise SltcError(f"--values {values!r}: choose implied or stored")
    tensors: dict[str, np.ndarray] = {}
    layers = [_layer(ticket, spec, values, tensors) for spec in ticket.layers.values()]
    for name, array in ticket.extras.items():
        tensors[name] = np.asarray(array, dtype=np.float32)
    raw = skeleton.serialize(ticket.skeleton)
    tensors[SKELETON_KEY] = np.frombuffer(skeleton.encode(raw), dtype=np.uint8)
    manifest = {"format": "sltc-csr", "version": CSR_VERSION,
                "generator": {"name": GENERATOR, "key": KEY_DERIVATION}, "layers": layers,
                "tensors": [t.to_json() for t in ticket.tensors],
                "extras": sorted(ticket.extras),
                "skeleton": {"encoding": skeleton.ENCODING, "size": len(raw)},
                **ticket.model_meta().to_json(),  # input_shape ... data, seed
                "ticket_sha256": ticket_sha256(source)}
    atomic_write(output, lambda tmp: save_file(tensors, tmp, metadata={
        "sltc": json.dumps(manifest, sort_keys=True)}))
    return {"format": "csr", "output": str(output), "values": values,
            "file_bytes": Path(output).stat().st_size}
