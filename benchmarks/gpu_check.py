"""Everything sltc does on a GPU, checked and timed in one short run (under 6 minutes on an H100).

    python benchmarks/gpu_check.py --data DIR --out benchmarks/out/gpu_check.json   # or: make gpu-check

Checks, each a row of the table and the JSON (a failing check is recorded, the rest go on):
  1. ``sltc discover --device cuda``: LeNet-300-100 and ResNet-20 on Fashion-MNIST (a few
     epochs; seconds per epoch), against this script's own CPU run of a few steps;
  2. the same seed twice on CUDA: the same ticket bytes, or how far apart the masks are;
  3. the CUDA-trained ticket on the CPU: ``sltc eval`` and ``sltc validate`` with every engine;
  4. ``sltc validate --engine csr --provider cuda`` (cupy / cuSPARSE) reproduces the accuracy;
  5. ``sltc bench --provider cuda`` (the csr engine on cuSPARSE) at batches 1, 64 and 1024
     against the ticket's dense network in torch on CUDA;
  6. ``sltc validate --engine ort --provider cuda --require-gpu`` where onnxruntime-gpu is
     installed, a skip line where it is not.

On a bare GPU image (torch, numpy, scipy, cupy, onnx, onnxruntime, typer, rich, pyyaml,
safetensors, matplotlib, no pydantic), with the wheels of ``shared/gpu-wheels`` copied into
an ignored folder ``.whl`` and Fashion-MNIST's four .gz files in ``.data/fashion-mnist``:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-deps --no-build-isolation -e .
    python3 benchmarks/gpu_check.py --data .data/fashion-mnist

Without CUDA it stops at once with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

ROWS: list[dict] = []


def cli(*args, timeout: int = 600) -> dict | list:
    proc = subprocess.run([sys.executable, "-m", "sltc", *map(str, args), "--json"],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check(name: str):
    """Run one check; record its result, its time, or its failure, and go on."""
    def wrap(fn):
        def run(*args):
            tic = time.perf_counter()
            try:
                detail = fn(*args)
                ROWS.append({"check": name, "result": detail.pop("result", "ok"),
                             "seconds": time.perf_counter() - tic, **detail})
                print(f"{name}: {ROWS[-1]['result']}: {ROWS[-1]['detail']}", flush=True)
                return detail
            except Exception as e:  # noqa: BLE001 - one check's failure is a row, not the end
                ROWS.append({"check": name, "result": "FAIL", "seconds": time.perf_counter() - tic,
                             "detail": f"{type(e).__name__}: {e}"})
                return None
        return run
    return wrap


def sets(data: str, *extra: str) -> list[str]:
    return [a for s in (f"data.root={data}", *extra) for a in ("--set", s)]


@check("discover on CUDA")
def discover_cuda(work: Path, data: str, name: str, example: str, epochs: int) -> dict:
    s = cli("discover", example, "--out", work / name, "--device", "cuda",
            *sets(data, f"train.epochs={epochs}"))
    cpu = cli("discover", example, "--out", work / f"{name}-cpu", "--device", "cpu",
              *sets(data, "train.epochs=1", "train.max_steps=20"))
    per_step_cuda = s["seconds_per_epoch"] / _steps(work / name)
    per_step_cpu = cpu["seconds_per_epoch"] / 20
    return {"detail": f"{name}: {epochs} epochs, {s['seconds_per_epoch']:.1f} s each; "
                      f"{per_step_cuda * 1e3:.1f} ms/step on CUDA vs {per_step_cpu * 1e3:.0f} "
                      f"ms/step on this machine's CPU ({per_step_cpu / per_step_cuda:.0f}x); "
                      f"ticket {s['test_accuracy']:.4f} at sparsity {s['sparsity']:.3f}",
            "network": name, "test_accuracy": s["test_accuracy"], "sparsity": s["sparsity"],
            "seconds_per_epoch": s["seconds_per_epoch"], "cpu_seconds_per_step": per_step_cpu,
            "cuda_seconds_per_step": per_step_cuda}


def _steps(run: Path) -> int:
    from sltc.config import load_config

    cfg = load_config(run / "config.yaml")
    n = 60000 - cfg.data.val_size
    return min(-(-n // cfg.data.batch_size), cfg.train.max_steps or 10**9)


@check("same seed twice on CUDA")
def determinism(work: Path, data: str) -> dict:

    from sltc.format.ticket import Ticket

    paths = []
    for i in range(2):
        cli("discover", "examples/lenet300-fashion.yaml", "--out", work / f"twice{i}", "--device",
            "cuda", *sets(data, "train.epochs=1"))
        paths.append(work / f"twice{i}/ticket.slt")
    if paths[0].read_bytes() == paths[1].read_bytes():
        return {"detail": "identical ticket bytes (1 epoch of LeNet-300-100)"}
    a, b = (Ticket.load(p) for p in paths)
    differ = sum(int((a.masks[k] != b.masks[k]).sum()) for k in a.masks)
    total = sum(m.size for m in a.masks.values())
    return {"result": "differ", "detail": f"{differ} of {total} mask bits differ; test "
            f"accuracy {a.meta['test_accuracy']} and {b.meta['test_accuracy']}"}


@check("CUDA ticket on the CPU")
def on_cpu(ticket: Path, data: str) -> dict:
    recorded = cli("eval", ticket, "--device", "cpu", "--data", data)
    accs = {e: cli("validate", ticket, "--engine", e, "--data", data)["test_accuracy"]
            for e in ("dense", "csr", "ort")}
    ok = all(a == recorded["recorded_accuracy"] for a in [recorded["test_accuracy"], *accs.values()])
    return {"result": "ok" if ok else "MISMATCH",
            "detail": f"recorded {recorded['recorded_accuracy']}, eval on CPU "
                      f"{recorded['test_accuracy']}, validate " + ", ".join(
                          f"{e} {a}" for e, a in accs.items())}


@check("csr engine on cuSPARSE")
def cusparse(ticket: Path, data: str) -> dict:
    out = cli("validate", ticket, "--engine", "csr", "--provider", "cuda", "--data", data)
    ok = out["test_accuracy"] == out["recorded_accuracy"]
    return {"result": "ok" if ok else "MISMATCH",
            "detail": f"{out['provider']}: {out['test_accuracy']} against the recorded "
                      f"{out['recorded_accuracy']}"}


@check("bench on CUDA")
def bench_cuda(ticket: Path) -> dict:
    import torch

    from sltc.format.ticket import Ticket
    from sltc.rebuild import model_from_ticket

    records = cli("bench", ticket, "--engine", "csr", "--provider", "cuda", "--batch",
                  "1,64,1024", "--repeat", "100")
    model = model_from_ticket(Ticket.load(ticket)).cuda()
    torch_ms = {}
    for batch in (1, 64, 1024):
        x = torch.rand(batch, *Ticket.load(ticket).meta["input_shape"], device="cuda")
        with torch.no_grad():
            for _ in range(20):
                model(x)
            torch.cuda.synchronize()
            times = []
            for _ in range(100):
                tic = time.perf_counter()
                model(x)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - tic)
        torch_ms[batch] = sorted(times)[50] * 1e3
    rows = {r["batch"]: r["p50_ms"] for r in records}
    return {"detail": "; ".join(f"b{b}: cuSPARSE {rows[b]:.3f} ms vs dense torch "
                                f"{torch_ms[b]:.3f} ms" for b in (1, 64, 1024)),
            "csr_cuda_ms": rows, "torch_cuda_ms": torch_ms}


@check("ort on CUDA")
def ort_cuda(ticket: Path, data: str) -> dict:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return {"result": "skipped", "detail": "onnxruntime-gpu is not installed (providers: "
                f"{', '.join(onnxruntime.get_available_providers())})"}
    out = cli("validate", ticket, "--engine", "ort", "--provider", "cuda", "--require-gpu",
              "--data", data)
    return {"result": "ok" if out["test_accuracy"] == out["recorded_accuracy"] else "MISMATCH",
            "detail": f"{out['provider']}: {out['test_accuracy']} against the recorded "
                      f"{out['recorded_accuracy']}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="folder with Fashion-MNIST's four IDX .gz files")
    ap.add_argument("--work", default="runs/gpu-check")
    ap.add_argument("--out", default="benchmarks/out/gpu_check.json")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: error: this torch build sees no CUDA device; run it on a GPU machine",
              file=sys.stderr)
        sys.exit(2)
    work = Path(args.work)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    device = torch.cuda.get_device_name(0)
    discover_cuda(work, args.data, "lenet300", "examples/lenet300-fashion.yaml", 3)
    discover_cuda(work, args.data, "resnet20", "examples/resnet20-fashion.yaml", 2)
    determinism(work, args.data)
    ticket = work / "lenet300/ticket.slt"
    on_cpu(ticket, args.data)
    cusparse(ticket, args.data)
    bench_cuda(ticket)
    ort_cuda(ticket, args.data)
    for row in ROWS:
        row["device"] = device
        row["torch"] = torch.__version__
    report(ROWS, args.out, f"gpu_check on {device} (torch {torch.__version__})",
           ["check", "result", "seconds", "detail"])


if __name__ == "__main__":
    main()
