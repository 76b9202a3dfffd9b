"""Inference engines behind a registry; all run the same ``Graph`` and must agree on outputs.

- ``dense``: the numpy executor over ``ops.OPS``, the reference.
- ``csr``: scipy's sparse kernels (MKL's above batch 1 where installed: ``scipy+mkl``) for
  the layers where they are faster, onnxruntime (or numpy) for the rest
  (``csr.SparseEngine``); cupy (cuSPARSE) when ``provider="cuda"``; int8 onnxruntime
  segments where they are faster only when ``allow_int8``.
- ``ort``: onnxruntime on an explicitly chosen provider, read back from the session.
- ``openvino``: OpenVINO's CPU plugin (``sltc[openvino]``), compiled per batch size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from sltc.format.check import Bounds
from sltc.format.errors import GraphError, SltcError
from sltc.format.ops import OPS
from sltc.registry import Registry

from . import spmv
from ._openvino import Compiled, has_openvino
from .adaptive import SparseEngine, sparse_kernel
from .loader import Deployable
from .ort import has_ort, session
from .quantize import KERNELS_ENV, NARROW, cpu_int8_kernels, saturates, wide_weights

ENGINES: Registry = Registry("engine")
OPTIONAL = {"ort": has_ort, "openvino": has_openvino}  # an extra's: by default where installed
log = logging.getLogger("sltc")


@dataclass
class Predictor:
    engine: str
    provider: str
    predict: object  # callable: float32 (N, C, H, W) in [0, 1] -> logits
    choice: object = None  # csr: batch -> {"sparse_layers", "layers"} of its calibrated plan
    bounds: Bounds | None = None  # the graph's: each new batch size is checked first

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits of ``x``; a batch size the graph's bounds refuse (in this engine), or a
        failure inside numpy or onnxruntime, is one ``SltcError`` line."""
        if self.bounds is not None:
            self.bounds.batch(len(x), self.engine)
        try:
            return self.predict(x)
        except SltcError:
            raise
        except Exception as e:  # noqa: BLE001 - the runtime refusing the graph's values
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise GraphError(f"the network fails at run time in engine {self.engine!r} "
                             f"({type(e).__name__}: {first})") from None


@ENGINES.register("dense")
def dense_engine(model: Deployable, provider: str = "cpu", **_) -> Predictor:
    if provider != "cpu":
        raise SltcError("engine 'dense' runs on the CPU only; use --provider cpu")
    graph = model.graph.folded()
    return Predictor("dense", "numpy", graph.run)


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
def csr_engine(model: Deployable, provider: str = "cpu", threads: int | None = None,
               allow_int8: bool = False, **_) -> Predictor:
    """Sparse kernels where a short measurement says they win, per layer and batch size;
    with ``allow_int8``, int8 onnxruntime segments where they win."""
    if provider == "cuda":
        return _cusparse_engine(model)
    if provider != "cpu":
        raise SltcError(f"--provider {provider!r}: choose cpu or cuda")
    if allow_int8 and not has_ort():
        raise SltcError("--allow int8 runs int8 segments in onnxruntime, which is not "
                        "installed; pip install 'sltc[cpu]', or drop --allow int8")
    engine = SparseEngine(model.graph, threads, use_ort=has_ort(), allow_int8=allow_int8)
    kernels = "+".join(["scipy"] + ["mkl"] * (spmv.mkl_product() is not None)
                       + ["int8"] * allow_int8)
    return Predictor("csr", kernels, engine, engine.choice)


def _cusparse_engine(model: Deployable) -> Predictor:
    """Every product by a constant weight on cuSPARSE; the rest in numpy."""
    cupy, cusparse = _cupy()
    graph = model.graph.folded()

    def product(w2, mask, by_rows):
        gpu = cusparse.csr_matrix(spmv.masked(w2, mask, "csr"))
        return lambda a: cupy.asnumpy((gpu @ cupy.asarray(a).T).T)

    overrides = {n.name: k for n in graph.nodes if (k := sparse_kernel(
        n, graph.constants, product, max_density=1.0)) is not None}
    return Predictor("csr", "cupy-cusparse", lambda x: graph.run(x, overrides))


@ENGINES.register("openvino")
def openvino_engine(model: Deployable, provider: str = "cpu", threads: int | None = None,
                    **_) -> Predictor:
    """OpenVINO's CPU plugin on the folded graph, compiled once per batch size; one thread
    unless told, fp32 layers in fp32 (``_openvino.CONFIG``). OpenVINO computes some
    failures (a Gather index past the end: zeros) where numpy and onnxruntime stop, so one
    image goes through numpy's reference first: a graph that fails there fails here, in
    one line naming the node."""
    if provider != "cpu":
        raise SltcError("engine 'openvino' runs on the CPU here; use --provider cpu")
    graph = model.graph.folded()
    graph.run(np.zeros((1, *graph.input_shape), np.float32))
    compiled = Compiled(graph.to_onnx().SerializeToString(), threads)
    return Predictor("openvino", "openvino-cpu", compiled)


@ENGINES.register("ort")
def ort_engine(model: Deployable, provider: str = "cpu", threads: int | None = None,
               allow_fallback: bool = False, **_) -> Predictor:
    # the checked graph, never the file again (its external data included), its constant
    # subgraphs folded as the numpy engines fold them
    sess, used = session(model.graph.folded().to_onnx().SerializeToString(), provider, threads,
                         allow_fallback)
    name_in, name_out = model.graph.input_name, model.graph.output_name
    return Predictor("ort", used, lambda x: sess.run([name_out], {name_in: x})[0])


def installed() -> list[str]:
    """The engines this machine can run: every one but an extra's that is not installed."""
    return [name for name in ENGINES.names() if OPTIONAL.get(name, lambda: True)()]


def _warn_saturation(model: Deployable, engine: str) -> None:
    """An int8 file whose weights use the full int8 range, run through onnxruntime on a
    CPU whose int8 products saturate (``quantize.SATURATING``), may differ from the exact
    ``dense`` engine: say so, and how to get a file made for this CPU."""
    kernels = cpu_int8_kernels()
    if engine == "dense" or model.precision == "fp32" or not saturates(kernels) or \
            not wide_weights(model.graph.constants.values()):
        return
    log.warning("warning: %s holds int8 weights beyond [-%d, %d] (made for a CPU with VNNI?): "
                "onnxruntime on this CPU (%s) adds pairs of their products in 16 bits with "
                "saturation, so engine %r may differ from the exact dense engine; export the "
                "ticket again here, or with %s=%s", model.path, NARROW, NARROW, kernels, engine,
                KERNELS_ENV, kernels)


def prepare(model: Deployable, engine: str, **options) -> Predictor:
    """The engine's predictor, after one image of zeros went through the graph: a graph
    that fails does so here, in one line, rather than halfway through a test set."""
    factory = ENGINES.get(engine)
    _warn_saturation(model, engine)
    one = np.zeros((1, *model.graph.input_shape), np.float32)
    try:
        model.graph.bounds.batch(1, engine)  # the engine's copies of the weights too
        predictor = factory(model, **options)
        predictor.bounds = model.graph.bounds
        predictor(one)
    except SltcError as e:
        raise SltcError(f"{model.path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - an engine refusing the graph as it builds
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise GraphError(f"{model.path}: the network does not run in engine {engine!r} "
                         f"({type(e).__name__}: {first})") from None
    return predictor


__all__ = ["ENGINES", "OPS", "Predictor", "installed", "prepare"]
