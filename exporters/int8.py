"""``export --format onnx --quantize int8``: the ticket's ONNX, quantised by onnxruntime's
own quantiser (``onnxruntime.quantization``).

- ``int8`` (static QDQ): activations as uint8 with ranges calibrated (MinMax) on a fixed
  set of the ticket's own training images, the same set every time, so the same ticket
  gives the same file; weights as int8, per channel.
- ``int8-dynamic``: weights as int8 per tensor (onnxruntime's dynamic quantiser refuses a
  fixed scale on a weight it transposes per channel), activations quantised batch by batch
  at run time.

A weight whose non-zeros share one magnitude ``c`` (a signed-constant layer: ternary,
{-c, 0, +c}) gets the scale ``c``: its int8 values are -1, 0 and 1, and they dequantise to
the ticket's weights bit for bit (``1 * c`` is ``c``). Any other weight (uniform,
kaiming_normal) is quantised per channel (static) or per tensor (dynamic); the report
gives its largest error relative to its largest magnitude. For a ternary ticket the output's
error then comes from quantising activations only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sltc.errors import SltcError

log = logging.getLogger("sltc")
MODES = {"int8": "static", "int8-dynamic": "dynamic"}
CALIBRATION_IMAGES = 512  # evenly spaced over the ticket's training split
CALIBRATION_BATCH = 64
ACCURACY_BOUND = 0.005  # a larger drop in test accuracy than this (0.5 points) warns
QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a weight's int8 initializer
TRANSPOSED_SUFFIX = "_Transposed"  # ... and for a weight it transposed first


def check_mode(quantize: str) -> str:
    if quantize not in MODES:
        raise SltcError(f"--quantize {quantize!r}: choose {' or '.join(MODES)}")
    return MODES[quantize]


def calibration_images(meta: dict, seed: int, data_root=None) -> np.ndarray:
    """``CALIBRATION_IMAGES`` of the ticket's training split (validation images left out),
    evenly spaced, as float32 in [0, 1]."""
    from sltc.config import DataConfig
    from sltc.data import load_dataset

    data = dict(meta["config"]["data"])
    if data_root is not None:
        data["root"] = str(data_root)
    train = load_dataset(DataConfig.model_validate(data), seed).train
    index = np.unique(np.linspace(0, len(train) - 1, min(CALIBRATION_IMAGES, len(train)))
                      .round().astype(np.int64))
    return train.take(index).batch(0, len(index)).astype(np.float32) / np.float32(255)


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


def quantize(model: onnx.ModelProto, constants: dict, mode: str, images, folder: Path,
             reduce_range: bool = False) -> onnx.ModelProto:
    """``model`` (fp32, whose initializers are ``constants``) quantised to int8 by
    onnxruntime; ``images`` (static mode) calibrate; ``folder`` holds its working files."""
    from onnxruntime import quantization as q

    q.quant_utils.logging.getLogger().setLevel(logging.ERROR)  # its pre-processing hint
    overrides = {name: [{"scale": scale, "zero_point": np.int8(0)}]
                 for name, scale in ternary_scales(constants).items()}
    common = dict(per_channel=mode == "static", reduce_range=reduce_range, weight_type=q.QuantType.QInt8,
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
                        "export it without --quantize") from None
    return onnx.load_model(out)


def weight_errors(quantized: onnx.ModelProto, constants: dict) -> dict[str, float]:
    """Each quantised weight's largest error after dequantising (``DequantizeLinear`` of the
    op table, along the axis the file's own node gives), relative to its largest magnitude;
    0.0 only where every bit is the same. onnxruntime names a weight ``W``'s int8 values
    ``W_quantized`` (``W_Transposed_quantized`` where it transposed it), with ``_scale``
    and ``_zero_point`` beside them."""
    from sltc.runtime.ops import OPS, Node

    inits = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    axes = {p.input[0]: Node.read(p).attrs.get("axis", 1) for p in quantized.graph.node
            if p.op_type == "DequantizeLinear"}
    errors = {}
    for name, values in inits.items():
        stem = name.removesuffix(QUANTIZED_SUFFIX)
        original = stem.removesuffix(TRANSPOSED_SUFFIX)
        if stem == name or original not in constants or f"{stem}_scale" not in inits \
                or values.ndim < 2:
            continue
        w = np.asarray(constants[original], np.float32)
        w = w.T if original != stem else w
        node = Node.make("DequantizeLinear", [name], [original], original,
                         axis=axes.get(name, 1))
        got = OPS["DequantizeLinear"](node, values, inits[f"{stem}_scale"],
                                      inits.get(f"{stem}_zero_point"))
        same = got.shape == w.shape and np.array_equal(got.view(np.int32), w.view(np.int32))
        errors[original] = 0.0 if same else float(
            np.abs(got.reshape(w.shape) - w).max() / max(float(np.abs(w).max()), 1e-30))
    return errors
