"""What one op costs numpy's dense engine (the slowest), against the graph check's model
(``sltc/format/check.py``, format.md section 2.6 rules 2 and 8): seconds per unit of work, the
peak bytes it allocates beside its inputs (tracemalloc) against the scratch the check counts,
and the check's own seconds per node and per node input.

    python benchmarks/graph_costs.py --out benchmarks/out/graph_costs.json

A unit of work is an element visit; a product's multiply-adds count one per
``MACS_PER_VISIT``; every node adds ``NODE_WORK``. ``ns/unit`` must stay far under the
60 s that ``MAX_GRAPH_WORK`` units may take; ``scratch/peak`` at 1 or more means the check
counts at least what numpy holds.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.format.check import _scratch, _work, check_model
from sltc.format.ops import OPS, Node

E = 1 << 22  # elements of the elementwise cases


def _node(op: str, inputs: int, outputs: int = 1, **attrs):
    return helper.make_node(op, [f"i{k}" for k in range(inputs)],
                            [f"o{k}" for k in range(outputs)], name="n", **attrs)


def cases() -> dict:
    """Name -> (node, inputs): each op of the table at a size numpy takes milliseconds on."""
    rng = np.random.default_rng(0)
    x = rng.random(E, dtype=np.float32) + 0.5
    u8, i8 = (rng.integers(0, 255, (512, 512), dtype=np.uint8),
              rng.integers(-127, 127, (512, 512), dtype=np.int8))
    image = x.reshape(4, 16, 256, 256)
    return {
        "Add": (_node("Add", 2), [x, x]),
        "Pow": (_node("Pow", 2), [x, x]),
        "Exp": (_node("Exp", 1), [x]),
        "Erf": (_node("Erf", 1), [x]),
        "Sigmoid": (_node("Sigmoid", 1), [x]),
        "Gelu": (_node("Gelu", 1), [x]),
        "Softmax": (_node("Softmax", 1), [x.reshape(1024, -1)]),
        "LayerNormalization": (_node("LayerNormalization", 2),
                               [x.reshape(4096, -1), np.ones(1024, np.float32)]),
        "Where": (_node("Where", 3), [x > 1, x, x]),
        "Concat": (_node("Concat", 2, axis=0), [x, x]),
        "MaxPool 3x3": (_node("MaxPool", 1, kernel_shape=[3, 3], pads=[1, 1, 1, 1]), [image]),
        "AveragePool 3x3": (_node("AveragePool", 1, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                            [image]),
        "MatMul 1024^3": (_node("MatMul", 2), [x[:1 << 20].reshape(1024, 1024)] * 2),
        "MatMul 1x4096 @ 4096x1024": (_node("MatMul", 2), [x[:4096].reshape(1, 4096),
                                                           x[:1 << 22].reshape(4096, 1024)]),
        "MatMul batched 2x2": (_node("MatMul", 2), [x.reshape(-1, 2, 2)] * 2),
        "Conv 3x3, 64 channels": (_node("Conv", 2, pads=[1, 1, 1, 1]),
                                  [x[:1 << 18].reshape(1, 64, 64, 64),
                                   x[:64 * 64 * 9].reshape(64, 64, 3, 3)]),
        "Conv 32x32, 1 channel": (_node("Conv", 2), [x[:1 << 18].reshape(1, 1, 512, 512),
                                                     x[:1024].reshape(1, 1, 32, 32)]),
        "MatMulInteger 512^3": (_node("MatMulInteger", 2), [u8, i8]),
        "ConvInteger 3x3, 64 channels": (_node("ConvInteger", 2, pads=[1, 1, 1, 1]), [
            rng.integers(0, 255, (1, 64, 64, 64), dtype=np.uint8),
            rng.integers(-127, 127, (64, 64, 3, 3), dtype=np.int8)]),
        "DynamicQuantizeLinear": (_node("DynamicQuantizeLinear", 1, 3), [x]),
    }


def measure(name: str, proto, args) -> dict:
    node = Node.read(proto)
    tracemalloc.start()
    out = OPS[node.op](node, *args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    outs = out if isinstance(out, tuple) else (out,)
    out_bytes = sum(np.asarray(o).nbytes for o in outs)
    ins, shapes = [np.shape(a) for a in args], [np.shape(o) for o in outs]
    units = _work(proto, ins, shapes)
    seconds = min(_seconds(lambda: OPS[node.op](node, *args)) for _ in range(3))
    return {"op": name, "units": units, "ms": 1e3 * seconds, "ns/unit": 1e9 * seconds / units,
            "peak MiB": (peak - out_bytes) / 2**20,
            "scratch MiB": _scratch(proto, ins, shapes, out_bytes) / 2**20}


def _seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def check_seconds(nodes: int, inputs: int) -> float:
    """Seconds the graph check takes on ``nodes`` Sum nodes of ``inputs`` inputs each."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests import attack_files as af

    graph = af.wide_sums(nodes, inputs)
    return _seconds(lambda: check_model(graph))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/out/graph_costs.json")
    args = ap.parse_args()
    rows = [measure(name, *case) for name, case in cases().items()]
    for nodes, inputs in ((2000, 1), (60, 1024)):
        seconds = check_seconds(nodes, inputs)
        rows.append({"op": f"check: {nodes} Sum of {inputs}", "units": None,
                     "ms": 1e3 * seconds, "ns/unit": None, "peak MiB": None,
                     "scratch MiB": None, "us/node": 1e6 * seconds / nodes,
                     "us/input": 1e6 * seconds / (nodes * (inputs + 1))})
    for row in rows:
        row.setdefault("us/node", None)
        row.setdefault("us/input", None)
    report(rows, args.out, "numpy's cost per unit of work and its scratch, against the check",
           ["op", "units", "ms", "ns/unit", "peak MiB", "scratch MiB", "us/node", "us/input"])


if __name__ == "__main__":
    main()
