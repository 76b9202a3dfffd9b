"""Tune CRBG on the validation split (never the test set), one factor at a time.

    python benchmarks/tune_crbg.py --out benchmarks/out/tune_crbg.json

Every row is a ``sltc discover examples/lenet300-fashion.yaml`` run with the
defaults, 20 epochs (to fit the sweep on two cores) and the listed overrides; the
last rows vary the epoch count itself; rows are ranked by the ticket's accuracy on
the validation split (5,000 training images held out). Test accuracy is printed
for reference only and played no part in choosing the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report  # noqa: E402
from _runs import run_all  # noqa: E402

GRID = [
    [],
    ["train.lr=0.01"], ["train.lr=0.05"],
    ["gates.sigma=0.25"], ["gates.sigma=1.0"],
    ["gates.mu_init=1.0"], ["gates.mu_init=0.25"],
    ["gates.threshold=0.25"], ["gates.threshold=0.75"],
    ["gates.controller_gain=20"], ["gates.controller_gain=150"],
    ["gates.controller_kp=0"], ["gates.controller_kp=12"],
    ["gates.ramp=0.3"],
    ["model.gain=1.0"], ["model.gain=3.0"],
    ["data.batch_size=64"], ["train.schedule=constant"],
    ["model.init=uniform"], ["model.init=kaiming_normal"],
    ["model.batchnorm=true"],
    ["train.epochs=40"], ["train.epochs=60"], ["train.epochs=80"],
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/out/tune_crbg.json")
    ap.add_argument("--work", default="runs/tune")
    ap.add_argument("--extra", nargs="*", default=["train.epochs=20"],
                    help="Overrides put before every row's own (default: the sweep runs 20 epochs).")
    args = ap.parse_args()
    jobs = [("examples/lenet300-fashion.yaml", Path(args.work) / ("_".join(g) or "defaults"),
             [*args.extra, *g]) for g in GRID]
    summaries = run_all(jobs, on_done=lambda job, s: print(job[2], s["val_accuracy"], flush=True))
    rows = [{"overrides": " ".join(g) or "(defaults, 20 epochs)", "val_accuracy": s["val_accuracy"],
             "sparsity": s["sparsity"], "threshold_sparsity": s["threshold_sparsity"],
             "test_accuracy": s["test_accuracy"], "seconds_per_epoch": s["seconds_per_epoch"]}
            for g, s in zip(GRID, summaries, strict=True)]
    rows.sort(key=lambda r: -r["val_accuracy"])
    report(rows, args.out, "CRBG on LeNet-300-100 / Fashion-MNIST, target sparsity 0.9, "
           "ranked by validation accuracy", ["overrides", "val_accuracy", "sparsity",
                                             "threshold_sparsity", "test_accuracy",
                                             "seconds_per_epoch"])


if __name__ == "__main__":
    main()
