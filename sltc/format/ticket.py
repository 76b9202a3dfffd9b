"""The ``.slt`` ticket: seed + generator spec + masks + stored tensors + skeleton, checked on load.

Layout (all integers little-endian; ``docs/format.md`` is the specification)::

    magic "SLTICKET" | u16 major | u16 minor | u32 header_len | header JSON | body | u32 crc32

The header's layer and extra tables and its skeleton entry give each payload's offset
(from the start of the body), length and CRC32; payloads tile the body in that order.
The trailing CRC32 covers every byte before it. The skeleton (section 2.4) is the
network's ONNX graph with placeholders for every tensor the tables provide. Numpy and
onnx only: the runtime loads tickets too.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from . import config_record, legacy, maskcode, skeleton
from .check import Bounds, check_model
from .errors import GraphError, TicketError
from .limits import MAX_HEADER_BYTES, MAX_TICKET_BYTES, MAX_WEIGHTS, read_limited
from .outputs import atomic_write_bytes
from .records import DrawnTensor, LayerSpec, ModelMeta, TicketMeta, check_sparsity, sparsity_of
from .seeding import (
    GENERATOR,
    KEY_DERIVATION,
    generate_normal,
    generate_weight,
    normal_span,
    valid_seed,
    weight_span,
)

MAGIC = b"SLTICKET"
VERSION = (1, 1)
PREAMBLE = struct.Struct("<8sHHI")
HASH_CHUNK = 1 << 20  # weights regenerated at a time when verifying
EXTRA_DTYPE = "<f4"


@dataclass
class Ticket:
    """A loaded or freshly frozen ticket. ``masks`` are gate-shaped boolean arrays."""

    seed: int
    layers: dict[str, LayerSpec]  # by name, in table order
    masks: dict[str, np.ndarray]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # stored statistics
    meta: dict = field(default_factory=dict)  # config, input_shape, classes, method, accuracy
    tensors: list[DrawnTensor] = field(default_factory=list)  # drawn by name
    skeleton: onnx.ModelProto | None = None
    stored: list[dict] = field(default_factory=list)  # a loaded file's layer table
    version: tuple[int, int] = VERSION  # of the file it was loaded from
    bounds: Bounds | None = None  # the skeleton's, once checked (check.py)
    info: TicketMeta | None = None  # ``meta`` as its record, where checked (a loaded file)

    # --- weights ---------------------------------------------------------------------------

    def dense_weight(self, name: str) -> np.ndarray:
        """The frozen weight regenerated from the seed, before masking."""
        s = self.layers[name]
        return generate_weight(self.seed, name, s.shape, s.init, s.fan_in, s.gain)

    def weight_mask(self, name: str) -> np.ndarray:
        """The boolean mask expanded to the weight's shape."""
        s, mask = self.layers[name], self.masks[name]
        if s.granularity == "neuron":
            mask = mask.reshape(-1, *([1] * (len(s.shape) - 1)))
        return np.broadcast_to(mask, s.shape)

    def weight(self, name: str) -> np.ndarray:
        """The masked weight; pruned entries are +0.0."""
        return np.where(self.weight_mask(name), self.dense_weight(name), np.float32(0))

    def drawn(self, name: str) -> np.ndarray:
        """A tensor of the ``tensors`` table, drawn from the generator by its name."""
        s = next(t for t in self.tensors if t.name == name)
        return generate_normal(self.seed, name, s.shape, s.std)

    def weights_sha256(self) -> str:
        """SHA-256 of every masked weight, then every drawn tensor, as little-endian float32
        in C order; computed ``HASH_CHUNK`` elements at a time, in bounded memory."""
        h = hashlib.sha256()
        for s in self.layers.values():
            n, flat = s.numel, self.masks[s.name].reshape(-1)
            per_gate = n // flat.size  # 1, or a neuron gate's weights
            for a in range(0, n, HASH_CHUNK):
                b = min(n, a + HASH_CHUNK)
                w = weight_span(self.seed, s.name, s.init, s.fan_in, s.gain, a, b)
                keep = flat[a:b] if per_gate == 1 else flat[np.arange(a, b) // per_gate]
                h.update(np.where(keep, w, np.float32(0)).astype(EXTRA_DTYPE).tobytes())
        for s in self.tensors:
            for a in range(0, s.numel, HASH_CHUNK):
                span = normal_span(self.seed, s.name, s.std, a, min(s.numel, a + HASH_CHUNK))
                h.update(span.astype(EXTRA_DTYPE).tobytes())
        return h.hexdigest()

    def sources(self) -> dict[str, tuple[int, ...]]:
        """Skeleton tensor name -> shape, for every tensor the ticket provides."""
        out = {s.tensor: s.shape for s in self.layers.values()}
        out.update((s.name, s.shape) for s in self.tensors)
        out.update((name, a.shape) for name, a in self.extras.items())
        return out

    def graph_tensors(self) -> dict[str, np.ndarray]:
        """The arrays that fill the skeleton's placeholders: masked weights, drawn tensors
        and stored statistics."""
        wanted = skeleton.placeholders(self.skeleton)
        out = {s.tensor: self.weight(s.name) for s in self.layers.values() if s.tensor in wanted}
        out.update((s.name, self.drawn(s.name)) for s in self.tensors if s.name in wanted)
        out.update((k, v) for k, v in self.extras.items() if k in wanted)
        return out

    def masked_tensors(self) -> set[str]:
        """Skeleton names of the gated weights (the ones worth storing sparse)."""
        return {s.tensor for s in self.gated()}

    # --- statistics ------------------------------------------------------------------------

    def gated(self) -> list[LayerSpec]:
        return [s for s in self.layers.values() if s.gated]

    def sparsity(self) -> float:
        return masks_sparsity(self.layers, self.masks)

    def record(self) -> TicketMeta:
        """``meta`` as its record: a loaded file's, checked once at load; a freshly frozen
        ticket's, checked now."""
        return self.info or TicketMeta.from_json(self.meta, self.seed)

    def model_meta(self) -> ModelMeta:
        """What a reader of the model needs: ``meta``'s model entries, the dataset section
        of its config and the seed."""
        return self.record().model

    # --- bytes -----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        body, layers, extras = bytearray(), [], []
        for s in self.layers.values():
            mask = self.masks[s.name]
            encoding, payload = maskcode.encode(mask)
            layers.append({**s.to_json(), "mask_shape": list(mask.shape),
                           "ones": int(mask.sum()), "encoding": encoding,
                           **_region(body, payload)})
        for name in sorted(self.extras):
            arr = np.asarray(self.extras[name], dtype=EXTRA_DTYPE)
            extras.append({"name": name, "dtype": EXTRA_DTYPE, "shape": list(arr.shape),
                           **_region(body, arr.tobytes())})
        raw = skeleton.serialize(self.skeleton)
        graph = {"encoding": skeleton.ENCODING, "size": len(raw),
                 **_region(body, skeleton.encode(raw))}
        header = {"format": "sltc-ticket", "seed": self.seed,
                  "generator": {"name": GENERATOR, "key": KEY_DERIVATION},
                  "layers": layers, "tensors": [t.to_json() for t in self.tensors],
                  "extras": extras,
                  "skeleton": graph, "meta": self.meta, "weights_sha256": self.weights_sha256()}
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        data = PREAMBLE.pack(MAGIC, *VERSION, len(head)) + head + bytes(body)
        return data + struct.pack("<I", zlib.crc32(data))

    def save(self, path: str | Path) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Ticket:
        data = read_limited(path, MAX_TICKET_BYTES, "ticket", TicketError)
        try:
            return cls.from_bytes(data, verify)
        except TicketError as e:
            raise TicketError(f"{path}: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes, verify: bool = True) -> Ticket:
        header, body, minor = _split(data)
        try:
            return _parse(header, body, verify, minor)
        except TicketError:
            raise
        except KeyError as e:
            raise TicketError(f"broken header: missing key {e}") from None
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise TicketError(f"broken header ({type(e).__name__}: {e})") from None


def _region(body: bytearray, payload: bytes) -> dict:
    region = {"offset": len(body), "length": len(payload), "crc32": zlib.crc32(payload)}
    body += payload
    return region


def _split(data: bytes) -> tuple[dict, memoryview, int]:
    """Check magic, version, the trailing CRC and the header length; parse the header."""
    if len(data) < PREAMBLE.size + 4:
        raise TicketError(f"truncated: {len(data)} bytes is shorter than any ticket")
    magic, major, minor, head_len = PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise TicketError("not an sltc ticket (wrong magic bytes)")
    if major != VERSION[0]:
        raise TicketError(f"unsupported ticket version {major}.{minor}; this sltc reads "
                          f"{VERSION[0]}.x")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise TicketError("checksum mismatch: the file is truncated or corrupted")
    if head_len > min(MAX_HEADER_BYTES, len(data) - PREAMBLE.size - 4):
        raise TicketError(f"header length {head_len} runs past the end of the file")
    try:
        header = json.loads(bytes(data[PREAMBLE.size:PREAMBLE.size + head_len]).decode("utf-8"),
                            parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise TicketError("broken header: not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != "sltc-ticket":
        raise TicketError("broken header: not an sltc-ticket header")
    return header, memoryview(data)[PREAMBLE.size + head_len:-4], minor


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _payload(body: memoryview, entry: dict, expected_offset: int, what: str) -> bytes:
    offset, length = entry["offset"], entry["length"]
    if type(offset) is not int or type(length) is not int or length < 0:
        raise TicketError(f"broken header: {what} offset/length are not integers")
    if offset != expected_offset or offset + length > len(body):
        raise TicketError(f"{what}: payload at {offset}+{length} does not tile the body "
                          f"({len(body)} bytes)")
    payload = bytes(body[offset:offset + length])
    if zlib.crc32(payload) != entry["crc32"]:
        raise TicketError(f"{what}: payload CRC32 mismatch")
    return payload


def _read_layers(header: dict, body: memoryview, minor: int) -> tuple[dict, dict, int]:
    """The layer table and its masks; returns (layers, masks, bytes of body used)."""
    offset, total, layers, masks = 0, 0, {}, {}
    for entry in header["layers"]:
        spec = LayerSpec.from_json(entry, minor)
        mask_shape = spec.check_mask_shape(entry["mask_shape"])
        total += spec.numel
        if total > MAX_WEIGHTS:
            raise TicketError(f"the ticket claims more than {MAX_WEIGHTS} weights")
        if spec.name in layers:
            raise TicketError("broken header: duplicate layer names")
        if not spec.gated and (entry["encoding"] != "constant" or
                               entry["ones"] != math.prod(mask_shape)):
            raise TicketError(f"layer {spec.name!r} is ungated (granularity null): its mask is "
                              "encoding constant, all ones")
        payload = _payload(body, entry, offset, f"layer {spec.name!r}")
        offset += entry["length"]
        flat = maskcode.decode(entry["encoding"], payload, math.prod(mask_shape), entry["ones"])
        masks[spec.name] = flat.reshape(mask_shape)
        layers[spec.name] = spec
    return layers, masks, offset


def _read_extras(header: dict, body: memoryview, offset: int) -> tuple[dict, int]:
    extras = {}
    for entry in header["extras"]:
        shape = [int(v) for v in entry["shape"]] if entry["shape"] else []
        if entry["dtype"] != EXTRA_DTYPE or entry["length"] != 4 * math.prod(shape):
            raise TicketError(f"extra {entry['name']!r}: dtype or length does not match shape")
        payload = _payload(body, entry, offset, f"extra {entry['name']!r}")
        offset += entry["length"]
        extras[entry["name"]] = np.frombuffer(payload, EXTRA_DTYPE).reshape(shape).copy()
    return extras, offset


def _read_skeleton(header: dict, body: memoryview, offset: int) -> tuple[onnx.ModelProto, int]:
    entry = header["skeleton"]
    if entry["encoding"] != skeleton.ENCODING or type(entry["size"]) is not int:
        raise TicketError(f"skeleton: unknown encoding {entry['encoding']!r}")
    payload = _payload(body, entry, offset, "skeleton")
    return skeleton.parse(skeleton.decode(payload, entry["size"])), offset + entry["length"]


def check_meta(meta, seed: int) -> tuple[dict, TicketMeta]:
    """A ticket's ``meta``: the model entries, and a ``config`` that is an object naming the
    ticket's seed. Returns ``meta`` with its config whole (every key a config may hold, a
    missing one at its default: format.md section 2.1), and its record."""
    info = TicketMeta.from_json(meta, seed)
    config = config_record.whole(info.config)
    return {**meta, "config": config}, replace(info, config=config)


def check_skeleton(graph: onnx.ModelProto, model: ModelMeta) -> Bounds:
    """The skeleton's graph against every graph rule and the ticket's ``input_shape`` and
    ``classes`` (format.md section 2.6), before a weight is made or an op runs."""
    try:
        return check_model(graph, model.input_shape, model.classes)
    except GraphError as e:
        raise TicketError(f"skeleton: {e}") from None


def _check_version(header: dict, minor: int) -> None:
    """A header of the version the preamble names: 1.0 has ``meta.graph`` and no skeleton,
    1.1 (and above) a skeleton and no ``meta.graph``."""
    meta = header.get("meta")
    graph = isinstance(meta, dict) and "graph" in meta
    if minor == 0 and "skeleton" in header and not graph:
        raise TicketError("the preamble says format 1.0 but the header is a 1.1 header (a "
                          "skeleton, no meta.graph): the file's minor version (bytes 10-11) "
                          "is wrong; write 1")
    if minor >= 1 and "skeleton" not in header and graph:
        raise TicketError(f"the preamble says format 1.{minor} but the header is a 1.0 header "
                          "(a meta.graph, no skeleton): the file's minor version (bytes "
                          "10-11) is wrong; write 0")


def masks_sparsity(layers: dict[str, LayerSpec], masks: dict[str, np.ndarray]) -> float:
    """One minus the kept weights of the gated layers over all their weights (0 without a
    gated layer); a neuron gate keeps or prunes its whole row."""
    gated = [s for s in layers.values() if s.gated]
    kept = sum(int(masks[s.name].sum()) * (s.numel // masks[s.name].size) for s in gated)
    return sparsity_of(kept, sum(s.numel for s in gated))


def _parse(header: dict, body: memoryview, verify: bool, minor: int) -> Ticket:
    _check_version(header, minor)
    if header["generator"] != {"name": GENERATOR, "key": KEY_DERIVATION}:
        raise TicketError(f"generator {header['generator']} is not {GENERATOR}; upgrade sltc")
    seed = header["seed"]
    if not valid_seed(seed):
        raise TicketError("broken header: seed must be an integer in [0, 2**64)")
    layers, masks, offset = _read_layers(header, body, minor)
    tensors = [DrawnTensor.from_json(t) for t in (header["tensors"] if minor >= 1 else [])]
    if sum(t.numel for t in tensors) + sum(s.numel for s in layers.values()) > MAX_WEIGHTS:
        raise TicketError(f"the ticket claims more than {MAX_WEIGHTS} weights")
    extras, offset = _read_extras(header, body, offset)
    meta, info = check_meta(header["meta"], seed)
    check_sparsity(info.model.sparsity, masks_sparsity(layers, masks))
    if minor >= 1:
        graph, offset = _read_skeleton(header, body, offset)
    else:
        shapes = {s.name: list(s.shape) for s in layers.values()} | {
            k: v.shape for k, v in extras.items()}
        if info.ops is None:
            raise TicketError("broken header: missing key 'graph'")
        graph = legacy.skeleton_from_ops(info.ops, shapes, list(info.model.input_shape),
                                         info.model.classes)
    if offset != len(body):
        raise TicketError(f"{len(body) - offset} bytes after the last payload")
    ticket = Ticket(seed, layers, masks, extras, meta, tensors, graph, header["layers"],
                    (VERSION[0], minor), info=info)
    skeleton.check_sources(graph, ticket.sources())
    ticket.bounds = check_skeleton(graph, info.model)
    if verify and ticket.weights_sha256() != header["weights_sha256"]:
        raise TicketError("regenerated weights do not match the ticket's SHA-256: the "
                          "generator differs from the one that made it")
    return ticket
