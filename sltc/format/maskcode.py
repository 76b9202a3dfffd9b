"""Mask coding near the entropy floor: ``constant``, ``bitmap`` and ``rans``.

``rans`` packs the mask into bytes (bit ``i`` of byte ``j`` is mask bit
``8*j + i``) and codes the bytes with a static model, each byte's probability
``p^k (1-p)^(8-k)`` for its ``k`` set bits and the layer density ``p``, quantised
to 16 bits. The bytes are spread over interleaved rANS lanes so that numpy
decodes all lanes in one vector step. ``docs/format.md`` specifies the stream.
Numpy only; raises ``TicketError`` on anything that does not decode cleanly.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import TicketError

SCALE_BITS = 16
M = 1 << SCALE_BITS
RANS_LOW = 1 << 16  # states live in [2^16, 2^32); 16-bit words are shifted in and out
SYMBOLS_PER_LANE = 2048
MAX_LANES = 256
_POPCOUNT = np.array([bin(s).count("1") for s in range(256)], dtype=np.int64)


def lane_count(nsym: int) -> int:
    return max(1, min(MAX_LANES, math.ceil(nsym / SYMBOLS_PER_LANE)))


def byte_frequencies(ones: int, n: int) -> np.ndarray:
    """The static 16-bit frequency table of the 256 byte symbols."""
    p = ones / n
    freq = np.zeros(256, dtype=np.int64)
    for s in range(256):
        k = int(_POPCOUNT[s])
        prob = 1.0
        for _ in range(k):
            prob *= p
        for _ in range(8 - k):
            prob *= 1.0 - p
        freq[s] = max(1, math.floor(prob * M))
    freq[int(np.argmax(freq))] += M - int(freq.sum())
    return freq


def pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.reshape(-1).astype(np.uint8), bitorder="little")


def unpack(data: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(data, count=n, bitorder="little").astype(bool)


def _symbols(mask_bytes: np.ndarray, lanes: int, pad: int) -> np.ndarray:
    steps = math.ceil(len(mask_bytes) / lanes)
    sym = np.full(steps * lanes, pad, dtype=np.int64)
    sym[: len(mask_bytes)] = mask_bytes
    return sym.reshape(steps, lanes)


def rans_encode(mask: np.ndarray) -> bytes:
    n, ones = mask.size, int(mask.sum())
    freq = byte_frequencies(ones, n)
    cum = np.concatenate([[0], np.cumsum(freq)[:-1]])
    data = pack(mask)
    lanes = lane_count(len(data))
    sym = _symbols(data, lanes, int(np.argmax(freq)))
    x = np.full(lanes, RANS_LOW, dtype=np.uint64)
    chunks = []
    for t in range(len(sym) - 1, -1, -1):
        f, c = freq[sym[t]].astype(np.uint64), cum[sym[t]].astype(np.uint64)
        emit = x >= (f << np.uint64(16))
        chunks.append((x[emit] & np.uint64(0xFFFF)).astype("<u2"))
        x[emit] >>= np.uint64(16)
        x = ((x // f) << np.uint64(SCALE_BITS)) + (x % f) + c
    stream = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, "<u2")
    return x.astype("<u4").tobytes() + stream.tobytes()


def rans_decode(payload: bytes, n: int, ones: int) -> np.ndarray:
    nsym = (n + 7) // 8
    lanes = lane_count(nsym)
    if len(payload) < 4 * lanes or (len(payload) - 4 * lanes) % 2:
        raise TicketError("rans payload is shorter than its lane states")
    freq = byte_frequencies(ones, n)
    cum = np.concatenate([[0], np.cumsum(freq)[:-1]]).astype(np.uint64)
    freq_u = freq.astype(np.uint64)
    slot_to_sym = np.repeat(np.arange(256, dtype=np.int64), freq)
    x = np.frombuffer(payload, "<u4", lanes).astype(np.uint64)
    stream = np.frombuffer(payload, "<u2", offset=4 * lanes).astype(np.uint64)
    if np.any(x < RANS_LOW):
        raise TicketError("rans lane state out of range")
    steps = math.ceil(nsym / lanes)
    out = np.empty((steps, lanes), dtype=np.uint8)
    pos, mask16, shift = 0, np.uint64(0xFFFF), np.uint64(16)
    for t in range(steps):
        slot = x & mask16
        s = slot_to_sym[slot]
        x = freq_u[s] * (x >> shift) + slot - cum[s]
        need = x < RANS_LOW
        k = int(np.count_nonzero(need))
        if k:
            if pos + k > len(stream):
                raise TicketError("rans stream ends early")
            x[need] = (x[need] << shift) | stream[pos : pos + k]
            pos += k
        out[t] = s
    if pos != len(stream) or np.any(x != RANS_LOW):
        raise TicketError("rans stream does not decode to its final state")
    if np.any(out.reshape(-1)[nsym:] != np.argmax(freq)):
        raise TicketError("rans positions past the mask must hold the most probable symbol")
    return _unpadded(out.reshape(-1)[:nsym], n)


def _unpadded(data: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` mask bits of packed bytes whose padding bits must be 0."""
    if n % 8 and data[-1] >> (n % 8):
        raise TicketError("mask padding bits are not 0")
    return unpack(data, n)


def encode(mask: np.ndarray, encoding: str | None = None) -> tuple[str, bytes]:
    """Pick the smallest encoding (or the one named); returns ``(encoding, payload)``."""
    mask = np.asarray(mask, dtype=bool)
    ones = int(mask.sum())
    if ones in (0, mask.size):
        return "constant", b""
    if encoding == "bitmap":
        return "bitmap", pack(mask).tobytes()
    if encoding == "rans":
        return "rans", rans_encode(mask)
    bitmap, rans = pack(mask).tobytes(), rans_encode(mask)
    return ("rans", rans) if len(rans) < len(bitmap) else ("bitmap", bitmap)


def decode(encoding: str, payload: bytes, n: int, ones: int) -> np.ndarray:
    """The flat boolean mask of ``n`` entries with ``ones`` set."""
    if not 0 <= ones <= n:
        raise TicketError(f"mask claims {ones} ones in {n} entries")
    if encoding == "constant":
        if payload or ones not in (0, n):
            raise TicketError("constant mask with a payload or a density other than 0 or 1")
        return np.full(n, ones == n, dtype=bool)
    if encoding == "bitmap":
        if len(payload) != (n + 7) // 8:
            raise TicketError(f"bitmap of {len(payload)} bytes for {n} entries")
        mask = _unpadded(np.frombuffer(payload, np.uint8), n)
    elif encoding == "rans":
        if ones in (0, n):
            raise TicketError("rans mask with density 0 or 1")
        mask = rans_decode(payload, n, ones)
    else:
        raise TicketError(f"unknown mask encoding {encoding!r}")
    if int(mask.sum()) != ones:
        raise TicketError("decoded mask does not hold the recorded number of ones")
    return mask


def entropy_bits(n: int, ones: int) -> float:
    """n * H(p): the information-theoretic floor for an i.i.d. mask of this density."""
    if ones in (0, n):
        return 0.0
    p = ones / n
    return -n * (p * math.log2(p) + (1 - p) * math.log2(1 - p))
