"""CSR against dense ONNX Runtime on a 784-2048-2048-10 MLP ticket at 90% sparsity.

    python benchmarks/sparse_mlp.py --out benchmarks/out/sparse_mlp.json

Builds the ticket with ``sltc discover`` (signed-constant weights, CRBG, one short
epoch on Fashion-MNIST, or the synthetic set where Fashion-MNIST is missing), exports
it as dense ONNX and as CSR (values implied and stored), then runs ``sltc bench``
with one thread at batch 1 and 64, on uniform random inputs and on the run's test
images (the csr engine skips zero activations, so its speed depends on them). Each
engine runs in its own process; the speed-ups are against dense ORT measured in
the same bench call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench-mlp2048")
    ap.add_argument("--out", default="benchmarks/out/sparse_mlp.json")
    ap.add_argument("--repeat", type=int, default=500)
    args = ap.parse_args()
    work = Path(args.work)
    if not (work / "run/ticket.slt").exists():
        data = [] if FASHION.is_dir() else ["--set", "data.name=synthetic"]
        sltc("discover", "examples/lenet300-fashion.yaml", "--out", work / "run", "--json",
             "--set", "model.widths=[2048,2048]", "--set", "model.init=signed_constant",
             "--set", "gates.target_sparsity=0.9", "--set", "train.epochs=1",
             "--set", "train.max_steps=200", *data)
    ticket = work / "run/ticket.slt"
    sltc("export", ticket, "-f", "onnx", "-o", work / "dense.onnx", "--no-check")
    sltc("export", ticket, "-f", "csr", "-o", work / "implied.csr.safetensors")
    sltc("export", ticket, "-f", "csr", "-o", work / "stored.csr.safetensors", "--values", "stored")
    records = []
    for inputs in ("random", "test"):
        records += json.loads(sltc("bench", work / "dense.onnx", work / "implied.csr.safetensors",
                                   work / "stored.csr.safetensors", "--engine", "ort",
                                   "--engine", "csr", "--batch", "1,64", "--threads", "1",
                                   "--repeat", args.repeat, "--inputs", inputs, "--json"))
    for r in records:
        r["model"] = Path(r["model"]).name
    report(records, args.out, "784-2048-2048-10, 90% sparse, signed constant, 1 thread",
           ["model", "engine", "inputs", "batch", "p50_ms", "p90_ms", "throughput", "load_s",
            "peak_rss_mb", "file_bytes", "speedup"])


if __name__ == "__main__":
    main()
