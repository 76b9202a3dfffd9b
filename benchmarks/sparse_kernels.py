"""Sparse kernels for one layer, side by side: a 2048x2048 signed-constant weight at 90%
sparsity times a batch of ReLU outputs (half of them zero), one thread.

    python benchmarks/sparse_kernels.py --out benchmarks/out/sparse_kernels.json

Rows: dense onnxruntime (``MatMul``, the baseline of every speed-up); scipy's kernels as
the ``csr`` engine calls them (``SparseLinear`` without MKL: zero inputs skipped at batch
1); MKL's sparse-times-dense product (``SparseLinear`` with MKL, above batch 1); and, where
``numba`` is installed (it is not a dependency), two kernels specialised to +-c weights
with 16-bit indices and no values: by output row (a gather per kept weight, vectorised
over the batch) and, at batch 1, by input column over the non-zero inputs only (a
scatter). The kernels take turns, ``--rounds`` times ``--repeat`` calls each; the median
of each is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.runtime.spmv import SparseLinear, mkl_product  # noqa: E402

SIZE, DENSITY = 2048, 0.1


def layer(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.random((SIZE, SIZE)) < DENSITY
    sign = np.where(rng.random((SIZE, SIZE)) < 0.5, -1, 1)
    return (mask * sign * 0.03).astype(np.float32)


def onnx_dense(w: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    from sltc.runtime.ort import session

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", SIZE])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess, _ = session(model.SerializeToString(), "cpu", threads=1)
    return lambda x: sess.run(["y"], {"x": x})[0]


def numba_kernels(w: np.ndarray) -> dict:
    """+-c kernels with 16-bit indices, where numba is installed."""
    try:
        import numba
    except ImportError:
        return {}
    jit = numba.njit(fastmath=True, boundscheck=False)

    @jit
    def by_rows(pptr, pidx, nptr, nidx, c, xt, y):  # xt: (in, batch), y: (out, batch)
        acc = np.empty(xt.shape[1], np.float32)
        for i in range(len(pptr) - 1):
            acc[:] = 0
            for k in range(pptr[i], pptr[i + 1]):
                j = pidx[k]
                for b in range(xt.shape[1]):
                    acc[b] += xt[j, b]
            for k in range(nptr[i], nptr[i + 1]):
                j = nidx[k]
                for b in range(xt.shape[1]):
                    acc[b] -= xt[j, b]
            for b in range(xt.shape[1]):
                y[i, b] = c * acc[b]

    @jit
    def by_active_columns(pptr, pidx, nptr, nidx, c, x, y):
        for j in range(len(x)):
            v = x[j]
            if v != 0:
                for k in range(pptr[j], pptr[j + 1]):
                    y[pidx[k]] += v
                for k in range(nptr[j], nptr[j + 1]):
                    y[nidx[k]] -= v
        for i in range(len(y)):
            y[i] *= c

    c = np.float32(np.abs(w[w != 0]).max())

    def split(fmt):
        parts = [sp.csr_matrix(w > 0).asformat(fmt), sp.csr_matrix(w < 0).asformat(fmt)]
        return [a for m in parts for a in (m.indptr.astype(np.int32), m.indices.astype(np.int16))]

    rows, cols = split("csr"), split("csc")

    def numba_rows(x):
        y = np.empty((SIZE, len(x)), np.float32)
        by_rows(*rows, c, np.ascontiguousarray(x.T), y)
        return y.T

    def numba_columns(x):
        y = np.zeros(SIZE, np.float32)
        by_active_columns(*cols, c, x[0], y)
        return y[None]

    return {"numba +-c by row": numba_rows, "numba +-c by active column": numba_columns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/sparse_kernels.json")
    ap.add_argument("--batch", default="1,8,64,256")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    w = layer()
    kernels = {"onnxruntime dense": onnx_dense(w),
               "scipy": SparseLinear(w, w != 0, use_mkl=False)}
    if mkl_product() is not None:
        kernels["mkl"] = SparseLinear(w, w != 0)
    kernels.update(numba_kernels(w))
    rng, rows = np.random.default_rng(1), []
    for batch in map(int, args.batch.split(",")):
        x = np.maximum(rng.standard_normal((batch, SIZE)), 0).astype(np.float32)
        want = x.astype(np.float64) @ w.T.astype(np.float64)
        run = {k: f for k, f in kernels.items() if not (k.endswith("column") and batch > 1)
               and not (k == "mkl" and batch == 1)}  # mkl: above batch 1 only, as the engine
        for name, f in run.items():
            assert np.allclose(f(x), want, rtol=1e-4, atol=1e-4), name
        times = {k: [] for k in run}
        for _ in range(args.rounds):
            for name, f in run.items():
                for _ in range(args.repeat):
                    tic = time.perf_counter()
                    f(x)
                    times[name].append(time.perf_counter() - tic)
        dense = float(np.median(times["onnxruntime dense"]))
        rows += [{"batch": batch, "kernel": k, "ms": float(np.median(t)) * 1e3,
                  "speedup": dense / float(np.median(t))} for k, t in times.items()]
    report(rows, args.out, f"one {SIZE}x{SIZE} layer at {1 - DENSITY:.0%} sparsity, one thread, "
           "median ms", ["batch", "kernel", "ms", "speedup"])


if __name__ == "__main__":
    main()
