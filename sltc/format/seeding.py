"""Portable weight generation: Philox4x32-10 keyed from ``(seed, layer name)``.

Numpy only, so the torch-free runtime regenerates exactly the weights the
gates were trained over. ``docs/format.md`` specifies every step; the test
vectors there are checked by ``tests/test_seeding.py``.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

GENERATOR = "philox4x32-10"
KEY_DERIVATION = "sha256(seed:u64le || utf8(name))[0:8] -> (k0, k1) u32le"
INITS = ("signed_constant", "uniform", "kaiming_normal")
NORMAL_STD = 0.02  # std of parameters drawn by name (position embeddings, class tokens)

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_NORMAL_TERMS = 12  # Irwin-Hall: the sum of 12 uniforms minus 6 has unit variance


def valid_seed(seed) -> bool:
    """Whether ``seed`` (as read from a file) is a generator seed: an integer, not a bool,
    in [0, 2**64)."""
    return type(seed) is int and 0 <= seed < 2**64


def layer_key(seed: int, name: str) -> tuple[int, int]:
    """The 64-bit Philox key for one layer: a stable hash, never Python's ``hash``."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    digest = hashlib.sha256(seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    return int.from_bytes(digest[0:4], "little"), int.from_bytes(digest[4:8], "little")


def philox4x32(counter: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """Philox4x32 on a ``(4, n)`` array of uint32 counters; returns ``(4, n)`` uint32."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> _SHIFT32) ^ c1 ^ np.uint64(k0),
            p1 & _MASK32,
            (p0 >> _SHIFT32) ^ c3 ^ np.uint64(k1),
            p0 & _MASK32,
        )
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


def random_words(seed: int, name: str, count: int, start: int = 0) -> np.ndarray:
    """Words ``start ... start + count - 1`` of the uint32 stream for ``(seed, name)``.

    Block ``i`` uses counter ``(i mod 2**32, i div 2**32, 0, 0)``; word ``4*i + j``
    is output ``j`` of block ``i``.
    """
    first, stop = start // 4, (start + count + 3) // 4
    index = np.arange(first, stop, dtype=np.uint64)
    zeros = np.zeros(stop - first, dtype=np.uint64)
    counter = np.stack([index & _MASK32, index >> _SHIFT32, zeros, zeros])
    words = philox4x32(counter, layer_key(seed, name)).T.reshape(-1)
    return words[start - 4 * first:start - 4 * first + count]


def init_scale(init: str, fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """The float64 scale of an init: the constant, the uniform bound or the std."""
    if init == "uniform":
        return gain * math.sqrt(3.0 / fan_in)
    if init in ("signed_constant", "kaiming_normal"):
        return gain / math.sqrt(fan_in)
    raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


def generate_weight(
    seed: int,
    name: str,
    shape: tuple[int, ...],
    init: str,
    fan_in: int,
    gain: float = math.sqrt(2.0),
) -> np.ndarray:
    """Regenerate a frozen weight bit for bit: float32, C order, ``shape``."""
    return weight_span(seed, name, init, fan_in, gain, 0, math.prod(shape)).reshape(shape)


def weight_span(seed: int, name: str, init: str, fan_in: int, gain: float, start: int,
                stop: int) -> np.ndarray:
    """Elements ``start ... stop - 1`` of the flattened weight: a weight regenerated piece by
    piece, in bounded memory, equals ``generate_weight`` bit for bit."""
    n = stop - start
    scale = init_scale(init, fan_in, gain)
    if init == "signed_constant":  # element i is bit i mod 32 of word i div 32
        first = start // 32
        words = random_words(seed, name, (stop + 31) // 32 - first, first)
        bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")
        c = np.float32(scale)
        return np.where(bits[start - 32 * first:start - 32 * first + n].astype(bool), -c, c)
    if init == "uniform":
        k = (random_words(seed, name, n, start) >> np.uint32(8)).astype(np.float64)
        return (scale * ((2.0 * k + 1.0 - 2.0**24) / 2.0**24)).astype(np.float32)
    return normal_span(seed, name, scale, start, stop)


def generate_normal(seed: int, name: str, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 ``std * z``, z an Irwin-Hall normal: the sum of 12 uniforms from the top 24
    bits of words ``12n ... 12n+11``, minus 6 (mean 0, variance 1, exact in float64)."""
    return normal_span(seed, name, std, 0, math.prod(shape)).reshape(shape)


def normal_span(seed: int, name: str, std: float, start: int, stop: int) -> np.ndarray:
    """Elements ``start ... stop - 1`` of ``generate_normal``'s flattened tensor."""
    n = stop - start
    k = random_words(seed, name, n * _NORMAL_TERMS, start * _NORMAL_TERMS) >> np.uint32(8)
    total = ((k.astype(np.float64) + 0.5) / 2.0**24).reshape(n, _NORMAL_TERMS)
    z = np.add.reduce(total, axis=1) - 6.0
    return (std * z).astype(np.float32)


def uniform01(seed: int, name: str, count: int, start: int = 0) -> np.ndarray:
    """Uniform float64 numbers in [0, 1) from the top 24 bits of words ``start`` to
    ``start + count - 1``."""
    return (random_words(seed, name, count, start) >> np.uint32(8)).astype(np.float64) / 2.0**24


def permutation(seed: int, name: str, n: int) -> np.ndarray:
    """A portable permutation of ``range(n)``: stable argsort of the words."""
    return np.argsort(random_words(seed, name, n), kind="stable")
