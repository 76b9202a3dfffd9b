"""One discover epoch under each thread setting, the settings taking turns (docs/results.md,
section 7, threads).

    python benchmarks/threads.py --out benchmarks/out/threads-lenet300.json
    python benchmarks/threads.py --config examples/conv4-fashion.yaml --steps 20 --rounds 2 \
        --out benchmarks/out/threads-conv4.json

Each run is ``sltc discover CONFIG --set train.epochs=1 --set train.max_steps=STEPS --set
data.val_size=1000`` in a fresh process with one setting of the environment ("default":
none, sltc's own choice). Reported: the epoch's training seconds (validation and test
excluded), the median over rounds, and each median over the best ``OMP_NUM_THREADS``
setting's. ``busy`` is the runnable tasks other than the benchmark when each run starts
(what the default's choice reads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402

from sltc.openmp import busy_cores  # noqa: E402

SETTINGS = ["default", "OMP_WAIT_POLICY=PASSIVE", "GOMP_SPINCOUNT=10000", "OMP_NUM_THREADS=1",
            "OMP_NUM_THREADS=2"]


def one_epoch(config: str, steps: int, setting: str, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if setting != "default":
        key, value = setting.split("=")
        env[key] = value
    busy = busy_cores()
    proc = subprocess.run([sys.executable, "-m", "sltc.cli", "discover", config, "--out", out,
                           "--set", "train.epochs=1", "--set", f"train.max_steps={steps}",
                           "--set", "data.val_size=1000", "--json"],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    summary = json.loads(proc.stdout.splitlines()[-1])
    return {"seconds": summary["train_seconds"], "busy": busy,
            "test_accuracy": summary["test_accuracy"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="examples/lenet300-fashion.yaml")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--out", default="benchmarks/out/threads.json")
    args = p.parse_args()
    settings = args.settings.split(",")
    runs = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, s in enumerate(settings):
                run = one_epoch(args.config, args.steps, s, Path(tmp) / f"{r}-{i}")
                print(f"round {r + 1}, {s}: {run['seconds']:.2f} s (busy {run['busy']:.1f})",
                      file=sys.stderr)
                runs[s].append(run)
    medians = {s: statistics.median(x["seconds"] for x in rs) for s, rs in runs.items()}
    best = min((m for s, m in medians.items() if s.startswith("OMP_NUM_THREADS")), default=None)
    rows = [{"setting": s, "seconds": [round(x["seconds"], 2) for x in rs],
             "busy": [round(x["busy"], 1) for x in rs], "median": medians[s],
             "over_best_threads": medians[s] / best if best else None,
             "test_accuracy": sorted({x["test_accuracy"] for x in rs})}
            for s, rs in runs.items()]
    report(rows, args.out, f"{args.config}, {args.steps} steps, {args.rounds} rounds",
           ["setting", "seconds", "busy", "median", "over_best_threads", "test_accuracy"])


if __name__ == "__main__":
    main()
