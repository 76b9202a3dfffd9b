"""Reading a CSR export (``docs/format.md`` section 3): the whole file checked against the
spec once, at load, before any weight is regenerated. Numpy and safetensors only."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CsrLayer:
    """A layer entry of the manifest: its table entry (``spec``), how its mask is stored
    (``csr`` or ``dense``), whether its values are ``implied`` by the seed or ``stored``, and
    its kept count (``nnz``, csr storage only)."""

    spec: LayerSpec
    storage: str
    values: str
    nnz: int | None

    @classmethod
    def from_json(cls, entry) -> CsrLayer:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or \
                not isinstance(entry.get("tensor"), str):
            raise CsrError("every layer needs a string name and tensor")
        name, spec = entry["name"], _ticket_rule(LayerSpec.from_json, entry)
        storage, values, nnz = entry.get("storage"), entry.get("values"), entry.get("nnz")
        if storage not in STORAGES or values not in VALUES:
            raise CsrError(f"layer {name!r}: storage must be csr or dense, values implied or stored")
        if storage == "dense" and "nnz" in entry:
            raise CsrError(f"layer {name!r}: a dense layer has no nnz")
        if storage == "csr" and (type(nnz) is not int or not 0 <= nnz <= spec.numel):
            raise CsrError(f"layer {name!r}: nnz must be an integer in [0, {spec.numel}]")
        return cls(spec, storage, values, nnz)

    @property
    def kept(self) -> int:
        """The weights it holds: ``nnz`` in csr storage, every one in dense."""
        return self.nnz if self.storage == "csr" else self.spec.numel

    @property
    def keys(self) -> set[str]:
        """The tensors of the file that hold it."""
        keys = ("indptr", "indices") if self.storage == "csr" else ()
        keys += ("values",) if self.values == "stored" else ()
        return {f"{self.spec.name}.{k}" for k in keys}


@dataclass(frozen=True)
class CsrManifest:
    """The manifest of a CSR export (format.md section 3), checked: its seed, the model
    entries every reader uses (``meta``), its layers, the tensors drawn by name, the
    extras stored whole and the encoded skeleton's size."""

    seed: int
    meta: ModelMeta
    layers: tuple[CsrLayer, ...]
    tensors: tuple[DrawnTensor, ...]
    extras: tuple[str, ...]
    skeleton_size: int

    @classmethod
    def from_json(cls, manifest) -> CsrManifest:
        if not isinstance(manifest, dict) or manifest.get("format") != "sltc-csr" or \
                manifest.get("version") != CSR_VERSION:
            raise CsrError(f"not a version {CSR_VERSION} sltc-csr manifest; re-export it from "
                           "the ticket with this sltc")
        if not valid_seed(manifest.get("seed")):
            raise CsrError("manifest seed must be an integer in [0, 2**64)")
        if manifest.get("generator") != {"name": GENERATOR, "key": KEY_DERIVATION}:
            raise CsrError(f"manifest generator is not {GENERATOR}; upgrade sltc")
        meta = _ticket_rule(lambda m: ModelMeta.from_json(m, "manifest"), manifest)
        layers, drawn, extras = (manifest.get(k) for k in ("layers", "tensors", "extras"))
        if not all(isinstance(v, list) for v in (layers, drawn, extras)):
            raise CsrError("manifest layers, tensors and extras must be lists")
        if not all(isinstance(name, str) for name in extras):
            raise CsrError(f"extra {next(n for n in extras if not isinstance(n, str))!r}: "
                           "missing, or not float32")
        entry = manifest.get("skeleton")
        if not isinstance(entry, dict) or entry.get("encoding") != skeleton.ENCODING or \
                type(entry.get("size")) is not int:
            raise CsrError(f"manifest skeleton must say encoding {skeleton.ENCODING} and a size")
        return cls(manifest["seed"], meta, tuple(CsrLayer.from_json(x) for x in layers),
                   tuple(_ticket_rule(DrawnTensor.from_json, t) for t in drawn), tuple(extras),
                   entry["size"])

    @property
    def sources(self) -> dict[str, tuple[int, ...]]:
        """The shape of every skeleton initializer the file fills, by name (extras: from the
        file's tensors)."""
        out = {layer.spec.tensor: layer.spec.shape for layer in self.layers}
        out.update((t.name, t.shape) for t in self.tensors)
        return out


def read(path: Path) -> tuple[CsrManifest, dict]:
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
    return check(manifest, tensors), tensors


def check(manifest, tensors: dict) -> CsrManifest:
    """Every rule of the spec, or a ``CsrError`` naming the first one broken; the manifest
    as its record."""
    record = CsrManifest.from_json(manifest)
    total = sum(layer.spec.numel for layer in record.layers) + \
        sum(t.numel for t in record.tensors)
    if total > MAX_WEIGHTS:
        raise CsrError(f"the export claims more than {MAX_WEIGHTS} weights")
    for layer in record.layers:
        _check_arrays(layer, tensors)
    gated = [layer for layer in record.layers if layer.spec.gated]
    sparsity = sparsity_of(sum(x.kept for x in gated), sum(x.spec.numel for x in gated))
    _ticket_rule(lambda m: check_sparsity(m.sparsity, sparsity, "manifest"), record.meta)
    for name in record.extras:
        if name not in tensors or tensors[name].dtype != np.float32:
            raise CsrError(f"extra {name!r}: missing, or not float32")
    data = tensors.get(SKELETON_KEY)
    if data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise CsrError(f"tensor {SKELETON_KEY!r} must be a uint8 vector")
    expected = {SKELETON_KEY, *record.extras}.union(*(x.keys for x in record.layers))
    unknown = set(tensors) - expected
    if unknown:
        raise CsrError(f"tensor {sorted(unknown)[0]!r} is not in the manifest")
    return record


def _ticket_rule(check, entry):
    """A rule the ticket shares (its layer and tensor tables, its model entries) applied to
    a manifest entry; its failure, or a missing key, as a ``CsrError``."""
    try:
        return check(entry)
    except SltcError as e:
        raise CsrError(str(e).removeprefix("broken header: ")) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise CsrError(f"manifest entry lacks a key or has a wrong type ({e!r})") from None


def _check_arrays(layer: CsrLayer, tensors: dict) -> None:
    """The arrays of one layer: its mask's (csr storage) and its stored values."""
    name, rows = layer.spec.name, layer.spec.shape[0]
    cols = layer.spec.numel // rows
    if layer.storage == "csr":
        _check_csr(name, layer.nnz, rows, cols, tensors)
    if layer.values == "stored":
        _array(tensors, f"{name}.values", np.float32, layer.kept)


def _array(tensors: dict, key: str, dtype, length: int) -> np.ndarray:
    a = tensors.get(key)
    if a is None or a.dtype != dtype or a.shape != (length,):
        raise CsrError(f"tensor {key!r} must be {np.dtype(dtype).name} of length {length}")
    return a


def _check_csr(name: str, nnz: int, rows: int, cols: int, tensors: dict) -> None:
    """``indptr``: int32, rows + 1, from 0, non-decreasing, to nnz; ``indices``: int32,
    nnz, each in [0, cols) and strictly increasing within its row."""
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
