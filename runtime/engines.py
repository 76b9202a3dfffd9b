"""Inference engines behind a registry; all must agree on outputs.

- ``dense``: numpy matmuls, the reference.
- ``csr``: scipy CSR kernels on CPU; cupy (cuSPARSE) when ``provider="cuda"``.
- ``ort``: onnxruntime on an explicitly chosen provider, read back from the session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sltc.errors import SltcError
from sltc.registry import Registry

from . import graph
from ._ort import session
from .loader import Deployable

ENGINES: Registry = Registry("engine")


@dataclass
class Predictor:
    engine: str
    provider: str
    predict: object  # callable: float32 (N, C, H, W) in [0, 1] -> logits

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x)


def _needs_ops(model: Deployable, engine: str) -> None:
    if model.ops is None:
        raise SltcError(f"engine {engine!r} needs a ticket or CSR export; {model.path} is "
                        f"{model.kind}: use --engine ort")


@ENGINES.register("dense")
def dense_engine(model: Deployable, provider: str = "cpu", **_) -> Predictor:
    _needs_ops(model, "dense")
    if provider != "cpu":
        raise SltcError("engine 'dense' runs on the CPU only; use --provider cpu")
    weights = {op["name"]: np.ascontiguousarray(op["weight"].reshape(len(op["weight"]), -1).T)
               for op in model.ops if "weight" in op}

    def matmul(op, a):
        return a @ weights[op["name"]]

    return Predictor("dense", "numpy", lambda x: graph.run(model.ops, x, matmul))


def _cupy():
    try:
        import cupy
        import cupyx.scipy.sparse as cusparse
    except ImportError:
        raise SltcError("engine 'csr' on cuda needs cupy; pip install cupy-cuda12x") from None
    if cupy.cuda.runtime.getDeviceCount() == 0:
        raise SltcError("cupy sees no CUDA device; use --provider cpu")
    return cupy, cusparse


@ENGINES.register("csr")
def csr_engine(model: Deployable, provider: str = "cpu", **_) -> Predictor:
    """y = (W_csr @ a.T).T per layer; weights regenerated from the seed at load."""
    import scipy.sparse as sp

    _needs_ops(model, "csr")
    mats = {}
    for op in model.ops:
        if "weight" in op:
            w2 = op["weight"].reshape(len(op["weight"]), -1)
            rows, cols = np.nonzero(model.masks[op["name"]])
            mats[op["name"]] = sp.csr_matrix((w2[rows, cols], (rows, cols)), shape=w2.shape,
                                             dtype=np.float32)
    if provider == "cuda":
        cupy, cusparse = _cupy()
        gpu = {k: cusparse.csr_matrix(v) for k, v in mats.items()}

        def matmul_gpu(op, a):
            return cupy.asnumpy((gpu[op["name"]] @ cupy.asarray(a).T).T)

        return Predictor("csr", "cupy-cusparse", lambda x: graph.run(model.ops, x, matmul_gpu))
    if provider != "cpu":
        raise SltcError(f"--provider {provider!r}: choose cpu or cuda")
    return Predictor("csr", "scipy", lambda x: graph.run(model.ops, x, _scipy_matmul(mats)))


def _scipy_matmul(mats: dict):
    """``a @ W.T`` with scipy's CSR kernels, called without per-call checks where possible."""
    try:
        from scipy.sparse._sparsetools import csr_matvec, csr_matvecs
    except ImportError:  # a scipy without the private kernels: the public operator
        return lambda op, a: np.asarray((mats[op["name"]] @ a.T).T)

    def matmul(op, a):
        m = mats[op["name"]]
        rows, cols = m.shape
        if len(a) == 1:  # sparse matrix-vector product: the fast path at batch 1
            y = np.zeros(rows, dtype=np.float32)
            csr_matvec(rows, cols, m.indptr, m.indices, m.data, a[0], y)
            return y[None, :]
        y = np.zeros((rows, len(a)), dtype=np.float32)
        csr_matvecs(rows, cols, len(a), m.indptr, m.indices, m.data, np.ascontiguousarray(a.T), y)
        return y.T

    return matmul


@ENGINES.register("ort")
def ort_engine(model: Deployable, provider: str = "cpu", threads: int | None = None,
               allow_fallback: bool = False, **_) -> Predictor:
    if model.kind == "onnx":
        source = str(model.path)
    else:
        from sltc.exporters.onnx import build_model

        source = build_model(model.ops, model.meta["input_shape"], model.meta["classes"], False,
                             {}).SerializeToString()
    sess, used = session(source, provider, threads, allow_fallback)
    return Predictor("ort", used, lambda x: sess.run(["logits"], {"input": x})[0])


def engines_for(kind: str) -> list[str]:
    """The engines that can run a model of this kind (ONNX files: only ``ort``)."""
    return ["ort"] if kind == "onnx" else ENGINES.names()


def prepare(model: Deployable, engine: str, **options) -> Predictor:
    return ENGINES.get(engine)(model, **options)
