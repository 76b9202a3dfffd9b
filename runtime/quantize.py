"""int8 through onnxruntime's own quantiser (``onnxruntime.quantization``), shared by
``export --quantize`` and the ``csr`` engine's int8 segments. No torch.

A weight whose non-zeros share one magnitude ``c`` (a signed-constant layer: ternary,
{-c, 0, +c}) gets the scale ``c``: its int8 values are -1, 0 and 1, and they dequantise to
the weights bit for bit (``1 * c`` is ``c``); no product of a uint8 activation by such a
weight can saturate onnxruntime's 16-bit intermediate sums, VNNI or not. Any other weight is
quantised per channel (static) or per tensor (dynamic), with ``reduce_range`` (7-bit
weights) where the CPU lacks VNNI (``int8_kernels``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from sltc.errors import SltcError

CALIBRATION_BATCH = 64
INT8_FLAGS = {"amx_int8": "amx", "avx512_vnni": "vnni", "avx_vnni": "vnni", "asimddp": "dotprod"}


def int8_kernels(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's int8 dot-product instructions as onnxruntime's kernels use them: amx, vnni,
    dotprod (ARM), or none (16-bit intermediate sums that can saturate: ``reduce_range``);
    unknown where the CPU does not say."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return "unknown"
    return next((kind for flag, kind in INT8_FLAGS.items() if flag in flags), "none")


def ternary_scales(constants: dict) -> dict[str, np.float32]:
    """Weight name -> ``c`` for every weight (2-D or more) whose non-zeros are all +-c."""
    scales = {}
    for name, w in constants.items():
        w = np.asarray(w)
        if w.ndim < 2 or w.dtype != np.float32:
            continue
        magnitudes = np.unique(np.abs(w[w != 0]))
        if len(magnitudes) == 1 and np.isfinite(magnitudes[0]):
            scales[name] = np.float32(magnitudes[0])
    return scales


class _Images:
    """onnxruntime's calibration reader over fixed images, in fixed batches."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.batches = iter([{input_name: images[i:i + CALIBRATION_BATCH]}
                             for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self.batches, None)


def quantize(model: onnx.ModelProto, constants: dict, mode: str, folder: Path, images=None,
             reduce_range: bool = False) -> onnx.ModelProto:
    """``model`` (fp32, whose initializers are ``constants``) quantised to int8 by
    onnxruntime, ``mode`` static or dynamic; ``images`` (static) calibrate; ``folder`` holds
    its working files."""
    from onnxruntime import quantization as q

    q.quant_utils.logging.getLogger().setLevel(logging.ERROR)  # its pre-processing hint
    overrides = {name: [{"scale": scale, "zero_point": np.int8(0)}]
                 for name, scale in ternary_scales(constants).items()}
    common = dict(per_channel=mode == "static", reduce_range=reduce_range,
                  weight_type=q.QuantType.QInt8,
                  extra_options={"TensorQuantOverrides": overrides})
    out = folder / "int8.onnx"
    try:
        if mode == "static":
            reader = _Images(model.graph.input[0].name, images)
            q.quantize_static(model, out, reader, quant_format=q.QuantFormat.QDQ,
                              activation_type=q.QuantType.QUInt8,
                              calibrate_method=q.CalibrationMethod.MinMax, **common)
        else:
            q.quantize_dynamic(model, out, **common)
    except Exception as e:  # noqa: BLE001 - the quantiser refusing the graph
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SltcError(f"onnxruntime.quantization cannot quantise this network ({first}); "
                        "run it in fp32 (without --quantize or --allow int8)") from None
    return onnx.load_model(out)
