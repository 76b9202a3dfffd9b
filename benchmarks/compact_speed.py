"""Speed-up of ``--compact`` on a neuron-gated MLP ticket in onnxruntime.

    python benchmarks/compact_speed.py RUN_DIR --out benchmarks/out/compact_speed.json

RUN_DIR holds a ticket with ``gates.granularity: neuron``; both exports are
benchmarked by ``sltc bench`` in one run (ort engine, one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", default="benchmarks/out/compact_speed.json")
    args = ap.parse_args()
    run = Path(args.run)
    sltc("export", run / "ticket.slt", "-f", "onnx", "-o", run / "full.onnx")
    sltc("export", run / "ticket.slt", "-f", "onnx", "-o", run / "compact.onnx", "--compact")
    records = json.loads(sltc("bench", run / "full.onnx", run / "compact.onnx", "--batch", "1,64",
                              "--engine", "ort", "--threads", "1", "--repeat", "500", "--json"))
    for r in records:
        r["model"] = Path(r["model"]).name
    report(records, args.out, f"--compact speed-up, {run}", ["model", "batch", "p50_ms",
                                                             "throughput", "file_bytes", "speedup"])


if __name__ == "__main__":
    main()
