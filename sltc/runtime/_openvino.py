"""OpenVINO is an optional engine (``sltc[openvino]``): import it with a clear hint, and
compile a graph once per batch size."""

from __future__ import annotations

from sltc.format.errors import SltcError

# f32: a CPU with bf16 (AVX-512 BF16, AMX) would otherwise run fp32 layers in bf16 and
# change the outputs; LATENCY: one stream, the way bench times one batch at a time
CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
# each compiled batch size holds about two more copies of the weights (measured: Conv-4 and
# ResNet-20 in fp32, peak RSS after 1 and 4 sizes): keep the latest two, as bench's batch
# sizes and validate's full and last batches come one after another
KEEP = 2


def has_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise SltcError("engine 'openvino' needs OpenVINO, which is not installed; "
                        "pip install 'sltc[openvino]', or choose another --engine") from None
    return openvino


class Compiled:
    """An ONNX model (bytes) on OpenVINO's CPU plugin, compiled for each batch size as it
    comes, the latest ``KEEP`` kept; ``threads`` (default 1) inference threads."""

    def __init__(self, onnx_bytes: bytes, threads: int | None = None):
        ov = import_openvino()
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(onnx_bytes)
        except Exception as e:  # noqa: BLE001 - its ONNX frontend refusing an op
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise SltcError(f"OpenVINO cannot read the model ({first}); choose another "
                            "--engine") from None
        self.config = {**CONFIG, "INFERENCE_NUM_THREADS": threads or 1}
        self.requests: dict[tuple, object] = {}

    def request(self, shape: tuple):
        if shape not in self.requests:
            if len(self.requests) == KEEP:
                del self.requests[next(iter(self.requests))]
            model = self.model.clone()
            model.reshape({model.inputs[0]: list(shape)})
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.requests[shape] = compiled.create_infer_request()
        return self.requests[shape]

    def __call__(self, x):
        request = self.request(tuple(x.shape))
        return request.infer({0: x})[0]
