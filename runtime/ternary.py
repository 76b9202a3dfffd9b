"""The batch-1 product of a signed-constant layer (every kept weight +c or -c) over its
non-zero inputs, compiled by numba where it is installed (``pip install 'sltc[numba]'``).

The weight is held as two index lists per input column, the +c entries' output rows and
the -c entries', 16-bit where the layer has fewer than 32,768 outputs, and no values: 2
bytes a kept weight against scipy's 8 (a float32 value and an int32 index). For each
non-zero input ``x_j`` the kernel adds ``x_j`` to the rows of column ``j``'s +c list and
subtracts it from those of its -c list; the sums are then scaled by ``c`` once. On the
784-2048-2048-10 MLP at 90% sparsity, where the layers' matrices no longer all fit in
cache at once, this takes the csr engine from 2.35x to 3.1x dense onnxruntime at batch 1
(docs/results.md, section 4). ``SLTC_NUMBA=0`` turns it off.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

_KERNEL: list = []  # [compiled scatter or None], once looked up


def ternary_kernel():
    """The compiled kernel, or None where numba is not installed or ``SLTC_NUMBA=0``. It is
    compiled here, for 16- and 32-bit indices, so that no timed call pays for it."""
    if not _KERNEL:
        _KERNEL.append(None if os.environ.get("SLTC_NUMBA") == "0" else _compile())
    return _KERNEL[0]


def _compile():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(boundscheck=False, nogil=True)
    def scatter(pos_ptr, pos_rows, neg_ptr, neg_rows, x, y):
        for j in range(len(x)):
            v = x[j]
            if v != 0:
                for k in range(pos_ptr[j], pos_ptr[j + 1]):
                    y[pos_rows[k]] += v
                for k in range(neg_ptr[j], neg_ptr[j + 1]):
                    y[neg_rows[k]] -= v

    ptr, y = np.zeros(2, np.int32), np.zeros(1, np.float32)
    for index in (np.int16, np.int32):
        rows = np.zeros(0, index)
        scatter(ptr, rows, ptr, rows, np.zeros(1, np.float32), y)
    return scatter


def magnitude(values: np.ndarray) -> np.float32 | None:
    """``c`` when every one of ``values`` (at least one) is +c or -c, else None."""
    c = np.abs(values)
    return np.float32(c[0]) if len(c) and bool((c == c[0]).all()) and c[0] > 0 else None


class TernaryColumns:
    """``W @ x`` for one input vector, ``W`` (outputs x inputs) a signed-constant weight
    with magnitude ``c``, through ``ternary_kernel()`` (which must not be None)."""

    def __init__(self, weight: np.ndarray, mask: np.ndarray, c: np.float32):
        index = np.int16 if weight.shape[0] < 2**15 else np.int32
        self.lists = []
        for side in (mask & (weight > 0), mask & (weight < 0)):
            m = sp.csc_matrix(side)
            self.lists += [m.indptr.astype(np.int32), m.indices.astype(index)]
        self.c, self.rows, self.kernel = c, weight.shape[0], ternary_kernel()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.zeros(self.rows, np.float32)
        self.kernel(*self.lists, np.ascontiguousarray(x, dtype=np.float32), y)
        y *= self.c
        return y
