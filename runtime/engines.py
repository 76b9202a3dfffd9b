"""Inference engines behind a registry; all must agree on outputs.

- ``dense``: numpy matmuls, the reference.
- ``csr``: scipy's sparse kernels on CPU (``spmv``: zero inputs skipped at batch 1);
  cupy (cuSPARSE) when ``provider="cuda"``.
- ``ort``: onnxruntime on an explicitly chosen provider, read back from the session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sltc.errors import SltcError
from sltc.registry import Registry

from . import graph, spmv
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


def _layers(ops: list[dict], masks: dict):
    """(op, 2-D weight, 2-D mask) for each weighted op."""
    for op in ops:
        if "weight" in op:
            w2 = op["weight"].reshape(len(op["weight"]), -1)
            yield op, w2, masks[op["name"]].reshape(w2.shape)


@ENGINES.register("dense")
def dense_engine(model: Deployable, provider: str = "cpu", **_) -> Predictor:
    _needs_ops(model, "dense")
    if provider != "cpu":
        raise SltcError("engine 'dense' runs on the CPU only; use --provider cpu")
    weights = {op["name"]: np.ascontiguousarray(w2.T) for op, w2, _ in _layers(model.ops, model.masks)}

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
    """Weights regenerated from the seed at load, multiplied by scipy's sparse kernels."""
    _needs_ops(model, "csr")
    if provider == "cuda":
        return _cusparse_engine(model)
    if provider != "cpu":
        raise SltcError(f"--provider {provider!r}: choose cpu or cuda")
    ops = graph.fold_normalize(model.ops)
    layers = {op["name"]: (spmv.SparseLinear if op["op"] == "linear" else spmv.SparseRows)(w2, mask)
              for op, w2, mask in _layers(ops, model.masks)}

    def matmul(op, a):
        return layers[op["name"]](a)

    return Predictor("csr", "scipy", lambda x: graph.run(ops, x, matmul))


def _cusparse_engine(model: Deployable) -> Predictor:
    cupy, cusparse = _cupy()
    gpu = {op["name"]: cusparse.csr_matrix(spmv.masked(w2, mask, "csr"))
           for op, w2, mask in _layers(model.ops, model.masks)}

    def matmul(op, a):
        return cupy.asnumpy((gpu[op["name"]] @ cupy.asarray(a).T).T)

    return Predictor("csr", "cupy-cusparse", lambda x: graph.run(model.ops, x, matmul))


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
