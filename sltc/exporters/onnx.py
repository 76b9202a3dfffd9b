"""``--format onnx``: the ticket's skeleton with its masked weights in place; standard ops only.

Input ``input`` (float32 pixels in [0, 1], dynamic batch), output ``logits``; the graph
is the one traced at freeze time, so normalisation and every op of the network are in
it. Seed, sparsity and the ticket's SHA-256 go in ``metadata_props``.
``weights="sparse"`` stores each gated weight as a ``Constant`` with ``sparse_value``.
The parity check runs the written file in onnxruntime against sltc's numpy engine on the
ticket's graph: two implementations of the one network the ticket holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sltc.format.errors import SltcError
from sltc.format.graph import Graph
from sltc.format.outputs import atomic_write, temp_dir
from sltc.format.records import ModelMeta
from sltc.runtime.compact import compact
from sltc.runtime.quantize import int8_kernels, prepare
from sltc.runtime.quantize import quantize as quantize_model

from . import int8
from ._registry import EXPORTERS

log = logging.getLogger("sltc")
WEIGHTS = ("dense", "sparse", "auto")  # auto: whichever file is smaller
EXTERNAL_DATA_BYTES = 1_800_000_000  # above this, weights go to a side file (protobuf's 2 GB cap)


def parity(model_path: str, reference: Graph, data: dict, seed: int, data_root=None,
           batch: int = 512) -> dict:
    """onnxruntime on the written file against the numpy reference engine on the ticket's
    own graph (``reference``, before any rewrite), on real test images (for data given in
    Python, uniform ones of the right shape)."""
    from sltc.data import recorded_test_set
    from sltc.runtime.ort import session

    batch = reference.bounds.batch_for(batch, "export")
    if data["name"] == "loaders":
        x = np.random.default_rng(0).random((min(batch, 64), *reference.input_shape),
                                            dtype=np.float32)
    else:
        x = recorded_test_set(data, seed, data_root, reference.input_shape,
                              reference.classes).batch(0, batch).astype(np.float32)
        x /= np.float32(255)
    expected = reference.run(x)
    sess, _ = session(model_path, "cpu")
    try:
        got = sess.run([reference.output_name], {reference.input_name: x})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime refusing the graph's values
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SltcError(f"onnxruntime cannot run the exported model ({first}); no file "
                        "written") from None
    diff = float(np.abs(got - expected).max())
    return {"max_abs_diff": diff, "max_rel_diff": diff / max(float(np.abs(expected).max()), 1e-12),
            "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
            "checked_inputs": len(x)}


def ticket_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@EXPORTERS.register("onnx")
def export_onnx(ticket, source, output, *, weights: str = "dense", compact_units: bool = False,
                check: bool = True, data_root=None, tolerance: float = 1e-4,
                quantize: str | None = None) -> dict:
    _check_options(weights, quantize, check, data_root)
    info = ticket.record()
    ticket.bounds.batch(1, "export")  # its copies of the weights too, before any is made
    reference = graph = Graph.from_ticket(ticket)
    if compact_units:
        graph = compact(graph)
    props = {"sltc.seed": ticket.seed, "sltc.sparsity": info.model.sparsity,
             "sltc.ticket_sha256": ticket_sha256(source), "sltc.method": info.method,
             "sltc.compact": compact_units, "sltc.test_accuracy": info.model.test_accuracy,
             "sltc.data": json.dumps(info.model.data, sort_keys=True)}
    weights, model = _weighted(graph, props, weights, info.model.sparsity)
    report = {"format": "onnx", "output": str(output), "weights": weights,
              "opset": graph.opset, "compact": compact_units}
    if quantize is not None:
        model = _quantized(graph.folded(), {**props, "sltc.weights": "dense"}, ticket, quantize,
                           data_root, Path(output), report)
    external = report["external_data"] = model.ByteSize() > EXTERNAL_DATA_BYTES

    def verify(tmp) -> None:
        _check_file(tmp)
        if check and quantize is not None:
            report.update(int8_accuracy(tmp, source, data_root))
        elif check:
            report.update(_parity_held(tmp, reference, info.model, data_root, tolerance))

    atomic_write(output, lambda tmp: _save(model, tmp, Path(output), external, verify))
    report["file_bytes"] = Path(output).stat().st_size
    return report


def _check_options(weights: str, quantize: str | None, check: bool, data_root) -> None:
    if weights not in WEIGHTS:
        raise SltcError(f"--weights {weights!r}: choose {', '.join(WEIGHTS)}")
    if quantize is not None:
        int8.check_mode(quantize)
        if weights != "dense":
            raise SltcError("--quantize writes its weights as dense int8 initializers; drop "
                            f"--weights {weights}")
    if data_root is not None and not check and quantize in (None, "int8-dynamic"):
        raise SltcError("--data is read only by the parity check (and --quantize int8's "
                        "calibration), which --no-check skips; drop one of them")


def _weighted(graph: Graph, props: dict, weights: str, sparsity: float):
    """(weights, model): the graph as ONNX with dense or sparse weights, ``auto`` the
    smaller file; a sparse file larger than the dense one is warned of."""
    kinds = ("dense",) if weights == "dense" else ("dense", "sparse")  # sizes to compare
    models = {kind: graph.to_onnx(kind == "sparse", {**props, "sltc.weights": kind})
              for kind in kinds}
    sizes = {kind: m.ByteSize() for kind, m in models.items()}
    if weights == "auto":
        weights = min(sizes, key=sizes.get)
    elif weights == "sparse" and sizes["sparse"] > sizes["dense"]:
        log.warning("warning: at density %.3f the sparse ONNX (%d bytes) is larger than the "
                    "dense one (%d): each kept weight costs an 8-byte index; --weights dense "
                    "or auto writes the smaller", 1 - sparsity, sizes["sparse"],
                    sizes["dense"])
    return weights, models[weights]


def _save(model: onnx.ModelProto, tmp: str, output: Path, external: bool, verify) -> None:
    """``model`` to ``tmp``, then ``verify(tmp)``; with external data, the weights' side file
    (named after ``output``) is staged with it in a folder of its own, then moved into place
    just before the model file."""
    if not external:
        onnx.save_model(model, tmp)
        verify(tmp)
        return
    name, folder = output.name, output.parent
    with temp_dir(output) as staged:
        onnx.save_model(model, staged / name, save_as_external_data=True,
                        location=f"{name}.data")
        verify(staged / name)
        os.replace(staged / f"{name}.data", folder / f"{name}.data")
        os.replace(staged / name, tmp)


def _check_file(path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise SltcError(f"the exported model fails onnx.checker ({first}); no file "
                        "written") from None


def _parity_held(path, reference: Graph, model: ModelMeta, data_root, tolerance: float) -> dict:
    """``parity`` of the written file, which must agree within ``tolerance``."""
    report = parity(str(path), reference, model.data, model.seed, data_root)
    if report["max_rel_diff"] > tolerance or report["top1_agreement"] < 1.0:
        raise SltcError(f"parity check failed: max |onnxruntime - numpy| = "
                        f"{report['max_abs_diff']:.3g} ({report['max_rel_diff']:.3g} of "
                        f"the largest logit), top-1 agreement "
                        f"{report['top1_agreement']:.4f}; no file written")
    return report


def _quantized(graph: Graph, props: dict, ticket, quantize: str, data_root, output: Path,
               report: dict) -> onnx.ModelProto:
    """``graph`` (folded: each weight an initializer, as onnxruntime's quantiser wants it)
    pre-processed and quantised by onnxruntime (``runtime.quantize``), with the ``sltc.*``
    metadata ``props`` and the quantisation recorded there; ``report`` gets each weight's
    error."""
    mode = int8.check_mode(quantize)
    images = int8.calibration_images(ticket.record(), data_root) \
        if mode == "static" else None
    with temp_dir(output) as folder:
        model = prepare(graph.to_onnx(), folder)
        constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        quantized = quantize_model(model, mode, folder, int8_kernels(), images)
    errors = int8.weight_errors(quantized.model, constants)
    exact = sorted(name for name, error in errors.items() if error == 0.0)
    props = {**props, "sltc.quantize": quantize, "sltc.quantize_mode": mode,
             "sltc.calibration_images": 0 if images is None else len(images),
             "sltc.int8_kernels": quantized.kernels, "sltc.reduce_range": quantized.reduce_range,
             "sltc.exact_weights": json.dumps(exact)}
    model = quantized.model
    del model.metadata_props[:]
    helper.set_model_props(model, {k: str(v) for k, v in props.items()})
    report.update(quantize=quantize, calibration_images=0 if images is None else len(images),
                  int8_kernels=quantized.kernels, reduce_range=quantized.reduce_range,
                  exact_weights=len(exact), quantized_weights=len(errors),
                  weight_error=max(errors.values(), default=0.0))
    return model


def int8_accuracy(path, ticket_path, data_root=None) -> dict:
    """The int8 file's test accuracy next to the fp32 ticket's, both through onnxruntime
    (``sltc validate``); a drop above ``int8.ACCURACY_BOUND`` warns."""
    from sltc.runtime.validate import validate

    got = validate(path, "ort", data_root=data_root, kind="onnx")["test_accuracy"]
    fp32 = validate(ticket_path, "ort", data_root=data_root)["test_accuracy"]
    if fp32 - got > int8.ACCURACY_BOUND:
        log.warning("warning: the int8 model scores %.4f on the test set, %.2f points below "
                    "the fp32 ticket's %.4f (bound %.1f points); export without --quantize, "
                    "or try --quantize int8-dynamic", got, 100 * (fp32 - got), fp32,
                    100 * int8.ACCURACY_BOUND)
    return {"test_accuracy": got, "fp32_test_accuracy": fp32,
            "accuracy_drop": fp32 - got, "accuracy_bound": int8.ACCURACY_BOUND}
