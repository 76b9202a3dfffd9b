"""``sltc validate`` and ``sltc eval``: the whole test set through one runtime engine, the
network being the file's graph (a ticket's skeleton)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sltc.data import recorded_test_set
from sltc.format.errors import SltcError

from .engines import prepare
from .loader import Deployable, kind_of, load
from .quantize import cpu_int8_kernels

BATCH = 1000  # test images per call, fewer where the graph would pass its bytes alive at once


def gpu_available(engine: str) -> bool:
    if engine == "ort":
        from .ort import import_ort

        return "CUDAExecutionProvider" in import_ort().get_available_providers()
    if engine == "csr":
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # noqa: BLE001 - no cupy, no driver, no device: all mean no GPU
            return False
    return False


def model_test_set(model: Deployable, data_root=None):
    """The test set the model's run recorded (``data_root`` overrides its folder)."""
    data = model.meta.data
    if data is None:
        raise SltcError(f"{model.path} does not record its dataset; use the ticket instead")
    return recorded_test_set(data, model.meta.seed, data_root,
                             model.graph.input_shape, model.graph.classes)


def validate(path, engine: str = "ort", provider: str = "cpu", data_root=None,
             require_gpu: bool = False, allow_fallback: bool = False, batch: int = BATCH,
             on_batch=lambda n: None, allow_int8: bool = False, kind: str | None = None) -> dict:
    """The model's test-set accuracy through ``engine``; ``on_batch(n)`` after each batch."""
    if require_gpu and not gpu_available(engine):
        raise SltcError(f"--require-gpu: no GPU runtime for engine {engine!r} here "
                        "(ort needs onnxruntime-gpu with CUDA, csr needs cupy)")
    if require_gpu:
        provider = "cuda"
    model = load(path, kind)
    test = model_test_set(model, data_root)
    predictor = prepare(model, engine, provider=provider, allow_fallback=allow_fallback,
                        allow_int8=allow_int8)
    batch = model.graph.bounds.batch_for(batch, engine)
    predictions = []
    for i in range(0, len(test), batch):
        x = test.batch(i, i + batch).astype(np.float32) / np.float32(255)
        predictions.append(predictor(x).argmax(1))
        on_batch(len(x))
    predictions = np.concatenate(predictions)
    acc = float((predictions == test.labels).mean())
    recorded = model.meta.test_accuracy
    return {"model": str(path), "engine": engine, "provider": predictor.provider,
            "precision": model.precision,
            "int8_kernels": None if model.precision == "fp32" else cpu_int8_kernels(),
            "test_accuracy": acc, "recorded_accuracy": recorded,
            "sparsity": model.meta.sparsity,
            "difference": None if recorded is None else acc - recorded, "examples": len(test)}


def evaluate(path, data_root=None, device: str = "auto", on_batch=lambda n: None) -> dict:
    """``sltc eval``: a ticket's test-set accuracy, computed with its skeleton in
    onnxruntime (numpy's ``dense`` engine without it); ``device`` auto, cpu or cuda."""
    from .ort import has_ort

    if device not in ("auto", "cpu", "cuda"):
        raise SltcError(f"--device {device!r}: choose auto, cpu or cuda")
    engine = "ort" if has_ort() else "dense"
    if device == "cuda" and not gpu_available(engine):
        raise SltcError("--device cuda: no CUDA runtime here (onnxruntime-gpu with CUDA); use "
                        "--device cpu")
    provider = "cuda" if device == "cuda" or device == "auto" and gpu_available(engine) else "cpu"
    if kind_of(Path(path)) != "ticket":
        raise SltcError(f"{path}: sltc eval reads a .slt ticket; sltc validate runs exports")
    result = validate(path, engine, provider, data_root, on_batch=on_batch)
    return {k: result[k] for k in ("test_accuracy", "recorded_accuracy", "sparsity", "examples",
                                   "engine", "provider")}
