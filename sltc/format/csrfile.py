"""Reading a CSR export (``docs/format.md`` section 3): the whole file checked against the
spec once, at load, before any weight is regenerated. Numpy and safetensors only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import skeleton
from .errors import SltcError
from .limits import MAX_CSR_BYTES, MAX_MANIFEST_BYTES, MAX_WEIGHTS, regular_size
from .records import DrawnTensor, LayerSpec, ModelMeta, check_sparsity, sparsity_of
from .seeding import GENERATOR, KEY_DERIVATION, valid_seed

CSR_VERSION = 2
SKELETON_KEY = "sltc.skeleton"  # the tensor holding the encoded skeleton
STORAGES, VALUES = ("csr", "dense"), ("implied", "stored")


class CsrError(SltcError):
    """A CSR export that does not follow the spec."""


def read(path: Path) -> tuple[dict, dict]:
    """The manifest and the tensors of a CSR export, validated."""
    from safetensors import safe_open

    regular_size(path, MAX_CSR_BYTES, "CSR export", CsrError)
    try:
        with safe_open(str(path), "np") as f:
            text = (f.metadata() or {}).get("sltc")
            if text is None or len(text) > MAX_MANIFEST_BYTES:
                raise CsrError("no sltc manifest of at most "
                               f"{MAX_MANIFEST_BYTES} bytes in its metadata")
            manifest = json.loads(text)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CsrError:
        raise
    except Exception as e:  # noqa: BLE001 - any read failure is a bad file
        raise CsrError(f"not an sltc CSR export ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]})") from None
    check(manifest, tensors)
    return manifest, tensors


def check(manifest, tensors: dict) -> None:
    """Every rule of the spec, or a ``CsrError`` naming the first one broken."""
    if not isinstance(manifest, dict) or manifest.get("format") != "sltc-csr" or \
            manifest.get("version") != CSR_VERSION:
        raise CsrError(f"not a version {CSR_VERSION} sltc-csr manifest; re-export it from the "
                       "ticket with this sltc")
    if not valid_seed(manifest.get("seed")):
        raise CsrError("manifest seed must be an integer in [0, 2**64)")
    if manifest.get("generator") != {"name": GENERATOR, "key": KEY_DERIVATION}:
        raise CsrError(f"manifest generator is not {GENERATOR}; upgrade sltc")
    _ticket_rule(lambda m: ModelMeta.from_json(m, "manifest"), manifest)
    layers, drawn, extras = (manifest.get(k) for k in ("layers", "tensors", "extras"))
    if not all(isinstance(v, list) for v in (layers, drawn, extras)):
        raise CsrError("manifest layers, tensors and extras must be lists")
    expected = {SKELETON_KEY}
    total, gated, kept = 0, 0, 0
    for layer in layers:
        numel = _check_layer(layer, tensors)
        total += numel
        if layer["granularity"] is not None:
            gated += numel
            kept += layer["nnz"] if layer["storage"] == "csr" else numel
        keys = ("indptr", "indices") if layer["storage"] == "csr" else ()
        keys += ("values",) if layer["values"] == "stored" else ()
        expected |= {f"{layer['name']}.{k}" for k in keys}
    for t in drawn:
        total += _ticket_rule(DrawnTensor.from_json, t).numel
    if total > MAX_WEIGHTS:
        raise CsrError(f"the export claims more than {MAX_WEIGHTS} weights")
    _ticket_rule(lambda m: check_sparsity(m["sparsity"], sparsity_of(kept, gated), "manifest"),
                 manifest)
    for name in extras:
        if not isinstance(name, str) or name not in tensors or \
                tensors[name].dtype != np.float32:
            raise CsrError(f"extra {name!r}: missing, or not float32")
    _check_skeleton(manifest.get("skeleton"), tensors.get(SKELETON_KEY))
    unknown = set(tensors) - expected - set(extras)
    if unknown:
        raise CsrError(f"tensor {sorted(unknown)[0]!r} is not in the manifest")


def _ticket_rule(check, entry):
    """A rule the ticket shares (its layer and tensor tables, its model entries) applied to
    a manifest entry; its failure, or a missing key, as a ``CsrError``."""
    try:
        return check(entry)
    except SltcError as e:
        raise CsrError(str(e).removeprefix("broken header: ")) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise CsrError(f"manifest entry lacks a key or has a wrong type ({e!r})") from None


def _check_layer(layer, tensors: dict) -> int:
    """One layer entry and its arrays; returns its element count."""
    if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or \
            not isinstance(layer.get("tensor"), str):
        raise CsrError("every layer needs a string name and tensor")
    name, numel = layer["name"], _ticket_rule(LayerSpec.from_json, layer).numel
    if layer.get("storage") not in STORAGES or layer.get("values") not in VALUES:
        raise CsrError(f"layer {name!r}: storage must be csr or dense, values implied or stored")
    rows = layer["shape"][0]
    cols = numel // rows
    nnz = rows * cols
    if layer["storage"] == "csr":
        nnz = _check_csr(name, layer.get("nnz"), rows, cols, tensors)
    elif "nnz" in layer:
        raise CsrError(f"layer {name!r}: a dense layer has no nnz")
    if layer["values"] == "stored":
        _array(tensors, f"{name}.values", np.float32, nnz)
    return numel


def _array(tensors: dict, key: str, dtype, length: int) -> np.ndarray:
    a = tensors.get(key)
    if a is None or a.dtype != dtype or a.shape != (length,):
        raise CsrError(f"tensor {key!r} must be {np.dtype(dtype).name} of length {length}")
    return a


def _check_csr(name: str, nnz, rows: int, cols: int, tensors: dict) -> int:
    """``indptr``: int32, rows + 1, from 0, non-decreasing, to nnz; ``indices``: int32,
    nnz, each in [0, cols) and strictly increasing within its row."""
    if type(nnz) is not int or not 0 <= nnz <= rows * cols:
        raise CsrError(f"layer {name!r}: nnz must be an integer in [0, {rows * cols}]")
    indptr = _array(tensors, f"{name}.indptr", np.int32, rows + 1)
    indices = _array(tensors, f"{name}.indices", np.int32, nnz)
    steps = np.diff(indptr.astype(np.int64))
    if indptr[0] != 0 or indptr[-1] != nnz or (steps < 0).any():
        raise CsrError(f"layer {name!r}: indptr must rise from 0 to nnz ({nnz})")
    if nnz and (indices.min() < 0 or indices.max() >= cols):
        raise CsrError(f"layer {name!r}: indices must lie in [0, {cols})")
    first = np.zeros(nnz, dtype=bool)  # the first index of each row
    first[indptr[:-1][steps > 0]] = True
    if nnz and (~first[1:] & (np.diff(indices.astype(np.int64)) <= 0)).any():
        raise CsrError(f"layer {name!r}: indices must increase within each row (no "
                       "duplicates)")
    return nnz


def _check_skeleton(entry, data) -> None:
    if not isinstance(entry, dict) or entry.get("encoding") != skeleton.ENCODING or \
            type(entry.get("size")) is not int:
        raise CsrError(f"manifest skeleton must say encoding {skeleton.ENCODING} and a size")
    if data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise CsrError(f"tensor {SKELETON_KEY!r} must be a uint8 vector")
