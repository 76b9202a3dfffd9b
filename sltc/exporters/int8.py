"""``export --format onnx --quantize int8``: the ticket's ONNX, quantised by onnxruntime's
own quantiser (``onnxruntime.quantization``).

- ``int8`` (static QDQ): activations as uint8 with ranges calibrated (MinMax) on a fixed
  set of the ticket's own training images, the same set every time, so the same ticket
  gives the same file; weights as int8, per channel.
- ``int8-dynamic``: weights as int8 per tensor (onnxruntime's dynamic quantiser refuses a
  fixed scale on a weight it transposes per channel), activations quantised batch by batch
  at run time.

The weights: ``sltc.runtime.quantize`` (ternary ones exactly, with scale ``c``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from sltc.format.errors import SltcError
from sltc.format.records import TicketMeta
from sltc.runtime.quantize import MODES

CALIBRATION_IMAGES = 512  # evenly spaced over the ticket's training split
ACCURACY_BOUND = 0.005  # a larger drop in test accuracy than this (0.5 points) warns
QUANTIZED_SUFFIX = "_quantized"  # onnxruntime's name for a weight's int8 initializer
TRANSPOSED_SUFFIX = "_Transposed"  # ... and for a weight it transposed first


def check_mode(quantize: str) -> str:
    if quantize not in MODES:
        raise SltcError(f"--quantize {quantize!r}: choose {' or '.join(MODES)}")
    return MODES[quantize]


def calibration_images(info: TicketMeta, data_root=None) -> np.ndarray:
    """``CALIBRATION_IMAGES`` of the ticket's training split (validation images left out),
    evenly spaced, as float32 in [0, 1]."""
    from sltc.data import check_data_folder, check_fits, load_dataset

    cfg, model = info.data, info.model
    check_data_folder(cfg, data_root)
    if data_root is not None:
        cfg = replace(cfg, root=str(data_root))
    train = load_dataset(cfg, model.seed).train
    check_fits(train, model.input_shape, model.classes, data_root or cfg.root or cfg.name)
    index = np.unique(np.linspace(0, len(train) - 1, min(CALIBRATION_IMAGES, len(train)))
                      .round().astype(np.int64))
    return train.take(index).batch(0, len(index)).astype(np.float32) / np.float32(255)


def weight_errors(quantized: onnx.ModelProto, constants: dict) -> dict[str, float]:
    """Each quantised weight's largest error after dequantising (``DequantizeLinear`` of the
    op table, along the axis the file's own node gives), relative to its largest magnitude;
    0.0 only where every bit is the same. onnxruntime names a weight ``W``'s int8 values
    ``W_quantized`` (``W_Transposed_quantized`` where it transposed it), with ``_scale``
    and ``_zero_point`` beside them."""
    from sltc.format.ops import OPS, Node

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
