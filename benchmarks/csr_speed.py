"""The csr engine against dense ONNX Runtime: a 784-2048-2048-10 MLP and ResNet-20, 90% sparse.

    python benchmarks/csr_speed.py --out benchmarks/out/csr_speed.json

Builds both tickets with ``sltc discover`` on Fashion-MNIST (the synthetic set where it
is missing): the MLP (signed-constant weights, CRBG, 200 steps) and ResNet-20 (CRBG,
200 steps), then runs ``sltc bench`` with one thread at batches 1, 8, 64 and 256 on the
run's test images (the csr engine skips zero activations, so its speed depends on them)
and (``--inputs test,random``) on uniform random inputs. Each engine runs in its own
process, three rounds taking turns, best p50 kept (``sltc bench --rounds 3``); the
speed-ups are against dense ORT on the exported ONNX measured in the same bench call;
``sparse`` is how many of the layers that could run sparse the csr engine's calibrated
plan runs sparse. Each bench runs twice, its sparse products above batch 1 on scipy's
kernels (``SLTC_MKL=0``) and on MKL's (``kernels``), one after the other.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
KERNELS = {"scipy": {"SLTC_MKL": "0"}, "mkl": {"SLTC_MKL": "1"}}  # --kernels: environment
NETWORKS = {
    "mlp2048": ["model.widths=[2048,2048]", "model.init=signed_constant"],
    "resnet20": ["model.arch=resnet20"],
}


def ticket(work: Path, name: str) -> Path:
    run = work / name
    if not (run / "ticket.slt").exists():
        sets = NETWORKS[name] + ["gates.target_sparsity=0.9", "train.epochs=1", "train.max_steps=200"]
        if not FASHION.is_dir():
            sets.append("data.name=synthetic")
        sltc("discover", "examples/lenet300-fashion.yaml", "--out", run, "--json",
             *[a for s in sets for a in ("--set", s)])
    return run / "ticket.slt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench-csr")
    ap.add_argument("--out", default="benchmarks/out/csr_speed.json")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--batch", default="1,8,64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inputs", default="test")
    ap.add_argument("--kernels", default=",".join(KERNELS))
    args = ap.parse_args()
    unknown = set(args.kernels.split(",")) - set(KERNELS)
    if unknown:
        ap.error(f"--kernels {','.join(sorted(unknown))}: choose from {','.join(KERNELS)}")
    work = Path(args.work)
    rows = []
    for name in NETWORKS:
        path = ticket(work, name)
        onnx = work / f"{name}.onnx"
        sltc("export", path, "-f", "onnx", "-o", onnx, "--no-check")
        for inputs in args.inputs.split(","):
            for kernels in args.kernels.split(","):
                records = json.loads(sltc(
                    "bench", onnx, path, "--engine", "ort", "--engine", "csr", "--batch",
                    args.batch, "--threads", "1", "--repeat", args.repeat, "--inputs", inputs,
                    "--rounds", args.rounds, "--json",
                    env=KERNELS[kernels]))
                rows += [_row(name, inputs, kernels, r) for r in records
                         if r["engine"] == "csr" and r["kind"] == "ticket"]
    report(rows, args.out, "csr engine vs dense ONNX Runtime, 1 thread, p50",
           ["network", "inputs", "kernels", "batch", "ort_ms", "csr_ms", "speedup", "sparse"])


def _row(name: str, inputs: str, kernels: str, r: dict) -> dict:
    return {"network": name, "inputs": inputs, "kernels": kernels, "batch": r["batch"],
            "csr_ms": r["p50_ms"], "ort_ms": r["p50_ms"] * r["speedup"],
            "speedup": r["speedup"], "speedup_range": r["speedup_range"],
            "provider": r["provider"], "sparse": f"{len(r['sparse_layers'])}/{r['layers']}",
            "sparse_layers": r["sparse_layers"]}


if __name__ == "__main__":
    main()
