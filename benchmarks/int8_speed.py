"""int8 ONNX exports against fp32 ONNX and the csr engine: LeNet-300-100, the 784-2048-2048-10
MLP, Conv-4, ResNet-20 and the ViT on Fashion-MNIST, 90% sparse, signed-constant weights.

    python benchmarks/int8_speed.py --out benchmarks/out/int8_speed.json

Builds each ticket with ``sltc discover`` (CRBG, one epoch of at most 200 steps: quick
tickets, whose int8 and fp32 accuracies are compared with each other, not with the
paper's), exports it as fp32 ONNX and as ``--quantize int8`` (static QDQ; the export
measures both test accuracies through onnxruntime), then runs one ``sltc bench`` per
network on the fp32 file, the int8 file and the ticket, engines ``ort``, ``csr`` and
``openvino`` (where ``sltc[openvino]`` is installed), one thread, on the run's test
images, ``--rounds`` taking turns, best p50 kept. Speed-ups are against dense fp32
onnxruntime in that same bench call; ``recommended`` marks the row bench recommends (the
fastest) at each batch size. The int8 file's test accuracy through OpenVINO is
``sltc validate --engine openvino``'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, sltc  # noqa: E402

from sltc.runtime.engines import installed  # noqa: E402

NETWORKS = {
    "lenet300": ("examples/lenet300-fashion.yaml", []),
    "mlp2048": ("examples/lenet300-fashion.yaml",
                ["model.widths=[2048,2048]", "model.init=signed_constant"]),
    "conv4": ("examples/conv4-fashion.yaml", []),
    "resnet20": ("examples/resnet20-fashion.yaml", []),
    "vit": ("examples/vit-fashion.yaml", []),
}
TRAIN = ["gates.target_sparsity=0.9", "train.epochs=1", "train.max_steps=200"]


def ticket(work: Path, name: str) -> Path:
    run = work / name
    if not (run / "ticket.slt").exists():
        example, sets = NETWORKS[name]
        sltc("discover", example, "--out", run, "--json",
             *[a for s in sets + TRAIN for a in ("--set", s)])
    return run / "ticket.slt"


def exports(work: Path, name: str, path: Path) -> tuple[Path, Path, dict]:
    fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
    sltc("export", path, "-f", "onnx", "-o", fp32, "--no-check")
    made = json.loads(sltc("export", path, "-f", "onnx", "-o", int8, "--quantize", "int8",
                           "--json").strip().splitlines()[-1])
    return fp32, int8, made


def _label(r: dict) -> str | None:
    """The row a bench record fills: fp32 and int8 files on ort (``int8``) and openvino
    (``openvino int8``), the ticket on csr."""
    if r["engine"] in ("ort", "openvino") and r["kind"] == "onnx":
        return ("openvino " if r["engine"] == "openvino" else "") + r["precision"]
    if r["engine"] == "csr" and r["kind"] == "ticket":
        return "csr"
    return None


def _openvino_accuracy(int8: Path) -> float | None:
    if "openvino" not in installed():
        return None
    out = json.loads(sltc("validate", int8, "--engine", "openvino", "--json",
                          "--tolerance", 1).strip().splitlines()[-1])
    return out["test_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench-int8")
    ap.add_argument("--out", default="benchmarks/out/int8_speed.json")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--batch", default="1,8,64,256")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    rows = []
    for name in args.networks.split(","):
        path = ticket(work, name)
        fp32, int8, made = exports(work, name, path)
        engines = [e for e in ("ort", "csr", "openvino") if e in installed()]
        records = json.loads(sltc("bench", fp32, int8, path,
                                  *[a for e in engines for a in ("--engine", e)],
                                  "--batch", args.batch, "--threads", args.threads, "--repeat",
                                  args.repeat, "--warmup", 5, "--inputs", "test", "--rounds",
                                  args.rounds, "--json"))
        accuracy = {"fp32": made["fp32_test_accuracy"], "int8": made["test_accuracy"],
                    "openvino int8": _openvino_accuracy(int8)}
        for r in records:
            label = _label(r)
            if label is None:
                continue
            rows.append({"network": name, "path": label, "batch": r["batch"],
                         "threads": r["threads"], "p50_ms": r["p50_ms"],
                         "speedup": r["speedup"], "speedup_range": r["speedup_range"],
                         "sparse": None if r["layers"] is None else
                         f"{len(r['sparse_layers'])}/{r['layers']}",
                         "test_accuracy": accuracy.get(label, made["fp32_test_accuracy"]),
                         "file_bytes": r["file_bytes"], "recommended": r["recommended"]})
    rows.sort(key=lambda r: (r["network"], r["batch"], r["path"]))
    report(rows, args.out, f"int8 and csr against dense fp32 onnxruntime, {args.threads} "
           "thread(s), p50 on test images", ["network", "batch", "path", "p50_ms", "speedup",
                                             "sparse", "test_accuracy", "recommended"])


if __name__ == "__main__":
    main()
