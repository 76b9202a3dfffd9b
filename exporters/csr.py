"""``--format csr``: CSR ``indptr`` / ``indices`` per gated layer, in safetensors.

Values are implied by the seed (``--values implied``, the default) or stored
(``--values stored``). Readable with ``safetensors.numpy`` and scipy alone; the
JSON manifest in the metadata key ``sltc`` is specified in ``docs/format.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from sltc.errors import SltcError
from sltc.io import atomic_write
from sltc.seeding import GENERATOR, KEY_DERIVATION

from . import EXPORTERS
from .onnx import ticket_sha256

CSR_FORMAT_VERSION = 1


def csr_arrays(mask2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``indptr`` and ``indices`` (int32) of a 2-D boolean mask."""
    indptr = np.concatenate([[0], np.cumsum(mask2d.sum(1))]).astype(np.int32)
    indices = np.nonzero(mask2d)[1].astype(np.int32)
    return indptr, indices


@EXPORTERS.register("csr")
def export_csr(ticket, source, output, *, values: str = "implied", **_) -> dict:
    if values not in ("implied", "stored"):
        raise SltcError(f"--values {values!r}: choose implied or stored")
    tensors, layers = {}, []
    for spec in ticket.layers:
        name, shape = spec["name"], spec["shape"]
        mask2d = ticket.weight_mask(name).reshape(shape[0], -1)
        entry = {**spec, "storage": "dense" if spec["granularity"] is None else "csr",
                 "values": values}
        if entry["storage"] == "csr":
            tensors[f"{name}.indptr"], tensors[f"{name}.indices"] = csr_arrays(mask2d)
            entry["nnz"] = int(mask2d.sum())
            if values == "stored":
                w = ticket.dense_weight(name).reshape(shape[0], -1)
                tensors[f"{name}.values"] = w[mask2d].astype(np.float32)
        elif values == "stored":
            tensors[f"{name}.values"] = ticket.dense_weight(name).astype(np.float32)
        layers.append(entry)
    for name, array in ticket.extras.items():
        tensors[name] = np.ascontiguousarray(array, dtype=np.float32)
    meta = ticket.meta
    manifest = {"format": "sltc-csr", "version": CSR_FORMAT_VERSION, "seed": ticket.seed,
                "generator": {"name": GENERATOR, "key": KEY_DERIVATION}, "layers": layers,
                "graph": meta["graph"], "input_shape": meta["input_shape"],
                "classes": meta["classes"], "preprocessing": meta["preprocessing"],
                "sparsity": meta["sparsity"], "test_accuracy": meta.get("test_accuracy"),
                "data": meta["config"]["data"], "ticket_sha256": ticket_sha256(source)}
    atomic_write(output, lambda tmp: save_file(tensors, tmp, metadata={
        "sltc": json.dumps(manifest, sort_keys=True)}))
    return {"format": "csr", "output": str(output), "values": values,
            "file_bytes": Path(output).stat().st_size}
