"""int8 through onnxruntime's own quantiser (``onnxruntime.quantization``), shared by
``export --quantize`` and the ``csr`` engine's int8 segments. No torch.

A weight whose non-zeros share one magnitude ``c`` (a signed-constant layer: ternary,
{-c, 0, +c}) gets the scale ``c``: its int8 values are -1, 0 and 1, and they dequantise to
the weights bit for bit (``1 * c`` is ``c``); a ternary weight times a BatchNorm folded
into it gets one scale ``c_k`` per output channel, just as exact. No product of a uint8
activation by such a weight can saturate onnxruntime's 16-bit intermediate sums, VNNI or
not. Any other weight is quantised per channel (static) or per tensor (dynamic), with
``reduce_range`` (7-bit weights, within [-64, 64]) for a CPU whose int8 kernels add pairs of
products in 16 bits with saturation (x86 without VNNI: ``SATURATING``), where two full-range
products can overflow; ``int8_kernels`` names the CPU's path (``SLTC_INT8_KERNELS`` sets the
one an export is made for).

``prepare`` runs onnxruntime's own pre-processing first (BatchNorm folded into the products).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sltc.format.errors import SltcError

MODES = {"int8": "static", "int8-dynamic": "dynamic"}  # --quantize: the sltc.quantize values
CALIBRATION_BATCH = 64
# The CPU's int8 dot-product path, as onnxruntime's kernels (MLAS) pick it, by /proc/cpuinfo
# flags: amx and vnni (x86) and dotprod (ARM) add each product into 32 bits; an x86 CPU
# without VNNI (avx2) multiplies uint8 by int8 with vpmaddubsw, which adds pairs of products
# in 16 bits with saturation (measured: tests/test_ops.py); ARM without dotprod (neon) widens
# each product first. Older x86 (sse) and unknown CPUs are assumed to saturate.
INT8_FLAGS = {"amx_int8": "amx", "avx512_vnni": "vnni", "avx_vnni": "vnni", "asimddp": "dotprod",
              "asimd": "neon", "avx2": "avx2", "ssse3": "sse"}
INT8_PATHS = ("amx", "vnni", "dotprod", "neon", "avx2", "sse", "unknown")
SATURATING = ("avx2", "sse", "unknown")  # unknown: assume the worst
KERNELS_ENV = "SLTC_INT8_KERNELS"  # the path an export is made for, in place of this CPU's
NARROW = 64  # |int8 weight| <= 64: no pair of products by uint8 can pass 16 bits (255*64*2)


def cpu_int8_kernels(cpuinfo: str = "/proc/cpuinfo") -> str:
    """This CPU's int8 path (``INT8_FLAGS``): amx, vnni, dotprod, neon, avx2, sse, or
    unknown where the CPU does not say."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return "unknown"
    return next((kind for flag, kind in INT8_FLAGS.items() if flag in flags), "unknown")


def int8_kernels() -> str:
    """The int8 path an export is made for: ``SLTC_INT8_KERNELS`` where set (a deployment
    CPU unlike this one), else this CPU's."""
    forced = os.environ.get(KERNELS_ENV)
    if forced is None:
        return cpu_int8_kernels()
    if forced not in INT8_PATHS:
        raise SltcError(f"{KERNELS_ENV}={forced[:40]!r}: choose one of {', '.join(INT8_PATHS)}, "
                        "or unset it to use this CPU's")
    return forced


def saturates(kernels: str) -> bool:
    """Whether onnxruntime's int8 products on the path ``kernels`` can saturate."""
    return kernels in SATURATING


def wide_weights(constants) -> bool:
    """Whether any int8 array of ``constants`` lies outside [-NARROW, NARROW]: products by
    such weights can saturate on a ``SATURATING`` path."""
    return any(c.dtype == np.int8 and np.abs(c.astype(np.int16)).max(initial=0) > NARROW
               for c in constants)


