"""Sparse products for the ``csr`` engine: ``a @ W.T``, on scipy's compiled kernels and,
where it is installed, on MKL's (``pip install 'sltc[mkl]'``).

Linear layers are held by input column (CSC). At batch 1 the product then visits
only the columns whose input is non-zero; after a ReLU about half of them are,
so the work and the memory read shrink with the activation sparsity. Layers fed
by im2col (many rows per image) are held by output row (CSR).

Above batch 1 scipy's kernel is a scalar loop over the batch for each kept weight; MKL's
sparse-times-dense product (``sparse_dot_mkl``) is vectorised over the batch, 1.7-1.9x
faster than scipy's on a 2048-wide layer at 90% sparsity (docs/results.md, section 4,
"Sparse kernels for one layer"). Where MKL is loaded it takes every product of more than
one row; ``SLTC_MKL=0`` turns it off.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

try:  # the kernels behind scipy.sparse's operators, called without per-call checks
    from scipy.sparse._sparsetools import csc_matvec, csc_matvecs, csr_matvec, csr_matvecs

    KERNELS = True
except ImportError:  # pragma: no cover - a scipy without them: the public operators
    KERNELS = False

# Skip zero inputs when at least this fraction of them is zero and columns hold at least
# this many entries on average; below either, the bookkeeping costs more than it saves.
SKIP_MIN_ZEROS = 0.2
SKIP_MIN_COLUMN_NNZ = 32


@functools.cache
def mkl_product():
    """``sparse_dot_mkl.dot_product_mkl``, or None where it is not installed or
    ``SLTC_MKL=0``; looked up once per process. MKL is loaded single-threaded
    (``MKL_THREADING_LAYER=SEQUENTIAL``, so no OpenMP runtime of its own joins the
    process), from the environment's own ``lib`` folder, where the ``mkl`` wheel puts
    ``libmkl_rt``, unless ``MKL_RT`` names one."""
    if os.environ.get("SLTC_MKL") == "0":
        return None
    os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")
    found = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so*"))
    if found and "MKL_RT" not in os.environ:
        os.environ["MKL_RT"] = str(found[-1])
    try:
        from sparse_dot_mkl import dot_product_mkl
    except (ImportError, OSError):
        return None
    return dot_product_mkl


def masked(weight: np.ndarray, mask: np.ndarray, fmt: str):
    """The kept entries of ``weight`` as a float32 scipy matrix with int32 indices."""
    rows, cols = np.nonzero(mask)
    m = sp.csr_matrix((weight[rows, cols], (rows, cols)), shape=weight.shape, dtype=np.float32)
    m = m.asformat(fmt)
    m.indptr, m.indices = m.indptr.astype(np.int32), m.indices.astype(np.int32)
    return m


class SparseRows:
    """A masked 2-D weight ``W`` (rows = outputs) as a CSR matrix, for inputs with many
    rows (im2col)."""

    fmt = "csr"

    def __init__(self, weight: np.ndarray, mask: np.ndarray, use_mkl: bool = True):
        self.matrix = masked(weight, mask, self.fmt)
        self.mkl = mkl_product() if use_mkl else None
        self.rows = None if self.mkl is None else self.matrix.asformat("csr")
        if KERNELS:
            self.kernel, self.kernels = {"csr": (csr_matvec, csr_matvecs),
                                         "csc": (csc_matvec, csc_matvecs)}[self.fmt]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        m = self.matrix
        if not KERNELS:
            return np.asarray((m @ a.T).T, dtype=np.float32)
        if len(a) == 1:
            return self._matvec(a[0])[None, :]
        if self.mkl is not None:
            return self.mkl(self.rows, np.ascontiguousarray(a.T)).T
        y = np.zeros((m.shape[0], len(a)), dtype=np.float32)
        self.kernels(*m.shape, len(a), m.indptr, m.indices, m.data, np.ascontiguousarray(a.T), y)
        return y.T

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        m = self.matrix
        y = np.zeros(m.shape[0], dtype=np.float32)
        self.kernel(*m.shape, m.indptr, m.indices, m.data, x, y)
        return y


class SparseLinear(SparseRows):
    """A masked 2-D weight as a CSC matrix (by input column), for linear layers."""

    fmt = "csc"

    def __init__(self, weight: np.ndarray, mask: np.ndarray, use_mkl: bool = True):
        super().__init__(weight, mask, use_mkl)
        m = self.matrix
        # Column j's entry range [indptr[j], indptr[j+1]) packed into one int64, last
        # column first; see ``_matvec_active``.
        spans = np.stack([m.indptr[:-1], m.indptr[1:]], axis=1)[::-1]
        self.spans = np.ascontiguousarray(spans).view(np.int64).ravel()
        self.skips = m.nnz >= SKIP_MIN_COLUMN_NNZ * m.shape[1]

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        if self.skips:
            reversed_x = x[::-1]
            active = (reversed_x != 0).nonzero()[0]  # faster than flatnonzero on floats
            if len(active) <= (1 - SKIP_MIN_ZEROS) * len(x):
                return self._matvec_active(reversed_x, active)
        return super()._matvec(x)

    def _matvec_active(self, reversed_x: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``W @ x`` over the non-zero inputs only, with the unchanged CSC kernel.

        ``csc_matvec`` walks columns ``k`` over entries ``ptr[k]:ptr[k+1]``. Taking the
        active columns last first, ``ptr = [s_a, e_a, s_b, e_b, ...]`` makes every even
        column one active column and every odd one the range ``e_a:s_b``, which is
        empty because column ``b`` is stored before column ``a`` (``s_b <= e_a``).
        """
        m = self.matrix
        ptr = self.spans.take(active).view(np.int32)
        xs = np.zeros(len(ptr), dtype=np.float32)
        xs[0::2] = reversed_x.take(active)
        y = np.zeros(m.shape[0], dtype=np.float32)
        if len(ptr):
            csc_matvec(m.shape[0], len(ptr) - 1, ptr, m.indices, m.data, xs, y)
        return y