def channel_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Weight name -> its output-channel axis, as onnxruntime quantises it per channel:
    0 for ``Conv`` and ``Gemm`` with ``transB``, else the last (``MatMul``, ``Gemm``)."""
    inits = {t.name for t in model.graph.initializer}
    axes = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 \
                and node.input[1] in inits:
            trans = any(a.name == "transB" and a.i for a in node.attribute)
            axes[node.input[1]] = 0 if node.op_type == "Conv" or trans else 1
    return axes


def ternary_scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Weight name -> ``c`` for each product weight whose non-zeros are all +-c (a scalar),
    or whose every output channel's are +-c_k (one per channel along its axis: a ternary
    weight times a folded BatchNorm's scale; an all-zero channel gets 1)."""
    axes = channel_axes(model)
    scales = {}
    for t in model.graph.initializer:
        if t.name not in axes or t.data_type != onnx.TensorProto.FLOAT:
            continue
        axis = axes[t.name]
        w = np.moveaxis(numpy_helper.to_array(t), axis, 0).reshape(t.dims[axis], -1)
        magnitudes = [np.unique(np.abs(row[row != 0])) for row in w]
        if any(len(m) > 1 for m in magnitudes) or all(len(m) == 0 for m in magnitudes):
            continue
        c = np.array([m[0] if len(m) else 1 for m in magnitudes], np.float32)
        if np.isfinite(c).all():
            scales[t.name] = c[0] if (c == c[0]).all() else c
    return scales


def _overrides(model: onnx.ModelProto, per_channel: bool) -> dict:
    """onnxruntime's ``TensorQuantOverrides`` giving each ternary weight its scales."""
    axes, out = channel_axes(model), {}
    for name, c in ternary_scales(model).items():
        if c.ndim == 0:
            out[name] = [{"scale": c, "zero_point": np.int8(0)}]
        elif per_channel:
            out[name] = [{"axis": axes[name], "scale": np.float32(ck), "zero_point": np.int8(0)}
                         for ck in c]
    return out


def prepare(model: onnx.ModelProto, folder: Path) -> onnx.ModelProto:
    """onnxruntime's own pre-processing before quantising (``quant_pre_process``: its graph
    optimiser folds each BatchNorm into the product before it, so that Conv, ReLU and the
    next Conv run as one int8 chain), left with the default domain only."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, out = folder / "fp32.onnx", folder / "prepared.onnx"
    onnx.save_model(model, source)
    try:
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    except Exception as e:  # noqa: BLE001 - its optimiser refusing the graph
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SltcError(f"onnxruntime cannot pre-process this network for int8 ({first}); "
                        "run it in fp32") from None
    prepared = onnx.load_model(out)
    used = {n.domain for n in prepared.graph.node}
    kept = [o for o in prepared.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del prepared.opset_import[:]
    prepared.opset_import.extend(kept)
    return prepared


class _Images:
    """onnxruntime's calibration reader over fixed images, in fixed batches."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.batches = iter([{input_name: images[i:i + CALIBRATION_BATCH]}
                             for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self.batches, None)


@dataclass
class Quantized:
    model: onnx.ModelProto
    kernels: str  # the int8 path it was made for (``int8_kernels``)
    reduce_range: bool  # 7-bit weights, for a saturating path


class _NoHint(logging.Filter):
    """Drops the quantiser's advice to pre-process (``prepare`` does), logged on the root
    logger; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and "pre-process" in record.getMessage())


@contextlib.contextmanager
def _without_hint():
    root, hint = logging.getLogger(), _NoHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def quantize(model: onnx.ModelProto, mode: str, folder: Path, kernels: str,
             images=None) -> Quantized:
    """``model`` (fp32) quantised to int8 by onnxruntime, ``mode`` static (per channel) or
    dynamic (per tensor), for the int8 path ``kernels``; ``images`` (static) calibrate;
    ``folder`` holds its working files. Ternary weights get their own scales
    (``ternary_scales``); where others remain and the path saturates, every weight gets 7
    bits (``reduce_range``)."""
    from onnxruntime import quantization as q

    inexact = set(channel_axes(model)) - set(ternary_scales(model))
    reduce_range = saturates(kernels) and bool(inexact)
    static = mode == "static"
    common = dict(per_channel=static, reduce_range=reduce_range, weight_type=q.QuantType.QInt8,
                  extra_options={"TensorQuantOverrides": _overrides(model, static)})
    out = folder / "int8.onnx"
    try:
        with _without_hint():
            if static:
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
    return Quantized(onnx.load_model(out), kernels, reduce_range)
